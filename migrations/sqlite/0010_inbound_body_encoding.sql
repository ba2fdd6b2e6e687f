-- Inbound bodies may be kept compressed: `identity` (as received) or `lz4` (an LZ4 block
-- preceded by the body's length as 4 little-endian bytes).
ALTER TABLE inbound_deliveries ADD COLUMN body_encoding TEXT NOT NULL DEFAULT 'identity';
