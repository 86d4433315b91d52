-- Helpers every job script starts with. The KEYS of a job are its hash, its event stream, the
-- queued set, the running set, then one string per output (see keys.job_keys).
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.6f', x) end
local FINAL = {succeeded=true, failed=true, canceled=true, timed_out=true, expired=true}
local QUEUED, RUNNING, OUT_FIRST = 3, 4, 5
local PER_OUTPUT = 4  -- ARGV per output of a write: chunk, event data, base, new length

-- Whether the job is still running under this attempt (a later delivery takes it over).
local function held_by(attempt)
  return redis.call('HGET', KEYS[1], 'status') == 'running'
     and redis.call('HGET', KEYS[1], 'attempts') == attempt
end

-- Whether every output has the length (in characters) its writer last saw: a write that was
-- lost (a failover) or applied without an answer (a dropped connection) makes them differ,
-- and the writer must start again from the stored lengths instead of appending.
local function bases_match(hash, count, args, first_arg)
  for i = 0, count - 1 do
    local stored = redis.call('HGET', hash, 'len:' .. i) or '0'
    if stored ~= args[first_arg + i * PER_OUTPUT + 2] then return false end
  end
  return true
end

-- Append each output's new text with one `output` event per chunk, and its new length.
local function append_chunks(hash, events, first_key, count, args, first_arg)
  for i = 0, count - 1 do
    local at = first_arg + i * PER_OUTPUT
    local chunk = args[at]
    if #chunk > 0 then
      redis.call('APPEND', KEYS[first_key + i], chunk)
      redis.call('XADD', events, '*', 'event', 'output', 'data', args[at + 1])
      redis.call('HSET', hash, 'len:' .. i, args[at + 3])
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
  redis.call('ZREM', KEYS[QUEUED], id)
  redis.call('ZREM', KEYS[RUNNING], id)
  local data = cjson.encode({status=status})
  redis.call('XADD', KEYS[2], '*', 'event', 'status', 'data', data)
  redis.call('XADD', KEYS[2], '*', 'event', 'done', 'data', data)
  for i = 1, #KEYS do
    if i ~= QUEUED and i ~= RUNNING then redis.call('EXPIRE', KEYS[i], retention) end
  end
end

-- Put the job back in the queue with `attempts` deliveries counted.
local function requeue(attempts, reason)
  local t = now()
  local id = redis.call('HGET', KEYS[1], 'id')
  redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', attempts, 'queued_at', fmt(t))
  redis.call('HDEL', KEYS[1], 'started_at', 'worker', 'delivery')
  redis.call('ZREM', KEYS[RUNNING], id)
  redis.call('ZADD', KEYS[QUEUED], t, id)
  redis.call('XADD', KEYS[2], '*', 'event', 'status', 'data',
             cjson.encode({status='queued', reason=reason}))
end
