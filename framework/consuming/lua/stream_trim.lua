-- Trim a stream to what some consumer group may still need, plus a length cap, atomically:
-- no group can be created, read or acknowledge between the look and the trim.
--
-- The safe MINID is the minimum over the stream's groups of the oldest entry the group
-- holds pending (XPENDING) or, with nothing pending, its last-delivered-id + 1: every
-- older entry has been acknowledged by every group. A stream without a group is not
-- trimmed by MINID (nobody said which entries are done with).
--
-- KEYS[1]  stream
-- ARGV[1]  length cap (MAXLEN, exact); 0: no cap
--
-- Returns  {entries trimmed as acknowledged, entries trimmed by the cap, the MINID used
--          or '' when the stream has no group}
local function parse(id)
    local ms, seq = string.match(id, '^(%d+)-(%d+)$')
    return tonumber(ms), tonumber(seq)
end

local function older(a, b)
    local a_ms, a_seq = parse(a)
    local b_ms, b_seq = parse(b)
    return a_ms < b_ms or (a_ms == b_ms and a_seq < b_seq)
end

local min_id = nil
for _, info in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local fields = {}
    for i = 1, #info, 2 do
        fields[info[i]] = info[i + 1]
    end
    local needed
    if tonumber(fields['pending']) > 0 then
        needed = redis.call('XPENDING', KEYS[1], fields['name'])[2]
    else
        local ms, seq = parse(fields['last-delivered-id'])
        needed = string.format('%d-%d', ms, seq + 1)
    end
    if min_id == nil or older(needed, min_id) then
        min_id = needed
    end
end
local acknowledged = 0
if min_id ~= nil then
    acknowledged = redis.call('XTRIM', KEYS[1], 'MINID', min_id)
end
local capped = 0
if tonumber(ARGV[1]) > 0 then
    capped = redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[1])
end
return {acknowledged, capped, min_id or ''}
