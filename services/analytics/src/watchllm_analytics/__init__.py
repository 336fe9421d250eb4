"""WatchLLM analytics: request-completed events into ClickHouse, and the read path."""
