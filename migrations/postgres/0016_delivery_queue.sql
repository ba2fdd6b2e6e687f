-- The queue moves out of the history row. `deliveries` keeps what a delivery is and how it
-- went; `delivery_queue` holds one narrow row per unfinished delivery: when it is due (NULL
-- while it is held for an inactive endpoint) and who leases it. A result then deletes the queue
-- row and rewrites the delivery without touching any indexed column of `deliveries`, so that is
-- a HOT update (no index entries); a claim rewrites the narrow row, not the wide one. No index of
-- `deliveries` may name a column a result or a pause changes (status, completed_at, ...), in its
-- keys or its predicate: that would make every result a new row version in every index again.
CREATE TABLE delivery_queue (
    delivery_id     TEXT    PRIMARY KEY NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    endpoint_id     TEXT    NOT NULL,
    next_attempt_at BIGINT,
    lease_owner     TEXT,
    lease_until     BIGINT,
    created_at      BIGINT  NOT NULL
) WITH (fillfactor = 50);

INSERT INTO delivery_queue (delivery_id, endpoint_id, next_attempt_at, lease_owner, lease_until,
    created_at)
SELECT id, endpoint_id, CASE WHEN status = 'pending' THEN next_attempt_at END,
    CASE WHEN status = 'pending' THEN lease_owner END,
    CASE WHEN status = 'pending' THEN lease_until END, created_at
FROM deliveries WHERE status IN ('pending', 'paused');

-- Due deliveries oldest first; held ones (NULL) sort last and are found with IS NULL.
CREATE INDEX delivery_queue_due ON delivery_queue (next_attempt_at);
-- An endpoint's queue, for the claim that goes endpoint by endpoint and for held deliveries.
CREATE INDEX delivery_queue_by_endpoint ON delivery_queue (endpoint_id, next_attempt_at);

DROP INDEX deliveries_due;
DROP INDEX deliveries_pending_by_endpoint;
DROP INDEX deliveries_paused;
DROP INDEX deliveries_completed;
-- Pruning finds finished deliveries through their events' age (`events_by_age`, then
-- `deliveries_by_event`): an event is never younger than its deliveries, nor they than their
-- results, and a fourth index on every publish would cost more than it saves there.
-- Half of each page stays free for the HOT updates of results.
ALTER TABLE deliveries SET (fillfactor = 50);

-- A delivery's endpoint is checked by the statements that write deliveries (a publish that names
-- a deleted endpoint writes nothing and plans again), not by a foreign key: the key's check took
-- a share lock on the endpoint's row for every delivery, and with the result batches locking the
-- same rows, every publish to an endpoint queued on one row (measured: +6 % deliveries/s at one
-- endpoint without it). A publish racing the deletion itself can still write deliveries for the
-- endpoint; no claim takes them (a claim takes only deliveries of existing active endpoints), and
-- pruning deletes them.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_endpoint_id_fkey;

ALTER TABLE deliveries DROP COLUMN next_attempt_at;
ALTER TABLE deliveries DROP COLUMN lease_owner;
ALTER TABLE deliveries DROP COLUMN lease_until;

-- A delivery as the API shows it: in flight, its next attempt is the end of its lease.
CREATE VIEW delivery_view AS
SELECT d.id, d.tenant_id, d.endpoint_id, d.event_id, d.event_type, d.status, d.attempt_count,
    d.round_attempts, COALESCE(q.lease_until, q.next_attempt_at) AS next_attempt_at,
    d.last_status_code, d.last_error_kind, d.created_at, d.updated_at, d.completed_at
FROM deliveries d LEFT JOIN delivery_queue q ON q.delivery_id = d.id;
