-- ARGV: attempt, status, error type, error message, finish reasons (JSON), done, retention,
-- then (chunk, event data, base, new length) per output. Returns ok | gone | rebase.
if not held_by(KEYS, ARGV[1]) then return 'gone' end
local outputs = #KEYS - OUT_FIRST + 1
if not bases_match(KEYS[1], outputs, ARGV, 8) then return 'rebase' end
append_chunks(KEYS[1], KEYS[2], OUT_FIRST, outputs, ARGV, 8)
redis.call('HSET', KEYS[1], 'done', ARGV[6], 'finish_reason', ARGV[5])
finalize(KEYS, ARGV[2], tonumber(ARGV[7]), ARGV[3], ARGV[4])
return 'ok'
