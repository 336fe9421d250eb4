"""The words a list of allowed models may hold besides fnmatch patterns.

A project's list (``project_settings.allowed_models``, changed by ``watchllm projects
models`` and the dashboard) and the gateway's ``WATCHLLM_DEFAULT_ALLOWED_MODELS`` are
lists of fnmatch patterns (``gpt-4o*``, ``ft:gpt-4o-mini:acme:*``) and these words:

- ``@priced``: every model the gateway's price table prices (by name, or a dated
  snapshot of a priced name such as ``gpt-4o-2024-08-06``);
- ``@default``: the gateway's default list (in a project's list only).

A project without a list of its own (NULL) gets ``["@default"]``. The gateway applies
them (``watchllm_gateway.model_access``); the CLI and the dashboard check them here
before they store a list.
"""

from __future__ import annotations

from collections.abc import Iterable

PRICED = "@priced"
DEFAULT = "@default"
WORDS = (PRICED, DEFAULT)


def invalid_patterns(patterns: Iterable[str], *, in_default: bool = False) -> list[str]:
    """The entries of ``patterns`` that are no pattern or word a list may hold (blank,
    an unknown ``@`` word, or ``@default`` inside the default itself)."""
    allowed = (PRICED,) if in_default else WORDS
    return [p for p in patterns if not p.strip() or (p.startswith("@") and p not in allowed)]
