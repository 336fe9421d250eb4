"""Which models a key's project may use (issue 22, finding 12).

A project's own list of allowed models wins; a project without one gets the gateway's
default, ``WATCHLLM_DEFAULT_ALLOWED_MODELS`` (fnmatch patterns and the words of
``watchllm_shared.contracts.model_patterns``). The default is ``["@priced"]``: a key
reaches only models whose cost the gateway counts, so an expensive or private
fine-tuned model that the operator's provider key happens to reach is refused until
the operator allows it (a price, the project's list, or the default). ``["*"]`` gives
every model to projects without a list, as before this setting existed.

The check runs after routing (``proxy``), so a model no route serves is still a 404
``model_not_found``; a routed model the project may not use is a 403
``model_not_allowed`` in the caller's API shape, whose message names the model, the
project and how an operator allows it. ``GET /v1/models`` lists only allowed models.

The default's answer for a model is remembered (at most ``MAX_REMEMBERED`` names, then
forgotten all at once, so names a caller invents cannot grow the process): most
requests come from projects without a list and ask for a few models, and the answer
then costs one dict lookup instead of the price table's prefix scan (~5-13 µs measured).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from fnmatch import fnmatchcase

from watchllm_gateway.errors import GatewayError
from watchllm_shared.accounts import KeyGrant
from watchllm_shared.contracts.model_patterns import DEFAULT, PRICED, invalid_patterns

log = logging.getLogger(__name__)

MAX_REMEMBERED = 10_000


class ModelAccess:
    def __init__(self, default: Sequence[str], priced: Callable[[str], bool]) -> None:
        """``default``: WATCHLLM_DEFAULT_ALLOWED_MODELS; ``priced``: whether the price
        table prices a model. Raises ValueError for a word the default cannot hold."""
        invalid = invalid_patterns(default, in_default=True)
        if invalid:
            raise ValueError(
                f"WATCHLLM_DEFAULT_ALLOWED_MODELS: {invalid} are not fnmatch patterns or"
                f" {PRICED!r} (the only word the default may hold)"
            )
        self._default = tuple(default)
        self._priced = priced
        self._by_default: dict[str, bool] = {}  # model -> the default's answer

    @classmethod
    def everything(cls) -> ModelAccess:
        """Every model for projects without a list (a test's gateway)."""
        return cls(("*",), lambda _model: False)

    @property
    def default(self) -> tuple[str, ...]:
        return self._default

    def allows(self, model: str, project_patterns: Sequence[str] | None) -> bool:
        patterns = (DEFAULT,) if project_patterns is None else project_patterns
        return any(self._matches(model, p) for p in patterns)

    def check(self, model: str, grant: KeyGrant) -> None:
        """Raise 403 ``model_not_allowed`` unless ``grant``'s project may use ``model``."""
        if self.allows(model, grant.allowed_models):
            return
        project = grant.project_name
        how = (
            f"An operator can allow it: watchllm projects models {project} --add '{model}'"
            " (or the dashboard's Projects page)"
        )
        if grant.allowed_models is not None:
            message = (
                f"The model {model!r} is not allowed for project {project!r}: the project's"
                f" allowed models do not match it. {how}."
            )
        else:
            hint = ": models with a price" if self._default == (PRICED,) else ""
            message = (
                f"The model {model!r} is not allowed for project {project!r}: the project"
                " has no allowed models of its own, and the gateway's default"
                f" (WATCHLLM_DEFAULT_ALLOWED_MODELS{hint}) does not"
                f" match it. {how}, for every project with WATCHLLM_DEFAULT_ALLOWED_MODELS,"
                " or by giving it a price (WATCHLLM_PRICES)."
            )
        raise GatewayError(403, "model_not_allowed", message)

    def _matches(self, model: str, pattern: str) -> bool:
        if pattern == PRICED:
            return self._priced(model)
        if pattern == DEFAULT:
            return self._allowed_by_default(model)
        return not pattern.startswith("@") and fnmatchcase(model, pattern)

    def _allowed_by_default(self, model: str) -> bool:
        answer = self._by_default.get(model)
        if answer is None:
            if len(self._by_default) >= MAX_REMEMBERED:
                self._by_default.clear()
            answer = self._by_default[model] = any(  # the default holds no @default
                self._matches(model, p) for p in self._default
            )
        return answer
