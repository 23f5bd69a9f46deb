-- Count one request of a client in the current fixed window and say whether it may
-- pass. Every replica of a webhook counts in the same key, so the limit holds for
-- the Service as a whole.
--
-- KEYS[1]  the client's counter     connector:state:{name}:rate:{client}
-- ARGV[1]  requests allowed per window
-- ARGV[2]  window length in ms
--
-- Returns  0 when the request may pass, else the ms until the window ends (>= 1).
local count = redis.call('INCR', KEYS[1])
if count == 1 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if count <= tonumber(ARGV[1]) then
    return 0
end
local left = redis.call('PTTL', KEYS[1])
if left < 1 then
    -- A counter without expiry cannot come from this script; never block forever.
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    left = tonumber(ARGV[2])
end
return left
