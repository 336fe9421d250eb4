-- The request-completed event's unpriced (added to v1, add-only): true when the gateway
-- had no price for the model, so cost_usd is 0 though tokens were used. The dashboard
-- says so where it shows spend. Rows written before this column, and events without
-- the field (older gateways), read false: nothing tells them apart from priced ones.

ALTER TABLE requests ADD COLUMN IF NOT EXISTS unpriced Bool DEFAULT false AFTER cache_key;
