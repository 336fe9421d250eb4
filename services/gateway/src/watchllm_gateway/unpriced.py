"""Requests for models without a price: counted and logged, so $0 is never silent
(issue 22, finding 12).

Such a request is recorded at cost 0 with ``unpriced`` set in its ``RequestCompleted``
(the dashboard shows how many, per model, and how to add a price). Here it is also
counted in ``watchllm_unpriced_requests_total{model}`` (the label is the model's name
only when the operator configured it, else ``other``: ``metrics.ModelLabel``) and the
first request for each model logs one warning naming it. The names remembered for that
are bounded (``MAX_LOGGED_MODELS``, each at most ``endpoints.MAX_MODEL_CHARS``): past
it one more warning says so and the rest are only counted, so a key holder cycling
names cannot flood the log or grow the process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import Counter

log = logging.getLogger(__name__)

MAX_LOGGED_MODELS = 1000


class UnpricedUse:
    def __init__(self, counter: Counter, label: Callable[[str], str]) -> None:
        self._counter = counter
        self._label = label
        self._logged: set[str] = set()

    def record(self, model: str) -> None:
        self._counter.labels(self._label(model)).inc()
        if model in self._logged or len(self._logged) > MAX_LOGGED_MODELS:
            return
        self._logged.add(model)
        if len(self._logged) > MAX_LOGGED_MODELS:
            log.warning(
                "%d models without a price seen; further ones are only counted in"
                " watchllm_unpriced_requests_total", MAX_LOGGED_MODELS,
            )  # fmt: skip
            return
        log.warning(
            "model %r has no price: its requests are recorded at $0 (unpriced) and counted"
            " in watchllm_unpriced_requests_total; give it a price with WATCHLLM_PRICES or"
            " WATCHLLM_PRICE_TABLE_PATH",
            model,
        )
