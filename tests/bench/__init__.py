"""Benchmarks: the project's own open-loop load tool and the gateway overhead bench.

Run with ``make bench`` (``python -m tests.bench.gateway_bench``); see ``loadgen`` for
the method.
"""
