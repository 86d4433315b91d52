-- A token bucket of submissions. KEYS[1]: its hash. ARGV: rate per second, burst.
-- Returns 0 when a submission may go ahead (a token taken), else the seconds until one may.
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = now()
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1] or burst)
tokens = math.min(burst, tokens + (t - tonumber(state[2] or t)) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', fmt(t))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
