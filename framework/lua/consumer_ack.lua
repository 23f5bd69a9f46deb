-- Acknowledge a batch of entries of one stream, telling which ones were still pending,
-- and forget the errors recorded for them: one round trip for many finished entries.
--
-- KEYS[1]  stream                  KEYS[2]  last-errors hash (fleet:consumer-errors:{group}:{stream})
-- ARGV[1]  consumer group          ARGV[2..] entry ids
--
-- Returns  per entry id, in order: 1 if acknowledged now, 0 if it was no longer pending
--          (another consumer settled it).
local acked = {}
for i = 2, #ARGV do
    acked[i - 1] = redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
end
redis.call('HDEL', KEYS[2], unpack(ARGV, 2))
return acked
