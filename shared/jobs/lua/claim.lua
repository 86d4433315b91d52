-- ARGV: worker id, max attempts, queue ttl, active ttl, retention, delivery tag, key prefix of
-- worker heartbeats. Returns {'claimed', attempt}, {'final', status} or {outcome}.
local worker, max_attempts, queue_ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local active_ttl, retention, delivery = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing'} end
if FINAL[status] then return {'final', status} end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
local t = now()
if redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then
  finalize('canceled', retention, '', '')
  return {'canceled'}
end
if status == 'running' then
  -- A second message of a job that a live worker runs (a broker restore after a reconnect,
  -- say) is a duplicate; a dead worker's job is taken over.
  local owner = redis.call('HGET', KEYS[1], 'worker')
  if owner and redis.call('EXISTS', ARGV[7] .. owner) == 1 then return {'duplicate'} end
elseif t - tonumber(redis.call('HGET', KEYS[1], 'queued_at')) > queue_ttl then
  finalize('expired', retention, 'expired',
           'queued longer than the ' .. ARGV[3] .. ' s queue limit without starting')
  return {'expired'}
end
if attempts >= max_attempts then
  finalize('failed', retention, 'worker_lost',
           'worker lost ' .. attempts .. ' times while running this job')
  return {'failed'}
end
attempts = attempts + 1
local id = redis.call('HGET', KEYS[1], 'id')
redis.call('HSET', KEYS[1], 'status', 'running', 'attempts', attempts, 'worker', worker,
           'delivery', delivery, 'started_at', fmt(t), 'expires_at', fmt(t + active_ttl))
redis.call('ZREM', KEYS[QUEUED], id)
redis.call('ZADD', KEYS[RUNNING], t, id)
redis.call('XADD', KEYS[2], '*', 'event', 'status', 'data',
           cjson.encode({status='running', attempt=attempts}))
for i = 1, #KEYS do
  if i ~= QUEUED and i ~= RUNNING then redis.call('EXPIRE', KEYS[i], active_ttl) end
end
return {'claimed', attempts}
