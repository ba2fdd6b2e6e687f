-- A tenant's publish version: what a publish plans from (its webhook endpoints, their URLs,
-- filters, secrets, state and limits, and its registered event types) changes only together
-- with this number. A node keeps the plans it read, with the version they were read at, and the
-- statement that writes a publish checks the version: a plan that is no longer current writes
-- nothing and is read again. The triggers bump it, so no statement that changes what a plan
-- holds can forget to; the failure count a result batch updates is not part of a plan and does
-- not bump it.
ALTER TABLE tenants ADD COLUMN publish_version BIGINT NOT NULL DEFAULT 0;

CREATE FUNCTION bump_publish_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE tenants SET publish_version = publish_version + 1 WHERE id = OLD.tenant_id;
    ELSE
        UPDATE tenants SET publish_version = publish_version + 1 WHERE id = NEW.tenant_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER endpoints_created_bump_publish_version AFTER INSERT ON endpoints
FOR EACH ROW WHEN (NEW.kind = 'webhook') EXECUTE FUNCTION bump_publish_version();

CREATE TRIGGER endpoints_deleted_bump_publish_version AFTER DELETE ON endpoints
FOR EACH ROW WHEN (OLD.kind = 'webhook') EXECUTE FUNCTION bump_publish_version();

CREATE TRIGGER endpoints_changed_bump_publish_version AFTER UPDATE ON endpoints
FOR EACH ROW WHEN ((OLD.kind = 'webhook' OR NEW.kind = 'webhook') AND (
    OLD.url IS DISTINCT FROM NEW.url
    OR OLD.name IS DISTINCT FROM NEW.name
    OR OLD.description IS DISTINCT FROM NEW.description
    OR OLD.event_types IS DISTINCT FROM NEW.event_types
    OR OLD.active IS DISTINCT FROM NEW.active
    OR OLD.secret IS DISTINCT FROM NEW.secret
    OR OLD.previous_secret IS DISTINCT FROM NEW.previous_secret
    OR OLD.previous_secret_until IS DISTINCT FROM NEW.previous_secret_until
    OR OLD.disabled_reason IS DISTINCT FROM NEW.disabled_reason
    OR OLD.disabled_at IS DISTINCT FROM NEW.disabled_at
    OR OLD.disabled_until IS DISTINCT FROM NEW.disabled_until
    OR OLD.kind IS DISTINCT FROM NEW.kind
    OR OLD.repository_key IS DISTINCT FROM NEW.repository_key
    OR OLD.payload_format IS DISTINCT FROM NEW.payload_format
    OR OLD.rate_limit_per_second IS DISTINCT FROM NEW.rate_limit_per_second
    OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id))
EXECUTE FUNCTION bump_publish_version();

CREATE TRIGGER event_types_bump_publish_version AFTER INSERT OR UPDATE OR DELETE ON event_types
FOR EACH ROW EXECUTE FUNCTION bump_publish_version();
