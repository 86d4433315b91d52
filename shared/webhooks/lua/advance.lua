-- Take a delivery out of its job's line after its first attempt; the next one becomes due.
local line, due, wake, hash = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
redis.call('LREM', line, 1, ARGV[1])
local head = redis.call('LINDEX', line, 0)
if head and redis.call('HEXISTS', hash, head) == 1 then
  redis.call('ZADD', due, 'NX', ARGV[2], ARGV[3] .. head)
  redis.call('LPUSH', wake, '1')
  redis.call('LTRIM', wake, 0, 0)
end
return head
