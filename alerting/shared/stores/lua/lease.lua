-- Lease outbox mail that may go now under the rate limit: the pending summary of folded alerts first
-- (they are new problems), then owed digests, oldest first. A lease that is not completed (the worker
-- died) expires and the item is leased again. Restates alerting.shared.throttle.plan_lease and refill; the summary
-- body is alerting.shared.outbox's JSON form (Summary).
-- ARGV (alerting.shared.stores.scripts.lease): prefix, now, lease, limit, rate_limit (0 = none), rate_period.  Returns {id1, body1, id2, body2, ...}
local p, now, lease, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local rate, period = tonumber(ARGV[5]), tonumber(ARGV[6])

local b = redis.call('HMGET', p .. ':bucket', 'tokens', 'updated')
local tokens = tonumber(b[1]) or rate
if rate > 0 then
  local updated = tonumber(b[2]) or now
  tokens = math.min(rate, tokens + math.max(now - updated, 0) * rate / period)
end
local function take()
  if rate <= 0 then return true end
  if tokens >= 1 then tokens = tokens - 1; return true end
  return false
end

local out = {}
if redis.call('EXISTS', p .. ':summary') == 1 and limit > 0 and take() then
  local counts = redis.call('HGETALL', p .. ':summary')
  local entries = {}
  for i = 1, #counts, 2 do
    local fp = counts[i]
    local subject = redis.call('HGET', p .. ':summary:subject', fp) or fp
    entries[#entries + 1] = {fingerprint = fp, count = tonumber(counts[i + 1]), subject = subject}
  end
  local item_id = 'summary:' .. redis.call('INCR', p .. ':item:seq')
  local body = cjson.encode({kind = 'summary', since = redis.call('GET', p .. ':summary:since'), entries = entries})
  redis.call('SET', p .. ':item:' .. item_id, body)
  redis.call('ZADD', p .. ':outbox', now + lease, item_id)
  redis.call('DEL', p .. ':summary', p .. ':summary:subject', p .. ':summary:since')
  out[#out + 1] = item_id
  out[#out + 1] = body
end

local ready = redis.call('ZRANGEBYSCORE', p .. ':outbox', '-inf', now, 'LIMIT', 0, limit)
for _, item_id in ipairs(ready) do
  if #out >= 2 * limit then break end
  local body = redis.call('GET', p .. ':item:' .. item_id)
  if not body then
    redis.call('ZREM', p .. ':outbox', item_id)
  elseif take() then
    redis.call('ZADD', p .. ':outbox', now + lease, item_id)
    out[#out + 1] = item_id
    out[#out + 1] = body
  else
    break
  end
end
if rate > 0 then
  redis.call('HSET', p .. ':bucket', 'tokens', tokens, 'updated', now)
end
return out
