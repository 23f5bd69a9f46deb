-- Record completed steps of many entries in one round trip, each hash with its TTL.
--
-- KEYS[1..n]  completed steps hashes    fleet:steps:{stream}:{origin_id} (repeats allowed)
-- ARGV[1]     record TTL in seconds
-- ARGV[2i], ARGV[2i+1]  the step field ({rule}:{step}) and its result JSON for KEYS[i]
--
-- Returns  the number of records written.
for i = 1, #KEYS do
    redis.call('HSET', KEYS[i], ARGV[2 * i], ARGV[2 * i + 1])
    redis.call('EXPIRE', KEYS[i], ARGV[1])
end
return #KEYS
