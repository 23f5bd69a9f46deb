-- Append one record to the audit chain if the chain's head is still the one the
-- record links to (compare-and-append): concurrent writers form ONE chain.
-- The record's SHA-256 is computed by the caller (Redis Lua has no SHA-256).
-- KEYS[1]  audit:chain       stream: fields body, hash[, sig]
-- KEYS[2]  audit:chain:head  hash: hash, seq, id of the newest record
-- ARGV[1]  hash of the head the record links to (its "prev")
-- ARGV[2]  seq of the new record (head seq + 1)
-- ARGV[3]  canonical JSON body (holds seq and prev)
-- ARGV[4]  SHA-256 (hex) of the body
-- ARGV[5]  signature of the body, or '' when unsigned
-- ARGV[6]  genesis hash (the "prev" of the first record)
-- Returns  {1, entry id} when appended; {0, head hash, head seq} when the head moved.
local head = redis.call('HMGET', KEYS[2], 'hash', 'seq')
local head_hash = head[1] or ARGV[6]
local head_seq = head[2] or '0'
if head_hash ~= ARGV[1] or tonumber(head_seq) + 1 ~= tonumber(ARGV[2]) then
    return {0, head_hash, head_seq}
end
local id
if ARGV[5] ~= '' then
    id = redis.call('XADD', KEYS[1], '*', 'body', ARGV[3], 'hash', ARGV[4], 'sig', ARGV[5])
else
    id = redis.call('XADD', KEYS[1], '*', 'body', ARGV[3], 'hash', ARGV[4])
end
redis.call('HSET', KEYS[2], 'hash', ARGV[4], 'seq', ARGV[2], 'id', id)
return {1, id}
