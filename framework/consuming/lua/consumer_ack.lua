-- Acknowledge a batch of entries of one stream, with what their handlers left to record,
-- telling which ones were still pending, and forget the errors recorded for them: one
-- round trip for many finished entries. The records are written whatever the XACK finds:
-- the work they record is done, even if another consumer settled the entry. Their final
-- lifetime (settle TTL) applies only to the entries this script acknowledged: an entry
-- settled elsewhere may have been dead-lettered, its records waiting for a replay.
--
-- KEYS[1]  stream                  KEYS[2]  last-errors hash (fleet:consumer-errors:{group}:{stream})
-- KEYS[3..] hashes to write (e.g. fleet:steps:{stream}:{identity}; repeats allowed)
-- ARGV[1]  consumer group          ARGV[2]  n, the number of entry ids
-- ARGV[3..2+n]  entry ids
-- ARGV[3+n..]   per hash KEYS[2+i], five arguments each: field ('' writes nothing), value,
--               TTL in seconds, settle TTL in seconds ('' keeps it, <= 0 deletes the hash
--               once the entry is acknowledged), the position (1..n) of its entry id
--
-- Returns  per entry id, in order: 1 if acknowledged now, 0 if it was no longer pending
--          (another consumer settled it).
local n = tonumber(ARGV[2])
local acked = {}
for i = 1, n do
    acked[i] = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2 + i])
end
for i = 3, #KEYS do
    local at = 3 + n + 5 * (i - 3)
    local settle = ARGV[at + 3]
    local settled_here = settle ~= '' and acked[tonumber(ARGV[at + 4])] == 1
    if settled_here and tonumber(settle) <= 0 then
        -- The records end with the entry: what this one would add is deleted with them.
        redis.call('DEL', KEYS[i])
    else
        if ARGV[at] ~= '' then
            redis.call('HSET', KEYS[i], ARGV[at], ARGV[at + 1])
            redis.call('EXPIRE', KEYS[i], ARGV[at + 2])
        end
        if settled_here then
            redis.call('EXPIRE', KEYS[i], settle)
        end
    end
end
redis.call('HDEL', KEYS[2], unpack(ARGV, 3, 2 + n))
return acked
