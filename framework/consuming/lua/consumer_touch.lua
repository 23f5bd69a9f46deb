-- Re-claim the entries a consumer is still working on, only if it still owns them
-- (a compare-and-touch: the heartbeat that keeps XAUTOCLAIM away from running work).
--
-- KEYS[1]  stream
-- ARGV[1]  consumer group          ARGV[2]  consumer name
-- ARGV[3]  idle time to set, in ms: 0 keeps the entries ours (heartbeat); the
--          visibility timeout hands them over at once (release on shutdown)
-- ARGV[4..] entry ids
--
-- Returns  the ids this consumer no longer owns (acknowledged, or claimed by another).
-- XCLAIM ... JUSTID leaves the delivery count alone.
local owned = {}
local lost = {}
for i = 4, #ARGV do
    local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
    if #pending == 1 and pending[1][2] == ARGV[2] then
        owned[#owned + 1] = ARGV[i]
    else
        lost[#lost + 1] = ARGV[i]
    end
end
-- In chunks: unpack() of a long table would overflow the Lua stack.
for first = 1, #owned, 500 do
    local args = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}
    for j = first, math.min(first + 499, #owned) do
        args[#args + 1] = owned[j]
    end
    args[#args + 1] = 'IDLE'
    args[#args + 1] = ARGV[3]
    args[#args + 1] = 'JUSTID'
    redis.call(unpack(args))
end
return lost
