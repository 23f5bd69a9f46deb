-- Emit a rule's event and record the step as completed, atomically: a
-- redelivered entry either sees the step done (and skips it) or finds no event
-- emitted (and emits it once).
--
-- KEYS[1]  target stream           e.g. alerts
-- KEYS[2]  completed steps hash    fleet:steps:{stream}:{entry_id}
-- ARGV[1]  stream MAXLEN (approximate trimming)
-- ARGV[2]  step field              {rule}:{step}
-- ARGV[3]  record TTL in seconds
-- ARGV[4]  contract name           e.g. base-event/1
-- ARGV[5]  event JSON
--
-- Returns  the step's recorded result, JSON {"entry_id": id of the emitted entry};
--          if the step had completed already, nothing is emitted again.
local done = redis.call('HGET', KEYS[2], ARGV[2])
if done then
    return done
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
    'schema', ARGV[4], 'event', ARGV[5])
redis.call('HSET', KEYS[2], ARGV[2], cjson.encode({entry_id = id}))
redis.call('EXPIRE', KEYS[2], ARGV[3])
return cjson.encode({entry_id = id})
