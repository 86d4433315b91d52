-- ARGV: attempt, status, error type, error message, finish reasons (JSON), done, retention,
-- then (chunk, event data) per output. Returns ok | gone.
if not held_by(ARGV[1]) then return 'gone' end
append_chunks(8)
redis.call('HSET', KEYS[1], 'done', ARGV[6], 'finish_reason', ARGV[5])
finalize(ARGV[2], tonumber(ARGV[7]), ARGV[3], ARGV[4])
return 'ok'
