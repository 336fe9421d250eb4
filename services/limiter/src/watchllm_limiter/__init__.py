"""WatchLLM limiter service: the control plane of rate limiting.

The decision itself runs inside Redis (``library.lua``, asked by the gateway with one
FCALL). This process loads and upgrades that library (``library``), keeps every
project's limits in Redis in step with Postgres (``sync``), charges token usage from
request-completed events (``charges``), and reports health and metrics (``main``).
"""
