-- Replay one dead letter: re-add its original fields to its original stream and
-- delete it, atomically (a crash neither loses nor doubles it).
--
-- KEYS[1]  dead-letter stream      KEYS[2]  original stream (as the caller read it)
-- ARGV[1]  dead letter id          ARGV[2]  original stream MAXLEN (approximate)
-- ARGV[3]  the name of the field that carries the original entry id
--
-- The dead letter's field "stream" names the original stream, "entry_id" the
-- original entry and "fields" holds its fields as a flat JSON array [field, value,
-- ...]. The replayed entry gets the field ARGV[3] = the original entry id (kept
-- across replays of replays), so its steps keep their idempotency keys.
-- Returns  the new entry's id in the original stream, or false when the dead
--          letter no longer exists (replayed or purged meanwhile).
-- Errors   "WRONG_STREAM <stream>" when the dead letter belongs to another stream.
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then
    return false
end
local letter = found[1][2]
local original, entry_id, fields
for i = 1, #letter, 2 do
    if letter[i] == 'stream' then
        original = letter[i + 1]
    elseif letter[i] == 'entry_id' then
        entry_id = letter[i + 1]
    elseif letter[i] == 'fields' then
        fields = letter[i + 1]
    end
end
if original ~= KEYS[2] then
    return redis.error_reply('WRONG_STREAM ' .. tostring(original))
end
local flat = cjson.decode(fields)
local replayed = false
for i = 1, #flat, 2 do
    replayed = replayed or flat[i] == ARGV[3]
end
if not replayed and entry_id then
    table.insert(flat, ARGV[3])
    table.insert(flat, entry_id)
end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(flat))
redis.call('XDEL', KEYS[1], ARGV[1])
return id
