#!lua name=watchllm_limiter

-- WatchLLM rate limits, owned by the limiter service (see library.py for loading).
--
-- Windows:
--   * requests per day: calendar UTC day (fixed window, resets at 00:00 UTC), counted
--     in a hash field per day, exact;
--   * requests per minute (project, key): sliding 60 s log of admitted requests, exact:
--     never more than the limit in any 60 s window;
--   * tokens per minute (project, key): sliding 60 s sum of charged tokens, charged
--     after each response from the request-completed events. A request is admitted
--     while the window's sum is under the limit, so requests in flight when the limit
--     is reached may overshoot it by their own usage: tokens are unknown until then.
--   * requests in flight (project, key): concurrency.lua, included below.
--   * budgets in USD (project, key; calendar UTC day and month): budget.lua, included
--     below; spend is charged after each response from the request-completed events.
--   * an upstream deployment's requests and tokens per minute (version 9):
--     deployment.lua, included below; asked and charged by the gateway.
-- Time is Redis's clock (TIME), one clock for every gateway replica; tests may pass
-- their own milliseconds. A refused request consumes nothing: every limit is checked
-- before any is charged, inside one atomic function call.
-- All keys of one call share the project's hash tag, so Redis Cluster works.

local VERSION = 10
local MINUTE_MS = 60000
local DAY_MS = 86400000
-- Largest charge taken: a Lua number (a double) holds every integer up to 2^53 - 1
-- exactly. The limiter refuses far smaller counts already (charges.py).
local MAX_CHARGE = 9007199254740991

-- An integer as Redis and the log members store it: never '1e+14'.
local function int(n)
  return string.format('%d', n)
end

local function now_ms(override)
  if override ~= nil and override ~= '' then return tonumber(override) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Sliding log of admissions: {allowed, remaining_after, reset_ms, retry_ms}.
local function check_log(key, limit, now)
  -- A limit of 0 or less admits nothing (the database forbids it; a hand-edited hash
  -- must not turn into a Lua error, which the gateway would treat as "no limits").
  if limit <= 0 then return {0, 0, MINUTE_MS, MINUTE_MS} end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - MINUTE_MS)
  local used = redis.call('ZCARD', key)
  if used < limit then
    local reset = 0
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if oldest[2] then reset = tonumber(oldest[2]) + MINUTE_MS - now else reset = MINUTE_MS end
    return {1, limit - used - 1, reset, 0}
  end
  -- The slot that frees first for a new request: entry (used - limit), 0-based.
  local entry = redis.call('ZRANGE', key, used - limit, used - limit, 'WITHSCORES')
  if not entry[2] then return {0, 0, MINUTE_MS, MINUTE_MS} end
  local retry = tonumber(entry[2]) + MINUTE_MS - now
  return {0, 0, retry, retry}
end

-- Sliding sum of token charges. The log (members "<event id>:<tokens>", scored by
-- time) says when each charge leaves the window; a running total beside it keeps the
-- check O(expired entries) instead of O(window). A missing total is rebuilt from the
-- log and expires with it (the log's PTTL); a total whose log has expired is dropped
-- (nothing is left in the window), so a total that outlived its log cannot keep a
-- project refused.
-- Members are written with int() since version 4; up to version 3 a charge of 10^14
-- tokens or more was written in exponent form ('<id>:1e+14'), which tonumber still
-- reads. Anything unreadable or out of range counts as 0 tokens: one bad member must
-- not break every check of its project.
local function tokens_of(member)
  local n = tonumber(string.match(member, ':([^:]*)$'))
  if n == nil or n ~= n or n < 0 or n > MAX_CHARGE then return 0 end
  return n
end

local function window_sum(key, total_key, now)
  local expired = redis.call('ZRANGEBYSCORE', key, '-inf', now - MINUTE_MS)
  local total = redis.call('GET', total_key)
  if total ~= false and redis.call('EXISTS', key) == 0 then
    redis.call('DEL', total_key)
    total = false
  end
  if total == false then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - MINUTE_MS)
    local sum = 0
    for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
      sum = sum + tokens_of(member)
    end
    if sum > 0 then
      local ttl = redis.call('PTTL', key)
      if ttl <= 0 then ttl = MINUTE_MS end
      redis.call('SET', total_key, int(sum), 'PX', ttl)
    end
    return sum
  end
  total = tonumber(total)
  if #expired > 0 then
    for _, member in ipairs(expired) do total = total - tokens_of(member) end
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - MINUTE_MS)
    redis.call('SET', total_key, int(total), 'KEEPTTL')
  end
  return total
