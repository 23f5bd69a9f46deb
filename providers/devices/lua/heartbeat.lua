-- Record heartbeats of devices: last-seen, status online, the deadline; a device that
-- was absent and is seen again gets exactly one device.returned (in the same script).
-- Device hashes and group sets are named from the prefixes (same {devices} hash tag).
-- KEYS[1]  the deadlines sorted set     (member ID, score = deadline in ms)
-- KEYS[2]  the group timeouts hash      (group -> absence timeout in ms)
-- KEYS[3]  the device events stream
-- KEYS[4]  the device index sorted set  (every ID, score 0: lexical paging)
-- ARGV[1]  now, ms since the epoch      ARGV[2]  now, ISO 8601
-- ARGV[3]  stream MAXLEN (approximate)
-- ARGV[4]  device hash key prefix (...:device:)   ARGV[5]  group set key prefix (...:group:)
-- ARGV[6..] per heartbeat, 7 values: id, seen at ms (<= now), seen at ISO, timeout ms
--          when the group has none, group of a device not yet registered,
--          context (JSON object), rule (the absence trigger, may be empty)
-- Returns  per heartbeat {outcome, deadline ms or -1}: new | online | returned | late | stale
local now = tonumber(ARGV[1])
local timeouts = {}

local function group_timeout(group, default)
    if timeouts[group] == nil then
        timeouts[group] = tonumber(redis.call('HGET', KEYS[2], group) or '-1')
    end
    if timeouts[group] > 0 then
        return timeouts[group]
    end
    return tonumber(default)
end

local function returned(id, h, group, state, seen, a)
    local since = tonumber(state[4] or ARGV[1])
    redis.call('HSET', h, 'status', 'online')
    redis.call('HDEL', h, 'absentSinceMs')
    local ok, context = pcall(cjson.decode, ARGV[a + 5])
    local event = cjson.encode({
        event_id = id .. ':returned:' .. (state[5] or '0'),
        type = 'device.returned', source = 'device-registry', timestamp = ARGV[2],
        payload = {deviceId = id, group = group, absence = tonumber(state[5] or '0'),
                   lastSeen = ARGV[a + 2], lastSeenMs = seen, absentSinceMs = since,
                   downtimeMs = seen - since, rule = ARGV[a + 6],
                   context = ok and context or {}}})
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*',
               'schema', 'base-event/1', 'event', event)
end

local function beat(a)
    local id, seen = ARGV[a], tonumber(ARGV[a + 1])
    local h = ARGV[4] .. id
    local state = redis.call('HMGET', h, 'group', 'status', 'lastSeenMs', 'absentSinceMs',
                             'absences')
    local group, status = state[1], state[2]
    if not group then
        group = ARGV[a + 4]
        redis.call('HSET', h, 'id', id, 'group', group, 'tags', '[]', 'createdMs', ARGV[1])
        redis.call('ZADD', KEYS[4], 0, id)
        redis.call('SADD', ARGV[5] .. group, id)
    end
    if seen <= tonumber(state[3] or '-1') then
        return {'stale', -1}
    end
    local timeout = group_timeout(group, ARGV[a + 3])
    local deadline = seen + timeout
    redis.call('HSET', h, 'lastSeenMs', ARGV[a + 1], 'lastSeen', ARGV[a + 2],
               'context', ARGV[a + 5], 'timeoutMs', timeout)
    if ARGV[a + 6] ~= '' then
        redis.call('HSET', h, 'rule', ARGV[a + 6])
    end
    if status == 'absent' then
        if deadline <= now then
            -- An event from before the absence, delivered late: not a return.
            return {'late', deadline}
        end
        returned(id, h, group, state, seen, a)
        redis.call('ZADD', KEYS[1], deadline, id)
        return {'returned', deadline}
    end
    redis.call('HSET', h, 'status', 'online')
    redis.call('ZADD', KEYS[1], deadline, id)
    if status then
        return {'online', deadline}
    end
    return {'new', deadline}
end

local results = {}
for a = 6, #ARGV, 7 do
    results[#results + 1] = beat(a)
end
return results
