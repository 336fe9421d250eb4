-- Request and answer bodies of the projects that log them (issue 17), one row per
-- request, read from watchllm.request-bodies.v1 (redacted and capped by the gateway).
--
-- Compressed with ZSTD: prompts repeat (system prompts, few-shot examples) and JSON
-- compresses well. Each row has its own expiry, set by analytics from the project's
-- retention (default 30 days, never past the request log's): the TTL drops it at a
-- merge, and every query also reads only rows not yet expired, so a body is gone at its
-- time whether or not a merge has run. The request log's row for the same request_id
-- stays for its own, longer retention.
--
-- Sort key: tenant, time, request: a project's window is one slice (text search); the
-- bloom filter on request_id finds one request (request_bodies) without reading bodies.
-- The ingest checks which request ids it already stored before inserting (one row per
-- request); ReplacingMergeTree collapses what two replicas might race in, and queries
-- take one row per request (LIMIT 1 BY) until then.

CREATE TABLE IF NOT EXISTS request_bodies
(
    project_id UUID,
    occurred_at DateTime64(3, 'UTC'),
    request_id String,
    endpoint LowCardinality(String),
    request String CODEC(ZSTD(3)),
    response String CODEC(ZSTD(3)),
    expires_at DateTime('UTC'),
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX request_id_bloom request_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (project_id, occurred_at, request_id)
TTL expires_at
SETTINGS index_granularity = 1024;
