-- Claim the sending of one alert id before talking SMTP, so that two copies of one alert in flight at once
-- (a publish re-sent after a timeout that had in fact landed) are mailed once.
-- Restates alerting.shared.throttle.may_claim.
-- The claim expires after `lease` ms: a holder that died mid-send gives it up by itself. `steal` names a
-- holder the caller knows to be dead (a process of its own host that no longer exists) and may take over from.
-- ARGV (alerting.shared.stores.scripts.claim): prefix, key, owner, lease_ms, steal ('' = none).
-- Returns {status, holder, ms_left}:
-- status 'claimed' (ours now), 'sent' (already mailed), 'busy' (another holder, for ms_left more ms).
local p, key, owner, lease, steal = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]

if redis.call('EXISTS', p .. ':sent:' .. key) == 1 then
  return {'sent', '', 0}
end
local ckey = p .. ':claim:' .. key
local holder = redis.call('GET', ckey)
if (not holder) or holder == owner or (steal ~= '' and holder == steal) then
  redis.call('SET', ckey, owner, 'PX', lease)
  return {'claimed', owner, lease}
end
return {'busy', holder, redis.call('PTTL', ckey)}
