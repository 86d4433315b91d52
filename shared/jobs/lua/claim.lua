-- ARGV: worker id, max attempts, queue ttl, active ttl, retention.
-- Returns {'claimed', attempt, stored length of each output...}, {'final', status} or {outcome}.
local worker, max_attempts, queue_ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local active_ttl, retention = tonumber(ARGV[4]), tonumber(ARGV[5])
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing'} end
if FINAL[status] then return {'final', status} end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
local t = now()
if redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then
  finalize('canceled', retention, '', '')
  return {'canceled'}
end
if status == 'queued' then
  local queued_at = tonumber(redis.call('HGET', KEYS[1], 'queued_at'))
  if t - queued_at > queue_ttl then
    finalize('expired', retention, 'expired',
             'queued longer than the ' .. ARGV[3] .. ' s queue limit without starting')
    return {'expired'}
  end
elseif attempts >= max_attempts then
  finalize('failed', retention, 'worker_lost',
           'worker lost ' .. attempts .. ' times while running this job')
  return {'failed'}
end
attempts = attempts + 1
redis.call('HSET', KEYS[1], 'status', 'running', 'attempts', attempts, 'worker', worker,
           'started_at', fmt(t), 'expires_at', fmt(t + active_ttl))
redis.call('ZREM', KEYS[3], redis.call('HGET', KEYS[1], 'id'))
redis.call('XADD', KEYS[2], '*', 'event', 'status', 'data',
           cjson.encode({status='running', attempt=attempts}))
local result = {'claimed', attempts}
for i = 1, #KEYS do
  if i ~= 3 then redis.call('EXPIRE', KEYS[i], active_ttl) end
  if i >= OUT_FIRST then result[#result + 1] = redis.call('STRLEN', KEYS[i]) end
end
return result
