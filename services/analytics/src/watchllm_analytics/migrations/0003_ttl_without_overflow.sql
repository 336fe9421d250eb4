-- Retention measured on the DateTime64 column itself. The TTL of 0001,
-- toDateTime(occurred_at) + N days, is a DateTime (seconds since 1970 in 32 bits), which
-- wraps around into the past after 2106-02-07 06:28:15: such a row counted as expired
-- and was dropped at insert or merge after being acknowledged (a row from 2150; with the
-- longest retention, 36,500 days, every row of today). occurred_at + toIntervalDay(N) is
-- a DateTime64 and does not overflow for any time the service stores (rows.py).
-- 36,500 days is the longest retention the settings allow, so this never expires a row
-- the configured retention keeps; at start-up apply_retention then sets the configured
-- days in this same form. Setting the same TTL again changes nothing (idempotent).

ALTER TABLE requests MODIFY TTL occurred_at + toIntervalDay(36500);
