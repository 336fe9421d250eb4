-- The request-completed event's deployment and fallback_model (added to v1, add-only):
-- which of the routes file's deployments answered, and the fallback model taken when
-- the requested model's deployments all failed (gateway routing, issue 15). Rows
-- written before these columns, and events without the fields, read ''.

ALTER TABLE requests ADD COLUMN IF NOT EXISTS deployment String DEFAULT '' AFTER unpriced;
ALTER TABLE requests ADD COLUMN IF NOT EXISTS fallback_model String DEFAULT '' AFTER deployment;
