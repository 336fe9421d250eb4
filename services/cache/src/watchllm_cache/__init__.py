"""WatchLLM cache service: the semantic layer of the cache.

``semantic.SemanticCache`` is the core (embed, search, verify, store); ``embedding``
loads the offline model, ``index`` holds the two Qdrant engines, ``verify`` decides
hit or refusal, ``eval`` measures it. ``service`` is the Redis transport around it.
"""
