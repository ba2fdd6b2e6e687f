-- Deliveries held while their endpoint is inactive are pruned after the retention period like
-- finished ones; this finds them without scanning the queue.
CREATE INDEX deliveries_paused ON deliveries (created_at) WHERE status = 'paused';
