"""Budgets in USD on the request path (issue 16): the headers every answer carries when
a budget applies, and the 429 once one is spent.

The limiter's one ``FCALL`` decides budgets with the other limits (``ratelimit``; the
library's ``budget.lua``): a request is refused once its project's or key's spend in
the current calendar UTC day or month has reached the budget. Spend is charged by the
limiter service from each completed request's event (its ``cost_usd``, streams
included), so the requests already in flight when a budget runs out still finish:
spend may end above the budget by their cost (sequential requests: by the last one's).

A cache hit costs nothing and is never refused by a budget: for a request the cache may
answer, a spent budget does not refuse at once; the request takes its rate-limit and
concurrency slots as usual, and is refused only if the cache misses (``proxy``). A
request the cache cannot answer is refused without consuming anything.

The 429 is in the caller's shape with code (OpenAI) or type (Anthropic)
``budget_exceeded``, names the budget and when it resets, and carries
``x-should-retry: false`` (the official SDKs then do not retry: the answer will not
change before the reset, which ``retry-after`` gives in seconds).

Headers: ``x-watchllm-budget-limit-usd``, ``x-watchllm-budget-remaining-usd`` (exact
decimal USD) and ``x-watchllm-budget-reset`` (the window's end, ISO 8601 UTC), of the
budget that refused, else of the one with the least left.
"""

from __future__ import annotations

import math

from watchllm_gateway.errors import GatewayError
from watchllm_shared.contracts.budgets import BudgetState, format_usd

BUDGET_EXCEEDED = "budget_exceeded"


def budget_headers(budget: BudgetState) -> dict[str, str]:
    return {
        "x-watchllm-budget-limit-usd": format_usd(budget.limit_nanos),
        "x-watchllm-budget-remaining-usd": format_usd(budget.remaining_nanos),
        "x-watchllm-budget-reset": budget.reset_at,
    }


def budget_refused(budget: BudgetState, headers: dict[str, str]) -> GatewayError:
    owner = "this project's" if budget.scope.owner == "project" else "this key's"
    retry_after = max(1, math.ceil(budget.reset_in_ms / 1000))
    return GatewayError(
        429, BUDGET_EXCEEDED,
        f"Budget exceeded: {owner} {budget.scope.period} budget of"
        f" {format_usd(budget.limit_nanos)} USD is spent ({format_usd(budget.spent_nanos)}"
        f" USD); it resets at {budget.reset_at}",
        headers={**headers, "retry-after": str(retry_after), "x-should-retry": "false"},
        error_type=BUDGET_EXCEEDED,
    )  # fmt: skip
