-- Helpers of every catalog script (shared/catalog/keys.py names the same keys).
local P = 'lstmgen:'

local function blob_key(digest) return P .. 'blob:' .. digest end
local function refs_key(digest) return P .. 'blob:' .. digest .. ':refs' end

-- Forget that model `name` uses blob `digest`; delete the blob when no model uses it.
local function release(digest, name)
  if digest == nil or digest == false or digest == '' then return end
  redis.call('SREM', refs_key(digest), name)
  if redis.call('SCARD', refs_key(digest)) == 0 then
    redis.call('DEL', blob_key(digest), refs_key(digest))
  end
end

