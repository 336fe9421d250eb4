-- Deployment capacity: a provider's requests and tokens per minute for one upstream
-- deployment (a routes file's `rpm`/`tpm`, issue 15). Included into library.lua by
-- library.py (at its "-- include" line, after the windows it reuses). The provider
-- counts per key and deployment whatever gateway replica sends, so the windows live
-- here, exact across replicas, on Redis's clock: the same sliding 60 s log of
-- admissions (rpm) and sliding 60 s sum of charged tokens (tpm) as a project's.
-- The gateway asks once per attempt at a limited deployment (before sending it) and
-- charges the answer's tokens afterwards. A deployment's keys share its name as hash
-- tag, apart from any project's, so Redis Cluster stays possible.

-- KEYS: request log, token log, token total (contracts/limits.py deployment_keys)
-- ARGV: rpm ('' for none), tpm ('' for none), attempt id, [now ms]
-- Returns {allowed, retry_ms}. A refused attempt takes nothing.
local function take_deployment(keys, args)
  local now = now_ms(args[4])
  local rpm, tpm = tonumber(args[1]), tonumber(args[2])
  local requests, tokens = nil, nil
  if rpm ~= nil then requests = check_log(keys[1], rpm, now) end
  if tpm ~= nil then tokens = check_sum(keys[2], keys[3], tpm, now) end
  local retry = 0
  if requests ~= nil and requests[1] == 0 then retry = requests[4] end
  if tokens ~= nil and tokens[1] == 0 then retry = math.max(retry, tokens[4]) end
  if (requests ~= nil and requests[1] == 0) or (tokens ~= nil and tokens[1] == 0) then
    return {0, math.max(retry, 1)}
  end
  if requests ~= nil then
    redis.call('ZADD', keys[1], now, args[3])
    redis.call('PEXPIRE', keys[1], MINUTE_MS)
  end
  return {1, 0}
end

-- KEYS: token log, token total
-- ARGV: attempt id, tokens, [now ms]
-- Idempotent per attempt id. Tokens must be decimal digits, 1 to MAX_CHARGE.
local function charge_deployment(keys, args)
  if not string.match(args[2], '^%d+$') then return 0 end
  local tokens = tonumber(args[2])
  if tokens <= 0 or tokens > MAX_CHARGE then return 0 end
  local now = now_ms(args[3])
  return add_charge(keys[1], keys[2], now, args[1] .. ':' .. int(tokens), tokens, now)
end
