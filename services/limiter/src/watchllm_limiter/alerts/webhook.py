"""One delivery attempt: POST the alert's body to its webhook and say how it went.

- Signed when the rule names a secret: ``x-watchllm-timestamp`` (Unix seconds) and
  ``x-watchllm-signature: sha256=<hex>`` over ``<timestamp>.<body>``
  (``contracts.alerts.signature``). The secret is read from this process's environment
  at each attempt, never stored or logged; if the variable is unset the alert is not
  sent unsigned: the attempt fails, saying which variable, and is retried.
- Redirects are not followed (a signed body would go to the ``Location``'s origin).
- Success is a 2xx answer; anything else (a status, a connection error, a timeout) is a
  failure described by its status or its exception's class name: never the URL, whose
  path is often a secret.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from watchllm_shared.contracts.alerts import (
    ALERT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Alert,
    signature,
)


@dataclass(frozen=True, slots=True)
class Outcome:
    delivered: bool
    http_status: int | None = None
    error: str | None = None


async def send(http: httpx.AsyncClient, alert: Alert, environ: Mapping[str, str]) -> Outcome:
    body = alert.body()
    headers = {"content-type": "application/json", "user-agent": "WatchLLM-alerts/1",
               ALERT_ID_HEADER: str(alert.alert_id)}  # fmt: skip
    if alert.secret_env is not None:
        secret = environ.get(alert.secret_env)
        if not secret:
            return Outcome(False, error=f"secret variable {alert.secret_env} is not set")
        timestamp = str(int(time.time()))
        headers[TIMESTAMP_HEADER] = timestamp
        headers[SIGNATURE_HEADER] = signature(secret, timestamp, body)
    try:
        response = await http.post(alert.webhook_url, content=body, headers=headers,
                                   follow_redirects=False)  # fmt: skip
    except httpx.HTTPError as exc:
        return Outcome(False, error=type(exc).__name__)
    return Outcome(200 <= response.status_code < 300, response.status_code)
