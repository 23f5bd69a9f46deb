-- Read the completed steps of many entries in one round trip.
--
-- KEYS[1..n]  completed steps hashes  fleet:steps:{stream}:{origin_id}
--
-- Returns  per key, in order: its fields and values, flat (HGETALL), empty if none.
local found = {}
for i = 1, #KEYS do
    found[i] = redis.call('HGETALL', KEYS[i])
end
return found
