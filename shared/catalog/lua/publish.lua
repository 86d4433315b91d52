-- Publish an uploaded model: its staged archive becomes the blob of its digest (or is dropped
-- if that blob exists), and its info hash is written. A model replaced gives up its old blob.
-- KEYS: model hash, index, staged archive. ARGV: name, owner, 'create' or 'replace', digest,
-- then the hash's field/value pairs.
-- Returns 'created', 'replaced', 'exists' (create on a name of the owner's), 'taken' (another
-- owner's or a directory model), or 'expired' (the staged archive is gone).
local model, index, staged = KEYS[1], KEYS[2], KEYS[3]
local name, owner, mode, digest = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local current = redis.call('HMGET', model, 'source', 'owner', 'digest')
if current[1] then
  if current[1] ~= 'upload' or current[2] ~= owner then
    redis.call('DEL', staged)
    return 'taken'
  end
  if mode ~= 'replace' then
    redis.call('DEL', staged)
    return 'exists'
  end
end
if redis.call('EXISTS', staged) == 0 then return 'expired' end
if redis.call('EXISTS', blob_key(digest)) == 1 then
  redis.call('DEL', staged)
else
  redis.call('RENAME', staged, blob_key(digest))
  redis.call('PERSIST', blob_key(digest))
end
redis.call('SADD', refs_key(digest), name)
if current[1] and current[3] ~= digest then release(current[3], name) end
redis.call('DEL', model)
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', model, unpack(fields))
redis.call('SADD', index, name)
if current[1] then return 'replaced' end
return 'created'
