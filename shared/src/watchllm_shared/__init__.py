"""What every WatchLLM service shares, and nothing else.

- ``contracts``: message contracts (versioned, add-only), stream names, cache key scheme.
- ``settings``: the settings base every service's settings extend.
- ``redis_io``: Redis client creation and stream helpers.
- ``telemetry``: logging (with secret redaction) and OpenTelemetry setup.
- ``stream_tracing``: consumer spans that continue a request's trace from a stream entry.
- ``accounts``: the one module that reads and changes projects and keys in Postgres.
- ``cli``: the operator's ``watchllm`` command.
- ``fake_provider``: a fake OpenAI/Anthropic server for tests and demos.

Services import this package; they never import each other.
"""
