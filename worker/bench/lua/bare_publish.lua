-- The bare-script baseline of `bench publish`: per item, the same XADD and HSET as
-- the fenced commit (framework/polling/lua/commit.lua), without the framework: no
-- lease check, no generation check, no state fields.
--
-- KEYS[1]  output stream
-- KEYS[2]  item versions hash
-- ARGV[1]  stream MAXLEN (approximate trimming)
-- ARGV[2]  connector name          ARGV[3]  connector type
-- then     the items, as (item_id, version, payload) triples to the end
--
-- Returns  the number of items published (integer).
local i = 4
local published = 0
while i + 2 <= #ARGV do
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
        'connector', ARGV[2], 'type', ARGV[3],
        'item_id', ARGV[i], 'version', ARGV[i + 1], 'payload', ARGV[i + 2])
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
    published = published + 1
    i = i + 3
end
return published
