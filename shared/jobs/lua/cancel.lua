-- ARGV: retention. Returns canceled (it was queued: it ends now) | requested (it is running: its
-- worker stops it) | missing | final (it had ended already).
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if status == 'queued' then
  finalize(KEYS, 'canceled', tonumber(ARGV[1]), '', '')
  return 'canceled'
end
if status == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1')
  return 'requested'
end
return 'final'
