"""What the deployment tests send and how they read the gateway's answers.

They speak only the public HTTP API (README "HTTP API"): ``POST /v1/chat/completions``
in the OpenAI shape, answers carrying ``x-request-id``, ``x-watchllm-cache``
(``hit``/``miss``/``bypass``; ``bypass`` when the cache stays out: off for the project
or the gateway), the ``x-ratelimit-*`` headers, and ``x-watchllm-cache-key``, whose
hash tag names the key's project (``contracts.cache_keys``): that is how a test learns
the project to read analytics for, with nothing but a key.
"""

from __future__ import annotations

import uuid
from uuid import UUID

import httpx
import orjson

from watchllm_shared.contracts.cache_keys import project_of_exact_key

CHAT_PATH = "/v1/chat/completions"
RATE_LIMIT_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
)
_HINTS = {
    401: "check --key (`watchllm keys create --project NAME` prints a new one)",
    403: "the key is revoked, or its project may not use this model (--model)",
    404: "the gateway has no route for this model: pass --model (GET /v1/models lists them)",
    413: "the gateway's WATCHLLM_MAX_BODY_BYTES is smaller than this request",
    429: "a limit of the key's project refused it: its plan's daily quota or per-minute"
    " limits (`watchllm projects set-plan NAME PRO`, `watchllm projects limits NAME`)",
    502: "the provider failed or refused the gateway's provider key: see the gateway's log",
    503: "Postgres or the limiter is unavailable to the gateway: see its /health",
    504: "the provider did not answer in time: see the gateway's log",
}


class DeploymentError(Exception):
    """A condition that makes the whole run pointless (an unreachable gateway, a refused
    key); ``str(error)`` is one line saying what happened and what to do."""


def new_tag() -> str:
    """A tag making this run's prompts unique, so its first requests are cache misses."""
    return uuid.uuid4().hex[:16]


def chat_body(model: str, prompt: str, stream: bool = False) -> bytes:
    body: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def client(base_url: str, key: str, timeout: float, max_connections: int = 16) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
    )


def unreachable(exc: httpx.HTTPError, url: str) -> str:
    """One line for a request that got no HTTP answer."""
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer from {url} in time ({type(exc).__name__})"
    reason = str(exc) or type(exc).__name__
    return f"cannot connect to {url} ({reason})"


def refusal(response: httpx.Response) -> str:
    """``401 invalid_api_key: Incorrect API key provided.`` from an error answer."""
    try:
        error = orjson.loads(response.content).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        error = None
    if not isinstance(error, dict):
        return f"HTTP {response.status_code}"
    code = error.get("code") or error.get("type") or ""
    return f"{response.status_code} {code}: {error.get('message', '')}".strip()


def refusal_hint(status: int) -> str:
    return _HINTS.get(status, "see the gateway's log for this request")


def refused_key(status: int) -> bool:
    """True when the answer means the key itself is unusable (no request can pass)."""
    return status == 401


def project_of(response: httpx.Response) -> UUID | None:
    """The key's project, from the answer's cache key; None when the cache stayed out."""
    key = response.headers.get("x-watchllm-cache-key")
    return project_of_exact_key(key) if key else None


def answer_text(response: httpx.Response) -> str | None:
    """The assistant's text of an OpenAI chat completion, or None when it is not one."""
    try:
        content = orjson.loads(response.content)["choices"][0]["message"]["content"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else None
