-- Many running jobs at once (a worker flushes its whole batch in one call): KEYS: the keys of
-- each job in turn; ARGV[1]: a JSON list, per job, of [attempt, done, then (chunk, event data)
-- per output], all strings. Returns ok | cancel | gone per job.
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
