-- The request-completed event's properties and end_user (added to v1, add-only): the
-- caller's custom properties (x-watchllm-property-<name> headers: name → value, names
-- few and repeated, hence LowCardinality keys) and the end user the request was made
-- for (x-watchllm-user, OpenAI's user, Anthropic's metadata.user_id). The analytics
-- queries group and filter by them. Rows written before these columns, and events
-- without the fields, read an empty map and ''.
--
-- end_user is a plain String: a product's end users may be millions, past what
-- LowCardinality's per-part dictionaries suit. Skip indexes (bloom filters, per 4
-- granules) let a filter on one user or one property value skip the granules without
-- it inside a project's time slice; rows written before them get theirs at merges.

ALTER TABLE requests ADD COLUMN IF NOT EXISTS properties Map(LowCardinality(String), String) AFTER fallback_model;
ALTER TABLE requests ADD COLUMN IF NOT EXISTS end_user String DEFAULT '' AFTER properties;
ALTER TABLE requests ADD INDEX IF NOT EXISTS end_user_bloom end_user TYPE bloom_filter(0.01) GRANULARITY 4;
ALTER TABLE requests ADD INDEX IF NOT EXISTS property_names_bloom mapKeys(properties) TYPE bloom_filter(0.01) GRANULARITY 4;
ALTER TABLE requests ADD INDEX IF NOT EXISTS property_values_bloom mapValues(properties) TYPE bloom_filter(0.01) GRANULARITY 4;
