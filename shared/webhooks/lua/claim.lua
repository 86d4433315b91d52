-- Claim what is due: push each one's score a lease into the future, so a scheduler that dies
-- before handing it to Celery only delays it; several schedulers never take the same one.
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, item in ipairs(items) do
  redis.call('ZADD', KEYS[1], 'XX', ARGV[2], item)
end
return items
