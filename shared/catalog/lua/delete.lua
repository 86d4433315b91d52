-- Delete an owner's uploaded model, and its blob if no other model uses it.
-- KEYS: model hash, index. ARGV: name, owner.
-- Returns 'deleted', or 'missing' (no such upload of this owner).
local model, index = KEYS[1], KEYS[2]
local name, owner = ARGV[1], ARGV[2]
local current = redis.call('HMGET', model, 'source', 'owner', 'digest')
if current[1] ~= 'upload' or current[2] ~= owner then return 'missing' end
redis.call('DEL', model)
redis.call('SREM', index, name)
release(current[3], name)
return 'deleted'
