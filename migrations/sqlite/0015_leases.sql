-- Leases move out of the indexed columns: a claim used to push `next_attempt_at` (held by two
-- indexes) to the end of the lease, rewriting both index entries; `lease_until` is held by none.
ALTER TABLE deliveries ADD COLUMN lease_until INTEGER;
UPDATE deliveries SET lease_until = next_attempt_at
    WHERE lease_owner IS NOT NULL AND status = 'pending';
