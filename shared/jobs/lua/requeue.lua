-- ARGV: attempt, worker. Put back in the queue a job whose worker stopped beating, this
-- delivery counted. Its old worker can no longer write: its attempt is not the job's any more
-- once the job is claimed again, and until then the job is not running. Returns the job's
-- broker delivery tag ('' if none was recorded), or false if the job is not that attempt's.
if not held_by(KEYS, ARGV[1]) or redis.call('HGET', KEYS[1], 'worker') ~= ARGV[2] then
  return false
end
local delivery = redis.call('HGET', KEYS[1], 'delivery') or ''
requeue(KEYS, tonumber(ARGV[1]), 'worker_lost')
return delivery
