-- End the windows that are due: owe a digest for those that counted repeats (and open the next window at
-- once), close quiet ones. Restates alerting.shared.throttle.due_windows and roll; the digest body is
-- alerting.shared.outbox's JSON form (Digest).
-- ARGV (alerting.shared.stores.scripts.roll): prefix, now, length, limit.  Returns the number of digests now owed.
local p, now, length, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local due = redis.call('ZRANGEBYSCORE', p .. ':due', '-inf', now, 'LIMIT', 0, limit)
local owed = 0
for _, fp in ipairs(due) do
  local wkey = p .. ':win:' .. fp
  local w = redis.call('HMGET', wkey, 'opened', 'end', 'repeats', 'first', 'last', 'sample', 'seq')
  if (not w[2]) or tonumber(w[3] or 0) == 0 or (not w[6]) then
    redis.call('DEL', wkey)
    redis.call('ZREM', p .. ':due', fp)
  else
    local seq = tonumber(w[7] or 0) + 1
    local item_id = 'digest:' .. fp .. ':' .. redis.call('INCR', p .. ':item:seq')
    -- Times travel as the strings Redis stored, so no precision is lost to Lua's number formatting.
    local body = cjson.encode({
      kind = 'digest', fingerprint = fp, seq = seq, count = tonumber(w[3]),
      first = w[4] or w[1], last = w[5] or w[2], sample = w[6], window_start = w[1], window_end = w[2],
    })
    redis.call('SET', p .. ':item:' .. item_id, body)
    redis.call('ZADD', p .. ':outbox', now, item_id)
    redis.call('DEL', wkey)
    redis.call('HSET', wkey, 'opened', now, 'end', now + length, 'repeats', 0, 'seq', seq)
    redis.call('ZADD', p .. ':due', now + length, fp)
    owed = owed + 1
  end
end
return owed
