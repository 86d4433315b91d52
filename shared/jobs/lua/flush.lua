-- Many running jobs at once (a worker flushes its whole batch in one call): KEYS: the keys of
-- each job in turn; ARGV[1]: a JSON list, per job, of [attempt, done, then (chunk, event data,
-- base, new length) per output], all strings. Returns ok | cancel | gone | rebase per job.
local updates = cjson.decode(ARGV[1])
local results = {}
local k = 0
for j, update in ipairs(updates) do
  local outputs = (#update - 2) / PER_OUTPUT
  local hash = KEYS[k + 1]
  local state = redis.call('HMGET', hash, 'status', 'attempts', 'cancel_requested')
  if state[1] ~= 'running' or state[2] ~= update[1] then
    results[j] = 'gone'
  elseif not bases_match(hash, outputs, update, 3) then
    results[j] = 'rebase'
  else
    append_chunks(hash, KEYS[k + 2], k + OUT_FIRST, outputs, update, 3)
    redis.call('HSET', hash, 'done', update[2])
    results[j] = state[3] == '1' and 'cancel' or 'ok'
  end
  k = k + OUT_FIRST - 1 + outputs
end
return results
