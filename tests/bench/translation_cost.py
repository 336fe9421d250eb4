"""``python -m tests.bench.translation_cost``: CPU time the translation layer adds.

Per request, in-process (no sockets): what the proxy does before dispatch for a chat
request whose chain speaks its shape (``Outbound`` + ``reachable`` + one ``request``),
against what it did before translation existed (``spec.prepare`` alone), and the same
for a request translated to an Anthropic deployment; per stream event, each stream
translator fed the fake provider's own 24-word streams. Best of 5 repeats.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable

from watchllm_gateway.endpoints import CHAT_COMPLETIONS
from watchllm_gateway.routing import Candidates, Deployment
from watchllm_gateway.routing.table import Chain
from watchllm_gateway.settings import ProviderKind
from watchllm_gateway.translation import Outbound
from watchllm_gateway.translation.response import StreamTranslator
from watchllm_gateway.translation.streams import AnthropicEvents, OpenAIChunks
from watchllm_shared.fake_provider import anthropic_shapes, openai_shapes

BODY = {
    "model": "m",
    "temperature": 0.2,
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the capital of France? " * 5},
    ],
}


def _chain(deployment: Deployment) -> Chain:
    chain = Chain((Candidates("m", (deployment,)),))
    chain.shapes = frozenset({deployment.api})
    return chain


def best_micros(call: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=5)) / number * 1e6


def _per_event(make: Callable[[], StreamTranslator], events: list[bytes]) -> float:
    def run() -> None:
        translator = make()
        for event in events:
            translator.feed(event)

    return best_micros(run, 2000) / len(events)


def main() -> None:
    gpt = Deployment("gpt", ProviderKind.OPENAI, "http://x/v1", None)
    claude = Deployment("claude", ProviderKind.ANTHROPIC, "http://x", None)

    def dispatch_side(deployment: Deployment) -> Callable[[], object]:
        chain = _chain(deployment)

        def run() -> object:
            outbound = Outbound(CHAT_COMPLETIONS, BODY, {})
            outbound.reachable(chain)
            return outbound.request(deployment, "m")

        return run

    before = best_micros(lambda: CHAT_COMPLETIONS.prepare(BODY), 20000)
    native = best_micros(dispatch_side(gpt), 20000)
    translated = best_micros(dispatch_side(claude), 20000)
    pieces = ["word"] * 24
    anthropic_stream = anthropic_shapes.message_stream(
        {"model": "c", "messages": BODY["messages"], "max_tokens": 9}, pieces, None
    )
    openai_stream = openai_shapes.chat_stream(
        {"model": "g", "messages": BODY["messages"], "stream_options": {"include_usage": True}},
        pieces,
        None,
    )
    rows = [
        ("request, before translation existed (spec.prepare)", before, "us"),
        ("request, same shape (Outbound, reachable, request)", native, "us"),
        ("request, translated to Anthropic", translated, "us"),
        (
            "stream event, Anthropic -> OpenAI chunks",
            _per_event(OpenAIChunks, anthropic_stream),
            "us",
        ),
        (
            "stream event, OpenAI -> Anthropic events",
            _per_event(AnthropicEvents, openai_stream),
            "us",
        ),
    ]
    for name, value, unit in rows:
        print(f"{name:55} {value:6.2f} {unit}")  # noqa: T201 - a command-line report


if __name__ == "__main__":
    main()
