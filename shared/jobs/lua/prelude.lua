-- Helpers every job script starts with. A job's keys K are its hash, its event stream, the
-- queued set, the running set, then one string per output (keys.job_keys; scripts called for
-- one job get them as KEYS). The fair queues are found from a job's owner and model, under the
-- store's prefix (keys.PREFIX): one Redis, no cluster.
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.6f', x) end
local FINAL = {succeeded=true, failed=true, canceled=true, timed_out=true, expired=true}
local QUEUED, RUNNING, OUT_FIRST = 3, 4, 5
local PER_OUTPUT = 4  -- ARGV per output of a write: chunk, event data, base, new length
local P = 'lstmgen:'

-- The waiting jobs of one owner and model, by priority then age (a sorted set).
local function owner_queue(model, owner) return P .. 'fair:' .. model .. ':' .. owner end
-- The owners with jobs waiting for a model, by their pass (a sorted set; lowest goes next).
local function owners_key(model) return P .. 'fair:' .. model end
local function vtime_key(model) return P .. 'fair:' .. model .. ':vtime' end
-- An owner's queued jobs of every model (a sorted set) and running jobs' samples (a hash).
local function owner_queued(owner) return P .. 'owner:' .. owner .. ':queued' end
local function owner_running(owner) return P .. 'owner:' .. owner .. ':running' end

local function job_keys(id, n)
  local K = {P .. 'job:' .. id, P .. 'job:' .. id .. ':events', P .. 'jobs:queued',
             P .. 'jobs:running'}
  for i = 0, n - 1 do K[#K + 1] = P .. 'job:' .. id .. ':out:' .. i end
  return K
end

-- Whether the job is still running under this attempt (a later delivery takes it over).
local function held_by(K, attempt)
  return redis.call('HGET', K[1], 'status') == 'running'
     and redis.call('HGET', K[1], 'attempts') == attempt
end

-- Put a job (status queued already) in its owner's fair queue; an owner that had nothing
-- waiting joins at the model's virtual time, so it is next without a burst of catching up.
local function enqueue_fair(K)
  local h = redis.call('HMGET', K[1], 'id', 'owner', 'model', 'fair_score')
  local id, owner, model, score = h[1], h[2], h[3], tonumber(h[4] or '0')
  redis.call('ZADD', owner_queue(model, owner), score, id)
  redis.call('ZADD', owner_queued(owner), score, id)
  if not redis.call('ZSCORE', owners_key(model), owner) then
    redis.call('ZADD', owners_key(model), tonumber(redis.call('GET', vtime_key(model)) or '0'),
               owner)
  end
end

local function dequeue_fair(K)
  local h = redis.call('HMGET', K[1], 'id', 'owner', 'model')
  local id, owner, model = h[1], h[2], h[3]
  local queue = owner_queue(model, owner)
  redis.call('ZREM', queue, id)
  redis.call('ZREM', owner_queued(owner), id)
  if redis.call('ZCARD', queue) == 0 then redis.call('ZREM', owners_key(model), owner) end
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
local function finalize(K, status, retention, error_type, error_message)
  local t = now()
  local h = redis.call('HMGET', K[1], 'id', 'status', 'owner')
  local id, before, owner = h[1], h[2], h[3]
  if before == 'queued' then dequeue_fair(K) end
  if before == 'running' then redis.call('HDEL', owner_running(owner), id) end
  redis.call('HSET', K[1], 'status', status, 'completed_at', fmt(t),
             'expires_at', fmt(t + retention))
  if error_type and #error_type > 0 then
    redis.call('HSET', K[1], 'error_type', error_type, 'error_message', error_message)
  end
  redis.call('ZREM', K[QUEUED], id)
  redis.call('ZREM', K[RUNNING], id)
  local data = cjson.encode({status=status})
  redis.call('XADD', K[2], '*', 'event', 'status', 'data', data)
  redis.call('XADD', K[2], '*', 'event', 'done', 'data', data)
  for i = 1, #K do
    if i ~= QUEUED and i ~= RUNNING then redis.call('EXPIRE', K[i], retention) end
  end
end

-- Put a running job back in the queue with `attempts` deliveries counted.
local function requeue(K, attempts, reason)
  local t = now()
  local h = redis.call('HMGET', K[1], 'id', 'owner')
  local id, owner = h[1], h[2]
  redis.call('HSET', K[1], 'status', 'queued', 'attempts', attempts, 'queued_at', fmt(t))
  redis.call('HDEL', K[1], 'started_at', 'worker', 'delivery')
  redis.call('HDEL', owner_running(owner), id)
  redis.call('ZREM', K[RUNNING], id)
  redis.call('ZADD', K[QUEUED], t, id)
  enqueue_fair(K)
  redis.call('XADD', K[2], '*', 'event', 'status', 'data',
             cjson.encode({status='queued', reason=reason}))
end
