-- Helpers every job script starts with.
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
