-- One bounded batch of the absence watchdog: each device whose deadline has passed
-- becomes absent with exactly one device.absent, unless a maintenance window of its
-- group is open (then its deadline moves to the window's end plus its timeout).
-- Fenced: only the holder of the watchdog lease sweeps.
-- KEYS[1]  the deadlines sorted set     KEYS[2]  the watchdog lease
-- KEYS[3]  the device events stream
-- ARGV[1]  now, ms since the epoch      ARGV[2]  batch size
-- ARGV[3]  lease token                  ARGV[4]  now, ISO 8601
-- ARGV[5]  stream MAXLEN (approximate)  ARGV[6]  device hash key prefix (...:device:)
-- ARGV[7]  maintenance hash key prefix (...:maintenance:, + group: window id -> JSON)
-- Returns  {absent, suppressed, examined, next deadline ms or -1, delay ms of each absent...}
--          or {-1} when the lease is not ours.
if redis.call('GET', KEYS[2]) ~= ARGV[3] then
    return {-1}
end
local now = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES',
                       'LIMIT', 0, tonumber(ARGV[2]))
local windows = {}

local function open_window(group)
    if windows[group] == nil then
        windows[group] = false
        for _, raw in ipairs(redis.call('HVALS', ARGV[7] .. group)) do
            local ok, w = pcall(cjson.decode, raw)
            if ok and type(w) == 'table' and tonumber(w.startMs) and tonumber(w.endMs)
                    and tonumber(w.startMs) <= now and now < tonumber(w.endMs) then
                if not windows[group] or tonumber(w.endMs) > windows[group].endMs then
                    windows[group] = {id = w.id, endMs = tonumber(w.endMs)}
                end
            end
        end
    end
    return windows[group]
end

local absent, suppressed, delays = 0, 0, {}
for i = 1, #due, 2 do
    local id, deadline = due[i], tonumber(due[i + 1])
    local h = ARGV[6] .. id
    local d = redis.call('HMGET', h, 'group', 'status', 'lastSeenMs', 'lastSeen', 'tags',
                         'context', 'absences', 'timeoutMs', 'rule')
    local window = d[1] and open_window(d[1])
    if not d[1] or d[2] == 'absent' then
        redis.call('ZREM', KEYS[1], id)
    elseif window then
        redis.call('ZADD', KEYS[1], window.endMs + tonumber(d[8] or '0'), id)
        redis.call('HSET', h, 'suppressedBy', tostring(window.id))
        suppressed = suppressed + 1
    else
        local n = tonumber(d[7] or '0') + 1
        redis.call('HSET', h, 'status', 'absent', 'absentSinceMs', ARGV[1], 'absences', n)
        redis.call('HDEL', h, 'suppressedBy')
        redis.call('ZREM', KEYS[1], id)
        local okt, tags = pcall(cjson.decode, d[5] or '[]')
        local okc, context = pcall(cjson.decode, d[6] or '{}')
        local event = cjson.encode({
            event_id = id .. ':absent:' .. n,
            type = 'device.absent', source = 'device-watchdog', timestamp = ARGV[4],
            payload = {deviceId = id, group = d[1], absence = n,
                       lastSeen = d[4] or '', lastSeenMs = tonumber(d[3] or '0'),
                       deadlineMs = deadline, detectedAtMs = now,
                       timeoutMs = tonumber(d[8] or '0'), rule = d[9] or '',
                       tags = (okt and type(tags) == 'table' and #tags > 0) and tags or nil,
                       context = okc and context or {}}})
        redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*',
                   'schema', 'base-event/1', 'event', event)
        absent = absent + 1
        delays[#delays + 1] = now - deadline
    end
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local result = {absent, suppressed, #due / 2, tonumber(nxt[2] or '-1')}
for _, delay in ipairs(delays) do
    result[#result + 1] = delay
end
return result
