-- ARGV: retention, error type, error message. Fail a job still queued (it could not be
-- enqueued). Returns failed | kept.
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return 'kept' end
finalize(KEYS, 'failed', tonumber(ARGV[1]), ARGV[2], ARGV[3])
return 'failed'
