-- KEYS: hash, events, queued, owner index, idempotency key (or the hash again), text to continue
-- (or the hash again). ARGV: id, has_idem, idem_ttl, max_depth, active_ttl, job key prefix,
-- the text to continue (JSON, or ''), the owner's limit of queued jobs (0: none), then
-- field/value pairs (owner, model and fair_score among them).
-- Returns {'created' | 'existing' | 'exists' | 'full' | 'owner_full', id}.
local id, has_idem, idem_ttl = ARGV[1], ARGV[2] == '1', tonumber(ARGV[3])
local max_depth, active_ttl, prefix = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local owner_limit = tonumber(ARGV[8])
if has_idem then
  local existing = redis.call('GET', KEYS[5])
  if existing and redis.call('EXISTS', prefix .. existing) == 1 then
    return {'existing', existing}
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists', id} end
if redis.call('ZCARD', KEYS[3]) >= max_depth then return {'full', id} end
local fields = {}
for i = 9, #ARGV, 2 do fields[ARGV[i]] = ARGV[i + 1] end
if owner_limit > 0 and redis.call('ZCARD', owner_queued(fields.owner)) >= owner_limit then
  return {'owner_full', id}
end
local t = now()
for i = 9, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'status', 'queued', 'created_at', fmt(t), 'queued_at', fmt(t),
           'expires_at', fmt(t + active_ttl), 'attempts', '0', 'done', '0')
-- Within an owner: higher priority first, then older (the rank is 0, 1 or 2).
redis.call('HSET', KEYS[1], 'fair_score', string.format('%.6f', tonumber(fields.rank) * 1e10 + t))
redis.call('EXPIRE', KEYS[1], active_ttl)
redis.call('ZADD', KEYS[3], t, id)
enqueue_fair(KEYS)
redis.call('ZADD', KEYS[4], t, id)
redis.call('EXPIRE', KEYS[4], active_ttl)
redis.call('XADD', KEYS[2], '*', 'event', 'status', 'data', cjson.encode({status='queued'}))
redis.call('EXPIRE', KEYS[2], active_ttl)
if #ARGV[7] > 0 then redis.call('SET', KEYS[6], ARGV[7], 'EX', active_ttl) end
if has_idem then redis.call('SET', KEYS[5], id, 'EX', idem_ttl) end
return {'created', id}
