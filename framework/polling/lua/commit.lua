-- Publish one chunk of a poll and record what it published, atomically, and only
-- for the holder of the lease (fencing), only on top of the state it read, and
-- only right after the chunk before it in the same poll (chunks are pipelined).
--
-- KEYS[1]  lease key              lease:{name}
-- KEYS[2]  state hash             connector:state:{name}
-- KEYS[3]  item versions hash     connector:state:{name}:versions
-- KEYS[4]  output stream          e.g. raw-input-signals
-- ARGV[1]  lease token the caller believes it holds
-- ARGV[2]  generation the caller expects ("" when there was no state yet)
-- ARGV[3]  stream MAXLEN (approximate trimming)
-- ARGV[4]  connector name          ARGV[5]  connector type
-- ARGV[6]  this chunk's id, saved in the state hash's "chunk" field
-- ARGV[7]  the id of the chunk that must have been applied just before this one
--          ("" for a poll's first chunk: the generation check alone applies)
-- ARGV[8]  M, the number of state fields to set, followed by M field/value pairs
-- then     R, the number of item ids to forget, followed by R ids
-- then     the changed items, as (item_id, version, payload) triples to the end
--
-- Returns  the new generation (integer).
-- Errors   "LEASE_LOST <holder>" when the token does not hold the lease;
--          "STATE_CONFLICT <generation>" when the state moved since it was read,
--          or the chunk before this one was not applied.
local holder = redis.call('GET', KEYS[1])
if holder ~= ARGV[1] then
    return redis.error_reply('LEASE_LOST ' .. (holder or '(none)'))
end
local generation = redis.call('HGET', KEYS[2], 'generation') or ''
if generation ~= ARGV[2] then
    return redis.error_reply('STATE_CONFLICT ' .. (generation == '' and '(none)' or generation))
end
if ARGV[7] ~= '' and redis.call('HGET', KEYS[2], 'chunk') ~= ARGV[7] then
    return redis.error_reply('STATE_CONFLICT ' .. generation .. ' (the previous chunk was refused)')
end
redis.call('HSET', KEYS[2], 'chunk', ARGV[6])

local i = 8
local state_fields = tonumber(ARGV[i])
for j = 1, state_fields do
    redis.call('HSET', KEYS[2], ARGV[i + 2 * j - 1], ARGV[i + 2 * j])
end
i = i + 2 * state_fields + 1

local removed = tonumber(ARGV[i])
for j = 1, removed do
    redis.call('HDEL', KEYS[3], ARGV[i + j])
end
i = i + removed + 1

local maxlen = ARGV[3]
while i + 2 <= #ARGV do
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', maxlen, '*',
        'connector', ARGV[4], 'type', ARGV[5],
        'item_id', ARGV[i], 'version', ARGV[i + 1], 'payload', ARGV[i + 2])
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
    i = i + 3
end
return redis.call('HINCRBY', KEYS[2], 'generation', 1)
