-- Give a permit back (compare-and-delete on the holder id).
-- KEYS[1]  permit:{R}:holders  zset: holder id -> expiry (ms, Redis clock)
-- KEYS[2]  permit:{R}:tokens   hash: holder id -> fencing token
-- ARGV[1]  holder id
-- Returns  1 if this holder held it, 0 if it had already expired or been released.
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return removed
