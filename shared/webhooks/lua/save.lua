-- Replace a delivery's record only if it is still the one the caller read (compare-and-set).
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
local ttl = math.max(redis.call('PTTL', KEYS[2]), tonumber(ARGV[4]))
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
