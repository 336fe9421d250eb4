-- The request-completed event's cache_key (added to v1, add-only): on a cache hit, the
-- exact-layer key of the entry that answered. Ranks cached prompts by hits on the
-- dashboard. Rows written before this column read '' (no entry named).

ALTER TABLE requests ADD COLUMN IF NOT EXISTS cache_key String DEFAULT '' AFTER upstream_attempts;