end

local function check_sum(key, total_key, limit, now)
  local used = window_sum(key, total_key, now)
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if used < limit then
    local reset = MINUTE_MS
    if oldest[2] then reset = tonumber(oldest[2]) + MINUTE_MS - now end
    return {1, limit - used, reset, 0}
  end
  -- Walk from the oldest charge until enough has left the window.
  local left, offset = used, 0
  while true do
    local entry = redis.call('ZRANGE', key, offset, offset + 63, 'WITHSCORES')
    if #entry == 0 then return {0, 0, MINUTE_MS, MINUTE_MS} end
    for i = 1, #entry, 2 do
      left = left - tokens_of(entry[i])
      if left < limit then
        local retry = tonumber(entry[i + 1]) + MINUTE_MS - now
        return {0, 0, retry, retry}
      end
    end
    offset = offset + 64
  end
end

-- include concurrency.lua

-- include budget.lua

local function check_day(key, limit, now)
  local day = math.floor(now / DAY_MS)
  local used = tonumber(redis.call('HGET', key, tostring(day)) or '0')
  local reset = (day + 1) * DAY_MS - now
  if used < limit then return {1, limit - used - 1, reset, 0}, day end
  return {0, 0, reset, reset}, day
end

-- Keep the most constraining result of one kind: lowest remaining, then a refusal
-- over an admission (a 429's headers must name the limit that refused it), then the
-- latest reset.
local function tighter(current, candidate, limit)
  if current == nil or candidate[2] < current[2]
     or (candidate[2] == current[2] and (candidate[1] < current[1]
         or (candidate[1] == current[1] and candidate[3] > current[3]))) then
    return {candidate[1], candidate[2], candidate[3], candidate[4], limit}
  end
  return current
end

-- KEYS: limits, day, project rpm log, key rpm log, project tpm log, key tpm log,
--       project tpm total, key tpm total, [project in-flight set, key in-flight set],
--       [spend hashes: project day, project month, key day, key month]
-- ARGV: key id, fallback requests/day (the plan's), request member, [now ms],
--       [fallback project concurrency ('' for none), lease ms], [cache may answer: '1']
-- Returns {allowed, req_limit, req_remaining, req_reset_ms, tok_limit, tok_remaining,
--          tok_reset_ms, retry_after_ms, conc_limit, conc_remaining, conc_refused,
--          budget_refused, budget_scope, budget, spent, budget_reset_at_ms,
--          budget_reset_in_ms};
-- limits are -1 when none applies; conc_refused is 1 when only concurrency refused;
-- budget_scope is 0 when no budget applies (budget.lua says which is which).
-- Callers older than version 7 pass neither in-flight set: no concurrency limit; older
-- than version 8 no spend hashes: no budget.
-- A spent budget refuses the request, consuming nothing, unless the cache may answer
-- it (ARGV[7] = '1': a cache hit costs nothing and is never refused by a budget): then
-- the other limits decide and are consumed as usual, and budget_refused tells the
-- gateway to refuse it if the cache misses.
local function check(keys, args)
  local kid = args[1]
  local now = now_ms(args[4])
  local l = redis.call('HMGET', keys[1], 'day', 'rpm', 'tpm', 'k:' .. kid .. ':rpm',
                       'k:' .. kid .. ':tpm', 'conc', 'k:' .. kid .. ':conc', 'bd', 'bm',
                       'k:' .. kid .. ':bd', 'k:' .. kid .. ':bm')
  local day_limit = tonumber(l[1]) or tonumber(args[2])
  local requests, tokens, allowed, retry = nil, nil, 1, 0
  local results = {}
  local day_result, day = nil, nil
  if day_limit then
    day_result, day = check_day(keys[2], day_limit, now)
    requests = tighter(requests, day_result, day_limit)
    table.insert(results, day_result)
  end
  local logs = {{keys[3], tonumber(l[2])}, {keys[4], tonumber(l[4])}}
  for _, spec in ipairs(logs) do
    if spec[2] then
      local r = check_log(spec[1], spec[2], now)
      requests = tighter(requests, r, spec[2])
      table.insert(results, r)
    end
  end
  local sums = {{keys[5], keys[7], tonumber(l[3])}, {keys[6], keys[8], tonumber(l[5])}}
  for _, spec in ipairs(sums) do
    if spec[3] then
      local r = check_sum(spec[1], spec[2], spec[3], now)
      tokens = tighter(tokens, r, spec[3])
      table.insert(results, r)
    end
  end
  local rate_refused = 0
  for _, r in ipairs(results) do
    if r[1] == 0 then
      allowed, rate_refused = 0, 1
      if r[4] > retry then retry = r[4] end
    end
  end
  local inflight, slots = nil, {}
  local lease = tonumber(args[6])
  if keys[9] and lease then
    local scopes = {{keys[9], tonumber(l[6]) or tonumber(args[5])}, {keys[10], tonumber(l[7])}}
    for _, spec in ipairs(scopes) do
      if spec[2] then
        local r = check_inflight(spec[1], spec[2], now)
        inflight = tighter(inflight, r, spec[2])
        table.insert(slots, spec[1])
        if r[1] == 0 then
          allowed = 0
          if r[4] > retry then retry = r[4] end
        end
      end
    end
  end
  local budget = nil
  if keys[14] then budget = check_budgets({keys[11], keys[12], keys[13], keys[14]},
                                          {l[8], l[9], l[10], l[11]}, now) end
  local budget_refused = budget ~= nil and budget[1] == 1
  if budget_refused and args[7] ~= '1' then allowed = 0 end
  if allowed == 1 then
    if day_result then
      -- Housekeeping once a day, on the day's first request: drop the day before
      -- yesterday and keep the hash two days past that (fewer writes per request).
      if redis.call('HINCRBY', keys[2], tostring(day), 1) == 1 then
        redis.call('HDEL', keys[2], tostring(day - 2))
        redis.call('PEXPIRE', keys[2], 2 * DAY_MS)
      end
    end
    for _, spec in ipairs(logs) do
      if spec[2] then
        redis.call('ZADD', spec[1], now, args[3])
        redis.call('PEXPIRE', spec[1], MINUTE_MS)
      end
    end
    for _, key in ipairs(slots) do take_slot(key, args[3], now, lease) end
  elseif requests ~= nil and requests[1] == 1 then
    -- Refused by a token limit: the request limits were not consumed after all.
    requests[2] = requests[2] + 1
  end
  if allowed == 0 and inflight ~= nil and inflight[1] == 1 then
    inflight[2] = inflight[2] + 1  -- refused by another limit: no slot was taken
  end
  local conc_refused = 0
  if allowed == 0 and rate_refused == 0 and not budget_refused then conc_refused = 1 end
  local out = {allowed, -1, -1, -1, -1, -1, -1, retry, -1, -1, conc_refused, 0, 0, '', '', -1, -1}
  if requests then out[2], out[3], out[4] = requests[5], requests[2], requests[3] end
  if tokens then out[5], out[6], out[7] = tokens[5], tokens[2], tokens[3] end
  if inflight then out[9], out[10] = inflight[5], inflight[2] end
  if budget then
    out[12], out[13], out[14], out[15] = budget[1], budget[2], budget[3], budget[4]
    out[16], out[17] = budget[5], budget[5] - now
  end
  return out
end

local function add_charge(log_key, total_key, at, member, tokens, now)
  window_sum(log_key, total_key, now)  -- settle expiries (and rebuild a lost total)
  if redis.call('ZADD', log_key, at, member) == 0 then return 0 end
  redis.call('INCRBY', total_key, int(tokens))
  redis.call('PEXPIRE', log_key, MINUTE_MS)
  redis.call('PEXPIRE', total_key, MINUTE_MS)
  return 1
end

-- KEYS: limits, project tpm log, key tpm log, project tpm total, key tpm total
-- ARGV: key id, event id, tokens, occurred at (ms), [now ms]
-- Idempotent per event id: a redelivered event charges nothing more. Tokens must be
-- decimal digits, 1 to MAX_CHARGE; anything else charges nothing.
local function charge(keys, args)
  if not string.match(args[3], '^%d+$') then return 0 end
  local tokens = tonumber(args[3])
  if tokens <= 0 or tokens > MAX_CHARGE then return 0 end
  local now = now_ms(args[5])
  local at = math.min(tonumber(args[4]) or now, now)
  if at <= now - MINUTE_MS then return 0 end
  local l = redis.call('HMGET', keys[1], 'tpm', 'k:' .. args[1] .. ':tpm')
  local member = args[2] .. ':' .. int(tokens)
  local charged = 0
  if l[1] then charged = charged + add_charge(keys[2], keys[4], at, member, tokens, now) end
  if l[2] then charged = charged + add_charge(keys[3], keys[5], at, member, tokens, now) end
  return charged
end

-- Many events of one project in one call (version 10: the limiter charges a batch with
-- one call per project, not two per event): each event exactly as charge and
-- charge_spend would, so a copy of an event, or one an older limiter replica charged
-- one at a time, counts once.
-- KEYS: limits, project tpm log, project tpm total, project spend day, project spend
--       month; then for each of the batch's K keys: key tpm log, key tpm total, key
--       spend day, key spend month; then the spend marker of each event with a cost,
--       in the events' order.
-- ARGV: [now ms] ('' for Redis's clock), K, the K key ids, then five per event: key
--       (1 to K), event id, tokens, occurred at (ms), cost in nano-dollars ('0': none).
-- Returns two numbers per event: windows its tokens were charged to (0 to 2), and 1
-- if its cost was charged, else 0. Bad values charge nothing, as in charge and
-- charge_spend; an event whose key is out of range charges nothing either.
local function charge_batch(keys, args)
  local now = int(now_ms(args[1]))
  local k = tonumber(args[2]) or 0
  local out, marker = {}, 5 + 4 * k
  for i = 3 + k, #args - 4, 5 do
    local ki, tokens, spent = tonumber(args[i]), 0, 0
    local own = nil  -- where the event's key's own keys start
    if ki and ki >= 1 and ki <= k and ki == math.floor(ki) then own = 5 + 4 * (ki - 1) end
    if own then
      tokens = charge({keys[1], keys[2], keys[own + 1], keys[3], keys[own + 2]},
                      {args[2 + ki], args[i + 1], args[i + 2], args[i + 3], now})
    end
    if args[i + 4] ~= '0' then
      marker = marker + 1
      if own and keys[marker] then
        spent = charge_spend({keys[4], keys[5], keys[own + 3], keys[own + 4], keys[marker]},
                             {args[i + 4], args[i + 3], now})
      end
    end
    out[#out + 1] = tokens
    out[#out + 1] = spent
  end
  return out
end

-- include deployment.lua

local function version()
  return VERSION
end

-- allow-oom (version 6): at maxmemory Redis refuses every write of a script without it,
-- and the gateway then applies its failure policy: limits off or everyone refused. The
-- limits' own keys are small and bounded (a day counter, logs of at most a minute's
-- admissions and charges per project and key, one spend field per window and scope,
-- and an event's spend marker until shortly after its acknowledgement), so they may
-- pass maxmemory by that much;
-- what fills Redis (streams, cache entries) stays refused. Every write here still
-- happens only after all checks passed (see check).
redis.register_function{function_name = 'watchllm_limit_check', callback = check,
                        flags = {'allow-oom'}}
redis.register_function{function_name = 'watchllm_limit_charge', callback = charge,
                        flags = {'allow-oom'}}
redis.register_function{function_name = 'watchllm_concurrency_renew', callback = renew,
                        flags = {'allow-oom'}}
redis.register_function{function_name = 'watchllm_spend_charge', callback = charge_spend,
                        flags = {'allow-oom'}}
redis.register_function{function_name = 'watchllm_deployment_take',
                        callback = take_deployment, flags = {'allow-oom'}}
redis.register_function{function_name = 'watchllm_deployment_charge',
                        callback = charge_deployment, flags = {'allow-oom'}}
redis.register_function{function_name = 'watchllm_charge_batch', callback = charge_batch,
                        flags = {'allow-oom'}}
redis.register_function{function_name = 'watchllm_limiter_version', callback = version,
                        flags = {'no-writes'}}
