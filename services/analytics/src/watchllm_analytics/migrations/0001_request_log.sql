-- The request log: one row per RequestCompleted event (all of its fields), and the
-- dashboard's hourly rollup as an aggregate projection stored inside each part.
--
-- Sort key: tenant first, then time, then the event id. Time before the id keeps the
-- writer's "already stored?" lookup to the batch's time window, and serves the newest
-- requests of a project in order. The writer never inserts an
-- event id it already stored, so plain reads are exact; ReplacingMergeTree is the
-- backstop for the one race the check cannot see (two replicas inserting the same id at
-- once): such a duplicate collapses when parts merge, and the projection is rebuilt.
-- The rollup lives in the same part as the rows, so a crash can never leave one without
-- the other (a materialized view writes a second table, with a window in between).
-- Retention: the TTL below is replaced at start-up by WATCHLLM_ANALYTICS_RETENTION_DAYS.

CREATE TABLE IF NOT EXISTS requests
(
    event_id UUID,
    occurred_at DateTime64(3, 'UTC'),
    schema_version UInt8,
    request_id String,
    project_id UUID,
    key_id UUID,
    model LowCardinality(String),
    provider LowCardinality(String),
    endpoint LowCardinality(String),
    http_status UInt16,
    status LowCardinality(String),
    error_type LowCardinality(String),
    cache LowCardinality(String),
    cache_similarity Nullable(Float64),
    stream Bool,
    prompt_tokens UInt32,
    completion_tokens UInt32,
    cost_usd Decimal(38, 12),
    cost_saved_usd Decimal(38, 12),
    latency_ms Float64,
    upstream_latency_ms Nullable(Float64),
    ttfb_ms Nullable(Float64),
    trace_id String,
    upstream_attempts UInt8,
    ingested_at DateTime64(3, 'UTC') DEFAULT now64(3),
    PROJECTION usage_by_project_hour_model
    (
        SELECT
            project_id,
            toStartOfHour(occurred_at),
            model,
            count(),
            countIf(status != 'ok'),
            countIf(cache = 'hit'),
            sum(prompt_tokens),
            sum(completion_tokens),
            sum(cost_usd),
            sum(cost_saved_usd),
            quantiles(0.5, 0.95, 0.99)(latency_ms)
        GROUP BY project_id, toStartOfHour(occurred_at), model
    )
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (project_id, occurred_at, event_id)
TTL toDateTime(occurred_at) + toIntervalDay(365)
SETTINGS deduplicate_merge_projection_mode = 'rebuild';
