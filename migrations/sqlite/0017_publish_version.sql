-- A tenant's publish version (see the PostgreSQL migration of the same number): bumped by
-- triggers whenever what a publish plans from changes, checked by the write of every publish
-- planned from a kept plan.
ALTER TABLE tenants ADD COLUMN publish_version INTEGER NOT NULL DEFAULT 0;

CREATE TRIGGER endpoints_created_bump_publish_version AFTER INSERT ON endpoints
FOR EACH ROW WHEN NEW.kind = 'webhook'
BEGIN
    UPDATE tenants SET publish_version = publish_version + 1 WHERE id = NEW.tenant_id;
END;

CREATE TRIGGER endpoints_deleted_bump_publish_version AFTER DELETE ON endpoints
FOR EACH ROW WHEN OLD.kind = 'webhook'
BEGIN
    UPDATE tenants SET publish_version = publish_version + 1 WHERE id = OLD.tenant_id;
END;

CREATE TRIGGER endpoints_changed_bump_publish_version AFTER UPDATE ON endpoints
FOR EACH ROW WHEN (OLD.kind = 'webhook' OR NEW.kind = 'webhook') AND (
    OLD.url IS NOT NEW.url
    OR OLD.name IS NOT NEW.name
    OR OLD.description IS NOT NEW.description
    OR OLD.event_types IS NOT NEW.event_types
    OR OLD.active IS NOT NEW.active
    OR OLD.secret IS NOT NEW.secret
    OR OLD.previous_secret IS NOT NEW.previous_secret
    OR OLD.previous_secret_until IS NOT NEW.previous_secret_until
    OR OLD.disabled_reason IS NOT NEW.disabled_reason
    OR OLD.disabled_at IS NOT NEW.disabled_at
    OR OLD.disabled_until IS NOT NEW.disabled_until
    OR OLD.kind IS NOT NEW.kind
    OR OLD.repository_key IS NOT NEW.repository_key
    OR OLD.payload_format IS NOT NEW.payload_format
    OR OLD.rate_limit_per_second IS NOT NEW.rate_limit_per_second
    OR OLD.tenant_id IS NOT NEW.tenant_id)
BEGIN
    UPDATE tenants SET publish_version = publish_version + 1 WHERE id = NEW.tenant_id;
END;

CREATE TRIGGER event_types_created_bump_publish_version AFTER INSERT ON event_types
BEGIN
    UPDATE tenants SET publish_version = publish_version + 1 WHERE id = NEW.tenant_id;
END;

CREATE TRIGGER event_types_changed_bump_publish_version AFTER UPDATE ON event_types
BEGIN
    UPDATE tenants SET publish_version = publish_version + 1 WHERE id = NEW.tenant_id;
END;

CREATE TRIGGER event_types_deleted_bump_publish_version AFTER DELETE ON event_types
BEGIN
    UPDATE tenants SET publish_version = publish_version + 1 WHERE id = OLD.tenant_id;
END;
