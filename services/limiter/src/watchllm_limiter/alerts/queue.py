"""Raising an alert once per window: the dedupe key (``contracts.alerts.dedupe_key``)
is SET NX with the window's expiry and, only if it was not there, the alert is XADDed
to the alerts stream, both in one script: two replicas charging the same project raise
it once, and a crash cannot leave it marked raised but never queued. The key shares the
stream's hash tag, so the script runs on one Redis Cluster node.

An error (Redis down) propagates: the charger's round fails before it acknowledges, so
the events are read again and the alert is raised then.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import redis.asyncio as aioredis

from watchllm_shared.accounts.alerts import AlertRule
from watchllm_shared.contracts.alerts import Alert, AlertKind

_RAISE_ONCE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('XADD', KEYS[2], '*', 'data', ARGV[3])
end
if ARGV[4] == '1' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return false
"""


async def raise_once(
    redis: aioredis.Redis, stream: str, dedupe_key: str, ttl_ms: int, alert: Alert,
    episode: bool = False,
) -> bool:  # fmt: skip
    """Queue ``alert`` unless ``dedupe_key`` says it was raised; True if it was queued.

    ``episode``: a condition that holds over time (an error rate, a limiter outage):
    while it keeps being raised the key's expiry is pushed back, so the episode is
    alerted once, and it takes ``ttl_ms`` without it before the next one alerts."""
    data = alert.to_stream_fields()["data"]
    added = await redis.eval(
        _RAISE_ONCE, 2, dedupe_key, stream, str(alert.alert_id), max(1, ttl_ms), data,
        "1" if episode else "0",
    )  # fmt: skip
    return added is not None


def alert_for(
    rule: AlertRule, kind: AlertKind, project_id: uuid.UUID | None, text: str,
    details: dict[str, str | int | float | None],
) -> Alert:  # fmt: skip
    """An alert for ``rule``'s webhook, raised now."""
    return Alert(
        alert_id=uuid.uuid4(), kind=kind.value, rule_id=rule.id, project_id=project_id,
        text=text, details=details, occurred_at=datetime.now(UTC),
        webhook_url=rule.webhook_url, format=rule.format, secret_env=rule.secret_env,
    )  # fmt: skip
