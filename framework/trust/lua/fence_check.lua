-- Accept a fencing token at a target unless the target already accepted a newer one.
-- KEYS[1]  fence:seen:{T}  string: highest token target T accepted
-- ARGV[1]  the caller's fencing token
-- Returns  {1, token} when accepted (it becomes the newest), {0, newest} when stale.
-- An equal token is accepted: one holder may write to its target several times.
local token = tonumber(ARGV[1])
local seen = tonumber(redis.call('GET', KEYS[1]) or '0')
if token < seen then
    return {0, seen}
end
redis.call('SET', KEYS[1], token)
return {1, token}
