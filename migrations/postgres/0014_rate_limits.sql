-- SPEC §3.4's optional per-endpoint rate limit. Deliveries above it wait; they are not failed.
ALTER TABLE endpoints ADD COLUMN rate_limit_per_second BIGINT;

-- The next free sending slot of each rate-limited endpoint, in microseconds since the epoch
-- (a generic cell rate: each attempt reserves the slot one interval after the last). One row per
-- endpoint, shared by every node, so the limit holds across a whole deployment.
CREATE TABLE endpoint_rate_slots (
    endpoint_id TEXT PRIMARY KEY REFERENCES endpoints (id) ON DELETE CASCADE,
    next_at_us BIGINT NOT NULL
);
