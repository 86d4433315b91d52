-- Add a delivery behind the job's earlier ones. An `output` still waiting behind the head is
-- replaced by the newer one (it carries all the text so far), so a slow receiver never builds
-- up a backlog that delays `completed`. Returns the id queued, or "" when throttled.
local hash, line, gate, due, wake = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, record, event, member, now, keep_ms, gap_ms =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
if gap_ms > 0 and not redis.call('SET', gate, '1', 'PX', gap_ms, 'NX') then
  return ''
end
local length = redis.call('LLEN', line)
if event == 'output' and length > 1 then
  local tail = redis.call('LINDEX', line, -1)
  local waiting = redis.call('HGET', hash, tail)
  if waiting and cjson.decode(waiting)['event'] == 'output' then
    redis.call('HDEL', hash, tail)
    redis.call('RPOP', line)
    length = length - 1
  end
end
redis.call('HSET', hash, id, record)
redis.call('RPUSH', line, id)
if length == 0 then
  redis.call('ZADD', due, now, member)
  redis.call('LPUSH', wake, '1')
  redis.call('LTRIM', wake, 0, 0)
end
local ttl = math.max(redis.call('PTTL', KEYS[6]), keep_ms)
redis.call('PEXPIRE', hash, ttl)
redis.call('PEXPIRE', line, ttl)
return id
