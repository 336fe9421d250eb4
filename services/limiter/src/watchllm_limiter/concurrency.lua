-- Concurrency limits: requests in flight at once, per project and per key (issue 22,
-- finding 7). Included into library.lua by library.py (at its "-- include" line), so
-- that watchllm_limit_check decides them in the same atomic call as the rate limits.
--
-- A scope (project, key) is a sorted set of the requests holding a slot in it: member
-- the request id, score the end of its lease (ms, Redis's clock). The gateway replica
-- that admitted a request renews its lease while it runs (watchllm_concurrency_renew)
-- and removes it when it ends (ZREM, on every path). A replica that dies (SIGKILL, OOM)
-- renews nothing more, so its slots lapse within one lease: lapsed members are dropped
-- before every count, and the set itself expires a lease after its last write.

-- {allowed, remaining_after, reset_ms, retry_ms} like the other checks. When a slot
-- frees is unknown (when some request ends): retry in a second.
local function check_inflight(key, limit, now)
  if limit <= 0 then return {0, 0, 0, 1000} end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local used = redis.call('ZCARD', key)
  if used < limit then return {1, limit - used - 1, 0, 0} end
  return {0, 0, 0, 1000}
end

local function take_slot(key, member, now, lease)
  redis.call('ZADD', key, now + lease, member)
  redis.call('PEXPIRE', key, lease)
end

-- KEYS: in-flight sets of one project (the project's and one key's)
-- ARGV: lease ms, [now ms], request ids...
-- Pushes the lease of each request still holding a slot (ZADD XX: a slot already
-- released, or lapsed and dropped, is not taken again). Returns how many were renewed.
local function renew(keys, args)
  local lease = tonumber(args[1])
  local now = now_ms(args[2])
  local renewed = 0
  for _, key in ipairs(keys) do
    local pairs_ = {}
    for i = 3, #args do
      table.insert(pairs_, now + lease)
      table.insert(pairs_, args[i])
    end
    if #pairs_ > 0 then
      renewed = renewed + redis.call('ZADD', key, 'XX', 'CH', unpack(pairs_))
    end
    if redis.call('EXISTS', key) == 1 then redis.call('PEXPIRE', key, lease) end
  end
  return renewed
end
