-- Decide one alert message atomically: idempotency, throttle window, cluster-wide rate limit.
-- Restates alerting.shared.throttle.decide (admit, refill/take_token with reserved_tokens, fold);
-- tests/integration/test_store_contract.py compares the two on random histories.
-- ARGV (built by alerting.shared.stores.scripts.admit): prefix, id, fingerprint, now, length, count, first_seen,
--       last_seen, sample, subject, rate_limit (0 = none), rate_period, ttl
local p, id, fp = ARGV[1], ARGV[2], ARGV[3]
local now, length, count = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local first_seen, last_seen = tonumber(ARGV[7]), tonumber(ARGV[8])
local sample, subject = ARGV[9], ARGV[10]
local limit, period, ttl = tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])

if redis.call('EXISTS', p .. ':sent:' .. id) == 1 then
  return 'duplicate'
end
local prior = redis.call('GET', p .. ':dec:' .. id)
if prior then
  return prior  -- a redelivered message gets the verdict it had, and is not counted twice
end

local verdict = 'send'
if length > 0 then
  local wkey = p .. ':win:' .. fp
  if redis.call('EXISTS', wkey) == 0 then
    redis.call('HSET', wkey, 'opened', now, 'end', now + length, 'repeats', 0, 'seq', 0)
    if count > 1 then
      redis.call('HSET', wkey, 'repeats', count - 1, 'first', first_seen, 'last', last_seen, 'sample', sample)
    end
    redis.call('ZADD', p .. ':due', now + length, fp)
  else
    verdict = 'suppress'
    local w = redis.call('HMGET', wkey, 'first', 'last')
    redis.call('HINCRBY', wkey, 'repeats', count)
    if not w[1] or first_seen < tonumber(w[1]) then
      redis.call('HSET', wkey, 'first', first_seen)
    end
    if not w[2] or last_seen >= tonumber(w[2]) then
      redis.call('HSET', wkey, 'last', last_seen, 'sample', sample)
    end
  end
end

if verdict == 'send' and limit > 0 then
  local reserved = redis.call('ZCOUNT', p .. ':outbox', '-inf', now) + redis.call('EXISTS', p .. ':summary')
  local b = redis.call('HMGET', p .. ':bucket', 'tokens', 'updated')
  local tokens = tonumber(b[1]) or limit
  local updated = tonumber(b[2]) or now
  tokens = math.min(limit, tokens + math.max(now - updated, 0) * limit / period)
  if tokens >= 1 + reserved then
    tokens = tokens - 1
  else
    verdict = 'fold'
    redis.call('HINCRBY', p .. ':summary', fp, 1)
    redis.call('HSET', p .. ':summary:subject', fp, subject)
    redis.call('SET', p .. ':summary:since', now, 'NX')
  end
  redis.call('HSET', p .. ':bucket', 'tokens', tokens, 'updated', now)
end

redis.call('SET', p .. ':dec:' .. id, verdict, 'EX', ttl)
return verdict
