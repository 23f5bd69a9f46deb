-- Remove the oldest records of the audit chain, up to and including one record, and
-- leave a checkpoint (that record's seq and hash) so verification starts after it.
-- The head is not touched, so compare-and-append (audit_append.lua) keeps working
-- while a trim runs; the caller checked the links of what it removes beforehand.
-- KEYS[1]  audit:chain             stream: fields body, hash[, sig]
-- KEYS[2]  audit:chain:checkpoint  hash: body (canonical JSON), sig (optional)
-- ARGV[1]  the checkpoint body the caller read, or '' when there was none
-- ARGV[2]  entry id of the last record to remove
-- ARGV[3]  the hash that record is stored with (as the caller read it)
-- ARGV[4]  the new checkpoint body (canonical JSON: kind, seq, hash, id, at)
-- ARGV[5]  signature of the new body, or '' when unsigned
-- Returns  {1, number of entries removed}; {0, reason} when the checkpoint or that
--          record changed since the caller read them (then nothing is changed).
local current = redis.call('HGET', KEYS[2], 'body') or ''
if current ~= ARGV[1] then
    return {0, 'the checkpoint changed meanwhile (another trim ran)'}
end
local last = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if #last == 0 then
    return {0, 'entry ' .. ARGV[2] .. ' is gone'}
end
local fields = last[1][2]
local stored = false
for i = 1, #fields, 2 do
    if fields[i] == 'hash' then
        stored = fields[i + 1]
    end
end
if stored ~= ARGV[3] then
    return {0, 'entry ' .. ARGV[2] .. ' changed meanwhile'}
end
redis.call('HSET', KEYS[2], 'body', ARGV[4])
if ARGV[5] ~= '' then
    redis.call('HSET', KEYS[2], 'sig', ARGV[5])
else
    redis.call('HDEL', KEYS[2], 'sig')
end
-- MINID keeps the entry it names, so that one goes with XDEL.
local removed = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[2])
removed = removed + redis.call('XDEL', KEYS[1], ARGV[2])
return {1, removed}
