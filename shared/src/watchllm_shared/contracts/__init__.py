"""Message contracts between services: events, stream names, cache key scheme."""

from watchllm_shared.contracts.events import CacheOutcome, RequestCompleted, RequestStatus
from watchllm_shared.contracts.streams import Stream

__all__ = ["CacheOutcome", "RequestCompleted", "RequestStatus", "Stream"]
