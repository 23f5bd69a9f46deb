-- Append one batch of a push source's messages and save the source positions that
-- follow it, atomically, only for the holder of the lease (fencing), and drop the
-- messages whose dedupe key was already appended within the dedupe window.
--
-- KEYS[1]  lease key              lease:{name}
-- KEYS[2]  state hash             connector:state:{name}
-- KEYS[3]  dedupe sorted set      connector:state:{name}:seen (key -> ms appended)
-- KEYS[4]  output stream          e.g. raw-input-signals
-- KEYS[5]  rejected stream        connector:state:{name}:rejected (messages that could
--          not be made an event, kept raw with the reason)
-- ARGV[1]  lease token the caller believes it holds
-- ARGV[2]  generation the caller expects, or "*" when batches do not depend on the
--          state (a receiver whose requests are independent)
-- ARGV[3]  stream MAXLEN (approximate trimming)
-- ARGV[4]  connector name          ARGV[5]  connector type
-- ARGV[6]  now, in ms              ARGV[7]  dedupe window in ms (0: keep no keys)
-- ARGV[8]  the most dedupe keys kept (the oldest go first past it)
-- ARGV[9]  M, the number of state fields to set, followed by M field/value pairs
-- ARGV[10+2M] R, the number of rejected messages, followed by R (item_id, error, raw)
-- then     the messages, as (item_id, dedupe_key or "", payload) triples to the end
--
-- Returns  {new generation, appended, duplicates}.
-- Errors   "LEASE_LOST <holder>" when the token does not hold the lease;
--          "STATE_CONFLICT <generation>" when the state moved since it was read.
local holder = redis.call('GET', KEYS[1])
if holder ~= ARGV[1] then
    return redis.error_reply('LEASE_LOST ' .. (holder or '(none)'))
end
local generation = redis.call('HGET', KEYS[2], 'generation') or ''
if ARGV[2] ~= '*' and generation ~= ARGV[2] then
    return redis.error_reply('STATE_CONFLICT ' .. (generation == '' and '(none)' or generation))
end

local now = tonumber(ARGV[6])
local window = tonumber(ARGV[7])
if window > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - window)
end

local i = 9
local state_fields = tonumber(ARGV[i])
for j = 1, state_fields do
    redis.call('HSET', KEYS[2], ARGV[i + 2 * j - 1], ARGV[i + 2 * j])
end
i = i + 2 * state_fields + 1

local rejected = tonumber(ARGV[i])
for j = 0, rejected - 1 do
    local at = i + 3 * j
    redis.call('XADD', KEYS[5], 'MAXLEN', '~', 10000, '*', 'connector', ARGV[4],
        'item_id', ARGV[at + 1], 'error', ARGV[at + 2], 'raw', ARGV[at + 3])
end
i = i + 3 * rejected + 1

local maxlen = ARGV[3]
local appended, duplicates = 0, 0
while i + 2 <= #ARGV do
    local key = ARGV[i + 1]
    if key ~= '' and window > 0 and redis.call('ZADD', KEYS[3], 'NX', now, key) == 0 then
        duplicates = duplicates + 1
    else
        redis.call('XADD', KEYS[4], 'MAXLEN', '~', maxlen, '*',
            'connector', ARGV[4], 'type', ARGV[5],
            'item_id', ARGV[i], 'version', '1', 'payload', ARGV[i + 2])
        appended = appended + 1
    end
    i = i + 3
end

local kept = tonumber(ARGV[8])
if window > 0 and redis.call('ZCARD', KEYS[3]) > kept then
    redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(kept + 1))
end
return {redis.call('HINCRBY', KEYS[2], 'generation', 1), appended, duplicates}
