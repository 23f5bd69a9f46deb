-- Take one of a resource's permits, if fewer than max holders hold one.
-- KEYS[1]  permit:{R}:holders  zset: holder id -> expiry (ms, Redis clock)
-- KEYS[2]  permit:{R}:tokens   hash: holder id -> fencing token
-- KEYS[3]  permit:{R}:fence    string: last fencing token handed out (never expires)
-- ARGV[1]  holder id (unique per acquisition)
-- ARGV[2]  permit TTL in milliseconds
-- ARGV[3]  max holders (1 = exclusive)
-- Returns  {1, fencing token} when granted (the same token again if this holder
--          already holds it: the TTL is renewed), else {0, ms until the first
--          current permit expires}.
-- Expiry uses the Redis clock (TIME) so hosts with skewed clocks agree.
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local ttl = tonumber(ARGV[2])

local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
    redis.call('HDEL', KEYS[2], unpack(expired))
end

local function keep_until_last_expiry()
    local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
    redis.call('PEXPIREAT', KEYS[1], last[2])
    redis.call('PEXPIREAT', KEYS[2], last[2])
end

local held = redis.call('HGET', KEYS[2], ARGV[1])
if held and redis.call('ZSCORE', KEYS[1], ARGV[1]) then
    redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
    keep_until_last_expiry()
    return {1, tonumber(held)}
end

if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
    local token = redis.call('INCR', KEYS[3])
    redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
    redis.call('HSET', KEYS[2], ARGV[1], token)
    keep_until_last_expiry()
    return {1, token}
end

local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(first[2]) - now}
