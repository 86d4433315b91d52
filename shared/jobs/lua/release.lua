-- ARGV: attempt. Put a running job back in the queue, this delivery uncounted (its worker is
-- shutting down). Returns ok | gone.
if not held_by(KEYS, ARGV[1]) then return 'gone' end
requeue(KEYS, tonumber(ARGV[1]) - 1, 'released')
return 'ok'
