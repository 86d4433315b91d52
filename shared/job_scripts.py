"""Lua scripts that change job records atomically (every status change is compare-and-set).

Keys of one job are passed as KEYS: [1] the record hash, [2] its event stream, [3] the set of
queued jobs, then one output string per sample. Times come from the Redis server's clock so that
API and workers on different machines agree.
"""

from __future__ import annotations

# Shared helpers, prepended to every script.
_PRELUDE = """
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.6f', x) end
local FINAL = {succeeded=true, failed=true, canceled=true, timed_out=true, expired=true}
local OUT_FIRST = 4

-- Whether the job is still running under this attempt (a later delivery takes it over).
local function held_by(attempt)
  return redis.call('HGET', KEYS[1], 'status') == 'running'
     and redis.call('HGET', KEYS[1], 'attempts') == attempt
end

-- Append each sample's new text to its output string, with one `output` event per chunk.
local function append_chunks(first_arg)
  for i = OUT_FIRST, #KEYS do
    local chunk = ARGV[first_arg + (i - OUT_FIRST) * 2]
    if chunk and #chunk > 0 then
      redis.call('APPEND', KEYS[i], chunk)
      redis.call('XADD', KEYS[2], '*', 'event', 'output',
                 'data', ARGV[first_arg + (i - OUT_FIRST) * 2 + 1])
    end
  end
end

-- Record a final status, emit its events and start the retention clock on every key.
local function finalize(status, retention, error_type, error_message)
  local t = now()
  local id = redis.call('HGET', KEYS[1], 'id')
  redis.call('HSET', KEYS[1], 'status', status, 'completed_at', fmt(t),
             'expires_at', fmt(t + retention))
  if error_type and #error_type > 0 then
    redis.call('HSET', KEYS[1], 'error_type', error_type, 'error_message', error_message)
  end
  redis.call('ZREM', KEYS[3], id)
  local data = cjson.encode({status=status})
  redis.call('XADD', KEYS[2], '*', 'event', 'status', 'data', data)
  redis.call('XADD', KEYS[2], '*', 'event', 'done', 'data', data)
  for i = 1, #KEYS do
    if i ~= 3 then redis.call('EXPIRE', KEYS[i], retention) end
  end
end
"""

# KEYS: hash, events, queued, owner index, idempotency key (or the hash again).
# ARGV: id, has_idem, idem_ttl, max_depth, active_ttl, job key prefix, then field/value pairs.
CREATE = (
    _PRELUDE
    + """
local id, has_idem, idem_ttl = ARGV[1], ARGV[2] == '1', tonumber(ARGV[3])
local max_depth, active_ttl, prefix = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
if has_idem then
  local existing = redis.call('GET', KEYS[5])
  if existing and redis.call('EXISTS', prefix .. existing) == 1 then
    return {'existing', existing}
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists', id} end
if redis.call('ZCARD', KEYS[3]) >= max_depth then return {'full', id} end
local t = now()
for i = 7, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'status', 'queued', 'created_at', fmt(t), 'queued_at', fmt(t),
           'expires_at', fmt(t + active_ttl), 'attempts', '0', 'done', '0')
redis.call('EXPIRE', KEYS[1], active_ttl)
redis.call('ZADD', KEYS[3], t, id)
redis.call('ZADD', KEYS[4], t, id)
redis.call('EXPIRE', KEYS[4], active_ttl)
redis.call('XADD', KEYS[2], '*', 'event', 'status', 'data', cjson.encode({status='queued'}))
redis.call('EXPIRE', KEYS[2], active_ttl)
if has_idem then redis.call('SET', KEYS[5], id, 'EX', idem_ttl) end
return {'created', id}
"""
)

# ARGV: worker id, max attempts, queue ttl, active ttl, retention.
# Returns {'claimed', attempt, stored length of each output...}, {'final', status} or {outcome}.
CLAIM = (
    _PRELUDE
    + """
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
"""
)

# Many running jobs at once (a worker flushes its whole batch in one call): KEYS: the keys of
# each job in turn; ARGV[1]: a JSON list, per job, of [attempt, done, then (chunk, event data)
# per output], all strings. Returns ok | cancel | gone per job.
FLUSH = """
local updates = cjson.decode(ARGV[1])
local results = {}
local k = 0
for j, update in ipairs(updates) do
  local outputs = (#update - 2) / 2
  local state = redis.call('HMGET', KEYS[k + 1], 'status', 'attempts', 'cancel_requested')
  if state[1] ~= 'running' or state[2] ~= update[1] then
    results[j] = 'gone'
  else
    for i = 1, outputs do
      local chunk = update[1 + 2 * i]
      if #chunk > 0 then
        redis.call('APPEND', KEYS[k + 3 + i], chunk)
        redis.call('XADD', KEYS[k + 2], '*', 'event', 'output', 'data', update[2 + 2 * i])
      end
    end
    redis.call('HSET', KEYS[k + 1], 'done', update[2])
    results[j] = state[3] == '1' and 'cancel' or 'ok'
  end
  k = k + 3 + outputs
end
return results
"""

# ARGV: attempt, status, error type, error message, finish reasons (JSON), done, retention,
# then (chunk, event data) per output. Returns ok | gone.
FINISH = (
    _PRELUDE
    + """
if not held_by(ARGV[1]) then return 'gone' end
append_chunks(8)
redis.call('HSET', KEYS[1], 'done', ARGV[6], 'finish_reason', ARGV[5])
finalize(ARGV[2], tonumber(ARGV[7]), ARGV[3], ARGV[4])
return 'ok'
"""
)

# ARGV: retention. Returns canceled | requested | missing | the final status it already had.
CANCEL = (
    _PRELUDE
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status == 'queued' then
  finalize('canceled', tonumber(ARGV[1]), '', '')
  return 'canceled'
end
if status == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1')
  return 'requested'
end
return status
"""
)

# ARGV: attempt. Put a running job back in the queue (worker shutting down). Returns ok | gone.
RELEASE = (
    _PRELUDE
    + """
if not held_by(ARGV[1]) then return 'gone' end
local t = now()
redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', tonumber(ARGV[1]) - 1,
           'queued_at', fmt(t))
redis.call('HDEL', KEYS[1], 'started_at', 'worker')
redis.call('ZADD', KEYS[3], t, redis.call('HGET', KEYS[1], 'id'))
redis.call('XADD', KEYS[2], '*', 'event', 'status', 'data', cjson.encode({status='queued'}))
return 'ok'
"""
)

# ARGV: queue ttl, retention. Expire a job still queued past its TTL. Returns expired | kept.
EXPIRE = (
    _PRELUDE
    + """
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then
  redis.call('ZREM', KEYS[3], ARGV[3])
  return 'kept'
end
local queued_at = tonumber(redis.call('HGET', KEYS[1], 'queued_at'))
if now() - queued_at <= tonumber(ARGV[1]) then return 'kept' end
finalize('expired', tonumber(ARGV[2]), 'expired',
         'queued longer than the ' .. ARGV[1] .. ' s queue limit without starting')
return 'expired'
"""
)

# ARGV: retention, error type, error message. Fail a job still queued (it could not be
# enqueued). Returns failed | kept.
ABANDON = (
    _PRELUDE
    + """
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return 'kept' end
finalize('failed', tonumber(ARGV[1]), ARGV[2], ARGV[3])
return 'failed'
"""
)
