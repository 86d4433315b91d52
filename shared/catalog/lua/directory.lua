-- Publish the info of a model of the model directory (a worker that loaded it), unless an
-- uploaded model has that name. KEYS: model hash, index. ARGV: field/value pairs.
-- Returns 'published' or 'taken'.
local model, index = KEYS[1], KEYS[2]
if redis.call('HGET', model, 'source') == 'upload' then return 'taken' end
redis.call('DEL', model)
redis.call('HSET', model, unpack(ARGV))
redis.call('SADD', index, redis.call('HGET', model, 'name'))
return 'published'
