"""Raising an alert once per window: the dedupe key (``contracts.alerts.dedupe_key``)
is SET NX with the window's expiry and, only if it was not there, the alert is XADDed
to the alerts stream, both in one script: two replicas charging the same project raise
it once, and a crash cannot leave it marked raised but never queued. The key shares the
stream's hash tag, so the script runs on one Redis Cluster node.

An error (Redis down) propagates: the charger's round fails before it acknowledges, so
the events are read again and the alert is raised then.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from watchllm_shared.contracts.alerts import Alert

_RAISE_ONCE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('XADD', KEYS[2], '*', 'data', ARGV[3])
end
return false
"""


async def raise_once(
    redis: aioredis.Redis, stream: str, dedupe_key: str, ttl_ms: int, alert: Alert
) -> bool:
    """Queue ``alert`` unless ``dedupe_key`` says it was raised; True if it was queued."""
    data = alert.to_stream_fields()["data"]
    added = await redis.eval(
        _RAISE_ONCE, 2, dedupe_key, stream, str(alert.alert_id), max(1, ttl_ms), data
    )
    return added is not None
