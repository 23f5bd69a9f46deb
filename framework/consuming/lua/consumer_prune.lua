-- Delete a consumer from its group only if it holds no pending entry and was idle at
-- least ARGV[3] ms (the caller checked its heartbeat key just before: a key of another
-- Cluster slot). XGROUP DELCONSUMER drops the consumer's pending entries, so the check
-- and the delete must be one atomic step.
--
-- KEYS[1]  stream
-- ARGV[1]  consumer group          ARGV[2]  consumer name
-- ARGV[3]  minimum idle time in ms
--
-- Returns  1 if deleted; 0 if kept (alive, pending entries, recently active, unknown).
for _, info in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
    local fields = {}
    for i = 1, #info, 2 do
        fields[info[i]] = info[i + 1]
    end
    if fields['name'] == ARGV[2] then
        if tonumber(fields['pending']) == 0 and tonumber(fields['idle']) >= tonumber(ARGV[3]) then
            redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
            return 1
        end
        return 0
    end
end
return 0
