-- The next job of a model for a free slot, chosen fairly: the owner with jobs waiting whose
-- pass is lowest goes next (its pass then grows by the job's samples / the owner's weight), so
-- owners with work waiting take turns whatever each has queued; within an owner, by priority
-- then age. An owner at its limit of running samples is passed over.
-- ARGV: model, worker id, max attempts, queue ttl, active ttl, retention, delivery tag.
-- Returns {'claimed', job id, attempt, ...}, {'limited', '', 0, ...} (jobs wait, but every
-- owner with some is at its limit) or {'empty', '', 0, ...}, where ... are the jobs it ended
-- instead of running them (expired in the queue, or lost by workers too often).
local model, worker, max_attempts = ARGV[1], ARGV[2], tonumber(ARGV[3])
local queue_ttl, active_ttl, retention = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local delivery = ARGV[7]
local owners = owners_key(model)

local function running_samples(owner)
  local total = 0
  for _, n in ipairs(redis.call('HVALS', owner_running(owner))) do total = total + tonumber(n) end
  return total
end

-- The first job of the first owner in pass order that may run one more: id, owner, pass.
local function pick()
  local ranked = redis.call('ZRANGE', owners, 0, 499, 'WITHSCORES')
  for i = 1, #ranked, 2 do
    local owner = ranked[i]
    local head = redis.call('ZRANGE', owner_queue(model, owner), 0, 0)
    if #head == 0 then
      redis.call('ZREM', owners, owner)
    else
      local h = redis.call('HMGET', P .. 'job:' .. head[1], 'status', 'n', 'max_running')
      if h[1] ~= 'queued' then  -- ended or gone meanwhile: drop it and look again
        redis.call('ZREM', owner_queue(model, owner), head[1])
        redis.call('ZREM', owner_queued(owner), head[1])
        return 'again'
      end
      local limit = tonumber(h[3] or '0')
      if limit <= 0 or running_samples(owner) + tonumber(h[2]) <= limit then
        return head[1], owner, tonumber(ranked[i + 1])
      end
    end
  end
  return nil
end

local ended = {}
local function answer(outcome, id, attempt)
  local reply = {outcome, id, attempt}
  for _, done in ipairs(ended) do reply[#reply + 1] = done end
  return reply
end

for _ = 1, 200 do
  local id, owner, pass = pick()
  if id == nil then
    return answer(redis.call('ZCARD', owners) == 0 and 'empty' or 'limited', '', 0)
  end
  if id ~= 'again' then
    local n = tonumber(redis.call('HGET', P .. 'job:' .. id, 'n'))
    local K = job_keys(id, n)
    local t = now()
    local attempts = tonumber(redis.call('HGET', K[1], 'attempts') or '0')
    if t - tonumber(redis.call('HGET', K[1], 'queued_at')) > queue_ttl then
      finalize(K, 'expired', retention, 'expired',
               'queued longer than the ' .. ARGV[4] .. ' s queue limit without starting')
      ended[#ended + 1] = id
    elseif attempts >= max_attempts then
      finalize(K, 'failed', retention, 'worker_lost',
               'worker lost ' .. attempts .. ' times while running this job')
      ended[#ended + 1] = id
    else
      dequeue_fair(K)
      local weight = tonumber(redis.call('HGET', K[1], 'weight') or '1')
      if redis.call('ZSCORE', owners, owner) then
        redis.call('ZADD', owners, pass + n / weight, owner)
      end
      redis.call('SET', vtime_key(model), pass)
      attempts = attempts + 1
      redis.call('HSET', K[1], 'status', 'running', 'attempts', attempts, 'worker', worker,
                 'delivery', delivery, 'started_at', fmt(t), 'expires_at', fmt(t + active_ttl))
      redis.call('HSET', owner_running(owner), id, n)
      redis.call('ZREM', K[QUEUED], id)
      redis.call('ZADD', K[RUNNING], t, id)
      redis.call('XADD', K[2], '*', 'event', 'status', 'data',
                 cjson.encode({status='running', attempt=attempts}))
      for i = 1, #K do
        if i ~= QUEUED and i ~= RUNNING then redis.call('EXPIRE', K[i], active_ttl) end
      end
      return answer('claimed', id, attempts)
    end
  end
end
return answer('limited', '', 0)  -- only ended jobs were met: the next call goes on
