-- ARGV: queue ttl, retention. Expire a job still queued past its TTL. Returns expired | kept.
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then
  redis.call('ZREM', KEYS[QUEUED], ARGV[3])
  return 'kept'
end
local queued_at = tonumber(redis.call('HGET', KEYS[1], 'queued_at'))
if now() - queued_at <= tonumber(ARGV[1]) then return 'kept' end
finalize(KEYS, 'expired', tonumber(ARGV[2]), 'expired',
         'queued longer than the ' .. ARGV[1] .. ' s queue limit without starting')
return 'expired'
