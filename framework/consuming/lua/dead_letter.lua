-- Dead-letter one stream entry: acknowledge it and write the dead letter, atomically,
-- so a crash never loses a dead letter and two consumers never write it twice.
--
-- KEYS[1]  source stream           KEYS[2]  dead-letter stream
-- KEYS[3]  last-errors hash of the group and stream (fleet:consumer-errors:{group}:{stream})
-- ARGV[1]  consumer group          ARGV[2]  entry id
-- ARGV[3]  dead-letter stream MAXLEN (approximate trimming)
-- ARGV[4..] the dead letter's field/value pairs
--
-- Returns  the dead letter's id, or false when the entry was no longer pending
--          (another consumer acknowledged or dead-lettered it first).
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
    return false
end
redis.call('HDEL', KEYS[3], ARGV[2])
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
