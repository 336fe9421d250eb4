"""The cache service process: Redis transport around the semantic core.

``asks`` answers the gateways' semantic asks, ``stores`` writes answers (exact layer
in Redis, embedding in the index), ``commands`` applies flushes and deletions, ``app``
runs them with probes, metrics and a heartbeat.
"""
