-- ARGV: attempt. Put a running job back in the queue (worker shutting down). Returns ok | gone.
if not held_by(ARGV[1]) then return 'gone' end
local t = now()
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', tonumber(ARGV[1]) - 1,
           'queued_at', fmt(t))
redis.call('HDEL', KEYS[1], 'started_at', 'worker')
redis.call('ZADD', KEYS[3], t, redis.call('HGET', KEYS[1], 'id'))
redis.call('XADD', KEYS[2], '*', 'event', 'status', 'data', cjson.encode({status='queued'}))
return 'ok'
