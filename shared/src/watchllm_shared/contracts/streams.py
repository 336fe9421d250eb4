"""Redis Stream names. A name carries its contract's major version; a breaking change
gets a new stream, never a new meaning for an old one."""

from enum import StrEnum


class Stream(StrEnum):
    # One RequestCompleted per request, published by the gateway after the answer.
    # Consumers: analytics (ClickHouse rows), limiter (token charges).
    REQUESTS_COMPLETED = "watchllm.requests.completed.v1"

    def dead_letter(self) -> str:
        """Where a consumer parks a message that keeps failing, with its error."""
        return f"{self.value}.dlq"


# Approximate MAXLEN for the request stream: bounds Redis memory when a consumer is
# down for long. At 1,000 requests/s this keeps roughly the last 17 minutes.
REQUESTS_COMPLETED_MAXLEN = 1_000_000
