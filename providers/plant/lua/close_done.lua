-- Remove a close that was done, only if it is still the one claimed: an open of the
-- zone since then moved its score to a new due time, and that close must stay.
--
-- KEYS[1]  the due closes (zset: zone id -> due time in ms)   plant:{irrigation}:closes
-- ARGV[1]  zone id
-- ARGV[2]  the score the claim gave it (lease ms)
--
-- Returns  1 if removed, 0 if the zone was scheduled again meanwhile
local current = redis.call('ZSCORE', KEYS[1], ARGV[1])
if current and tonumber(current) == tonumber(ARGV[2]) then
    redis.call('ZREM', KEYS[1], ARGV[1])
    return 1
end
return 0
