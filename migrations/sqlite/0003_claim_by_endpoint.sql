-- Lets the delivery worker find an endpoint's due deliveries directly, so endpoints at their
-- concurrency cap never make a claim walk the whole queue.
CREATE INDEX deliveries_pending_by_endpoint ON deliveries (endpoint_id, next_attempt_at)
    WHERE status = 'pending';
