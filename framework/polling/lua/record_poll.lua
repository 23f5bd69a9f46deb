-- Record one poll in the hash metrics:connector:{name} (last poll and success times,
-- poll counters, items fetched and published, latency).
-- KEYS[1]  metrics hash
-- ARGV[1]  connector name     ARGV[2]  poll time (ISO-8601)
-- ARGV[3]  "1" if the poll succeeded, "0" if it failed
-- ARGV[4]  items fetched      ARGV[5]  items published     ARGV[6]  latency in ms
-- ARGV[7]  items failed (optional, default 0)
-- ARGV[8]  "1" every item of this poll failed (degradedSince set, if not yet), "0" some
--          got through or none came (degradedSince removed), "" or absent: unknown
--          (a failed or not-modified poll: left as it is)
-- Returns  the total number of polls.
local key = KEYS[1]
redis.call('HSET', key, 'connectorName', ARGV[1], 'lastPollTime', ARGV[2])
if ARGV[3] == '1' then
    redis.call('HSET', key, 'lastSuccessTime', ARGV[2])
    redis.call('HINCRBY', key, 'successfulPolls', 1)
else
    redis.call('HINCRBY', key, 'failedPolls', 1)
end
redis.call('HINCRBY', key, 'itemsFetched', ARGV[4])
redis.call('HINCRBY', key, 'itemsPublished', ARGV[5])
local failed = tonumber(ARGV[7] or '0') or 0
redis.call('HINCRBY', key, 'itemsFailed', failed)
if ARGV[8] == '1' then
    redis.call('HSET', key, 'lastPollItemsFailed', failed)
    redis.call('HSETNX', key, 'degradedSince', ARGV[2])
elseif ARGV[8] == '0' then
    redis.call('HSET', key, 'lastPollItemsFailed', failed)
    redis.call('HDEL', key, 'degradedSince')
end
local total = redis.call('HINCRBY', key, 'totalPolls', 1)
local latency = redis.call('HINCRBYFLOAT', key, 'totalLatencyMs', ARGV[6])
redis.call('HSET', key, 'averageLatencyMs', math.floor(tonumber(latency) / total + 0.5))
return total
