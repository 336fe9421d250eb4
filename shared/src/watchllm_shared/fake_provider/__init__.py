"""A fake OpenAI/Anthropic server for tests, benchmarks and demos.

``create_fake_provider(config)`` returns a plain ASGI app (no framework, orjson) that
speaks OpenAI's chat completions, embeddings and models APIs and Anthropic's Messages
API, streamed or not, with deterministic replies and token counts (``replies``), test
directives inside the request text (``directives``) and a log of the requests it got
(``GET /_fake/requests``). Run it with ``python -m watchllm_shared.fake_provider``.

Modules: ``config`` (settings), ``app`` (routing and behaviour), ``asgi`` (plumbing),
``openai_shapes``/``anthropic_shapes`` (wire formats), ``replies`` (text and tokens),
``directives``, ``recorder``.
"""

from watchllm_shared.fake_provider.app import FakeProvider, create_fake_provider
from watchllm_shared.fake_provider.config import FakeProviderConfig

__all__ = ["FakeProvider", "FakeProviderConfig", "create_fake_provider"]
