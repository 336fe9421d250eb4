-- Budgets in USD per project and per key, per calendar UTC day and month (issue 16).
-- Included into library.lua by library.py (at its "-- include" line), so that
-- watchllm_limit_check decides them in the same atomic call as the other limits.
-- Contract (key names, fields, units): watchllm_shared/contracts/budgets.py.
--
-- Amounts are whole nano-dollars. Spend can grow past 2^53 (a Lua number's exact
-- range) only by far more than any budget, and budgets are compared with spend as
-- decimal strings (at_least), so the decision is exact for every Redis integer.
--
-- Overshoot: a request is admitted while its budget's spend is under the budget, and
-- its cost is charged when it completes (charge_spend, from its event). So every
-- request admitted before the charge that spent the budget landed finishes: spend ends
-- at most their cost above the budget. That is the requests in flight when it ran out,
-- plus those admitted between an answer and its charge (the event's XADD and the
-- limiter's read: milliseconds unless the limiter lags); one caller's sequential
-- requests: one request's cost. The cost is unknown before the answer, like tokens;
-- refusing earlier would need a guess.

local MAX_SPEND_CHARGE = 1000000000000000  -- 10^6 USD per event (MAX_COST_PER_EVENT_USD)

-- Days since 1970-01-01 -> year, month (H. Hinnant's civil_from_days).
local function civil(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
                          - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m
end

-- The first day of year y, month m, in days since 1970-01-01 (days_from_civil).
local function first_of_month(y, m)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100)
              + math.floor((153 * mp + 2) / 5)
  return era * 146097 + doe - 719468
end

-- The month `day` (since 1970-01-01) falls in (months since 1970-01) and its end (ms).
local function month_of(day)
  local y, m = civil(day)
  local ny, nm = y, m + 1
  if nm > 12 then ny, nm = y + 1, 1 end
  return (y - 1970) * 12 + m - 1, first_of_month(ny, nm) * DAY_MS
end

-- The windows `ms` falls in: day, its end (ms), month, its end (ms).
local function windows(ms)
  local day = math.floor(ms / DAY_MS)
  local month, month_end = month_of(day)
  return day, (day + 1) * DAY_MS, month, month_end
end

-- A budget field as decimal digits without leading zeros, or nil (none, or unreadable:
-- a hand-edited hash must not turn into a Lua error).
local function amount(field)
  if not field then return nil end
  if string.find(field, '^[1-9]%d*$') or field == '0' then return field end
  if not string.find(field, '^%d+$') then return nil end
  return (string.gsub(field, '^0+(%d)', '%1'))
end

local function at_least(a, b)
  if #a ~= #b then return #a > #b end
  return a >= b
end

-- Prefer a refusal, then (refused) the latest reset, (admitted) the least left.
local function tighter_budget(current, c)
  if current == nil then return true end
  if c[1] ~= current[1] then return c[1] > current[1] end
  if c[1] == 1 then return c[5] > current[5] end
  local left, current_left = tonumber(c[3]) - tonumber(c[4]), tonumber(current[3]) - tonumber(current[4])
  return left < current_left or (left == current_left and c[5] > current[5])
end

-- KEYS: spend hashes (project day, project month, key day, key month);
-- budgets: the matching limits hash fields (nano-dollars, or false).
-- Returns nil when no budget applies, else the tightest as
-- {refused, scope (1-4), budget, spent, window end ms}.
local function check_budgets(keys, budgets, now)
  if not (budgets[1] or budgets[2] or budgets[3] or budgets[4]) then return nil end
  local day = math.floor(now / DAY_MS)
  local fields, ends = {tostring(day)}, {(day + 1) * DAY_MS}
  if budgets[2] or budgets[4] then
    local month, month_end = month_of(day)
    fields[2], ends[2] = tostring(month), month_end
  end
  local result = nil
  for scope = 1, 4 do
    local budget = amount(budgets[scope])
    if budget then
      local period = 2 - scope % 2  -- 1: day, 2: month
      local spent = redis.call('HGET', keys[scope], fields[period]) or '0'
      local c = {at_least(spent, budget) and 1 or 0, scope, budget, spent, ends[period]}
      if tighter_budget(result, c) then result = c end
    end
  end
  return result
end

local function add_spend(key, field, nanos, ttl)
  if redis.call('HINCRBY', key, field, nanos) == nanos then
    -- The window's first charge: drop what earlier windows left (at most one field).
    for _, f in ipairs(redis.call('HKEYS', key)) do
      if f ~= field then redis.call('HDEL', key, f) end
    end
  end
  redis.call('PEXPIRE', key, ttl)
end

-- KEYS: spend hashes (project day, project month, key day, key month), event marker
-- ARGV: cost in nano-dollars, occurred at (ms, Redis's clock: the event's XADD), [now ms]
-- Idempotent per event (the marker: SET NX until its month ends). An event from an
-- earlier day is charged to the month only; from an earlier month, to nothing (those
-- windows are over). Returns 1 when charged, else 0.
local function charge_spend(keys, args)
  if not string.match(args[1], '^%d+$') then return 0 end
  local nanos = tonumber(args[1])
  if nanos <= 0 or nanos > MAX_SPEND_CHARGE then return 0 end
  local now = now_ms(args[3])
  local at = math.min(tonumber(args[2]) or now, now)
  local day, day_end, month, month_end = windows(now)
  local at_day, _, at_month = windows(at)
  if at_month ~= month then return 0 end
  if not redis.call('SET', keys[5], '1', 'NX', 'PX', month_end - now) then return 0 end
  if at_day == day then
    add_spend(keys[1], tostring(day), nanos, day_end - now)
    add_spend(keys[3], tostring(day), nanos, day_end - now)
  end
  add_spend(keys[2], tostring(month), nanos, month_end - now)
  add_spend(keys[4], tostring(month), nanos, month_end - now)
  return 1
end
