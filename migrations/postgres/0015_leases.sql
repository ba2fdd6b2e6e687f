-- Leases move out of the indexed columns: a claim used to push `next_attempt_at` (held by two
-- indexes) to the end of the lease, so every claim wrote a new row version with an entry in each
-- of the table's five indexes. With the lease in `lease_until`, which no index holds, a claim and
-- a lease renewal are HOT updates (the row rewritten on its own page, no index entries), given
-- room on that page: the fill factor keeps a quarter of each page free for them.
ALTER TABLE deliveries ADD COLUMN lease_until BIGINT;
UPDATE deliveries SET lease_until = next_attempt_at
    WHERE lease_owner IS NOT NULL AND status = 'pending';
ALTER TABLE deliveries SET (fillfactor = 75);

-- An endpoint's unfinished deliveries only: a finished row no longer adds an entry here when its
-- result is written. The predicate differs from `deliveries_due`'s on purpose, so the claim that
-- goes endpoint by endpoint can name this index's predicate and no other (see the store).
DROP INDEX deliveries_pending_by_endpoint;
CREATE INDEX deliveries_pending_by_endpoint ON deliveries (endpoint_id, next_attempt_at)
    WHERE status IN ('pending', 'paused');
