-- Claim the irrigation closes that are due, for one sweeper. A claimed close is not
-- removed: its score moves to now + the lease, so if the claimer dies before it has
-- closed the valve, the close is due again when the lease ends and another sweeper
-- claims it. Two sweepers never claim the same due close at once.
--
-- KEYS[1]  the due closes (zset: zone id -> due time in ms)   plant:{irrigation}:closes
-- ARGV[1]  lease in ms
-- ARGV[2]  most closes claimed in one call
--
-- Returns  {zone, due ms, lease ms, zone, due ms, lease ms, ...}: the lease ms is the
--          score to give close_done once the valve is closed
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0,
                       tonumber(ARGV[2]))
local claimed = {}
local lease = now + tonumber(ARGV[1])
for i = 1, #due, 2 do
    redis.call('ZADD', KEYS[1], 'XX', lease, due[i])
    table.insert(claimed, due[i])
    table.insert(claimed, due[i + 1])
    table.insert(claimed, tostring(lease))
end
return claimed
