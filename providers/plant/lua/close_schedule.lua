-- Schedule the close of an irrigation zone, before its valve is opened, so that a
-- crash at any later point still closes it. Idempotent per rule step: a redelivered
-- step finds its marker and gets the due time it scheduled, and schedules nothing.
-- The latest open of a zone decides when it closes. Times are Redis TIME, so every
-- consumer agrees on them whatever its own clock says.
--
-- KEYS[1]  the due closes (zset: zone id -> due time in ms)   plant:{irrigation}:closes
-- KEYS[2]  the step's marker (string: due ms)                 plant:{irrigation}:step:<key>
-- ARGV[1]  zone id
-- ARGV[2]  duration in ms
-- ARGV[3]  how long the marker is kept, in ms
--
-- Returns  {fresh (1 = scheduled now, 0 = already by this step), due ms, now ms,
--           due ms still in the schedule for this zone (or -1)}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local marked = redis.call('GET', KEYS[2])
if marked then
    local current = redis.call('ZSCORE', KEYS[1], ARGV[1])
    return {0, tonumber(marked), now, current and tonumber(current) or -1}
end
local due = now + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], due, ARGV[1])
redis.call('SET', KEYS[2], due, 'PX', ARGV[3])
return {1, due, now, due}
