-- Extend a permit's expiry, only if the holder still holds it (not expired).
-- KEYS[1]  permit:{R}:holders  zset: holder id -> expiry (ms, Redis clock)
-- KEYS[2]  permit:{R}:tokens   hash: holder id -> fencing token
-- ARGV[1]  holder id
-- ARGV[2]  permit TTL in milliseconds
-- Returns  1 if renewed, 0 if the permit is gone (expired or released).
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not expiry or tonumber(expiry) <= now then
    redis.call('ZREM', KEYS[1], ARGV[1])
    redis.call('HDEL', KEYS[2], ARGV[1])
    return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
redis.call('PEXPIREAT', KEYS[2], last[2])
return 1
