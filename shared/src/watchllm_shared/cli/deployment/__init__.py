"""``watchllm check`` and ``watchllm loadtest``: tests of a running deployment.

Both work from outside, over HTTP only, so they test any deployment the same way
(``watchllm up``, docker compose, Kubernetes): the gateway's URL and a key, and
optionally the analytics service's read API to see that requests were stored.

- ``probe``: one chat request, its headers, and the operator's reading of a refusal.
- ``check``: the sanity checks, one result per check (``watchllm check``).
- ``openloop`` / ``stats`` / ``http1`` / ``pool``: the open-loop schedule, percentiles
  and a cheap keep-alive HTTP/1.1 client (the benchmarks in ``tests/bench`` use them too).
- ``loadtest`` / ``loadreport``: an open-loop run and its summary (``watchllm loadtest``).
- ``analytics``: reads requests back through the named queries.
- ``commands``: the click commands' options; ``console``: what they print, the only
  module that does.

Every failure the operator can cause or meet (an unreachable URL, a refused key, an
analytics API that does not answer) is a ``DeploymentError`` with a one-line message
saying what to do; no traceback reaches the terminal.
"""
