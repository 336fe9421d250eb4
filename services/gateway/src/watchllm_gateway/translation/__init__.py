"""Translation between the OpenAI and Anthropic API shapes, both ways.

When routing sends a request to a deployment that speaks the other shape (an OpenAI
``/v1/chat/completions`` call to an ``anthropic`` deployment, an Anthropic
``/v1/messages`` call to an ``openai`` or ``azure`` one, a fallback included), the
request is translated on the way out and the answer on the way back — whole bodies,
error bodies, and streams event by event — so neither the caller nor the rest of the
gateway (usage, pricing, cache, events) sees the difference.

- ``to_anthropic``/``to_openai``: requests (pure); what cannot be translated is a 400
  ``untranslatable_parameter`` naming the field, in the caller's shape;
- ``answers``: answers, usage and error bodies (pure);
- ``streams``: the two stream translators (pure, one event in, events out);
- ``response``: ``TranslatedResponse``, an upstream answer read in the caller's shape;
- ``outbound``: ``Outbound``, what each deployment gets and how its answer comes back.

The reference table of every field is docs/translation.md.
"""

from watchllm_gateway.translation.outbound import DEFAULT_MAX_TOKENS, Outbound

__all__ = ["DEFAULT_MAX_TOKENS", "Outbound"]
