"""Alerts (issue 16): rules evaluated and webhooks called by the limiter.

Why the limiter: it already reads every request-completed event and charges each one's
cost to the budgets' spend in Redis, so it sees a threshold crossed in the round that
crosses it, with the spend and the budget at hand (no second reader of the events, no
polling of spend); it watches Redis, where the dead-letter streams and the gateways'
limiter-outage reports live; and every replica is alike, so deliveries share one
consumer group and a dedupe key per window makes replicas raise an alert once.
Analytics knows error rates too, but only after its batches land in ClickHouse; keeping
alerting in one service keeps one delivery path.

- ``rules``: the rules from Postgres, refreshed every few seconds (a rule added is live
  within ``limiter_alert_rules_refresh_seconds``).
- ``queue``: raising an alert: SET NX of its window's dedupe key and XADD to the alerts
  stream in one script, so an alert is raised once per window across replicas, and is
  never marked raised without being queued.
- ``budget``: thresholds of budgets, checked right after each batch's spend is charged.
- ``error_rate``: requests and errors per project and minute, counted from the same
  batches; evaluated by ``watch``.
- ``watch``: every ``limiter_alert_check_seconds``: error rates, dead-letter streams
  growing, gateways failing open on the limiter.
- ``webhook``: one POST: the body (JSON or Slack's ``{"text"}``), the HMAC signature.
- ``delivery``: the consumer that calls webhooks until they answer 2xx, and the
  delivery log.
- ``service``: what the limiter's lifespan wires.

The cost: the limiter needs a route out (compose: the ``edge`` network; k8s: egress to
80/443) and holds the webhook secrets in its environment.
"""
