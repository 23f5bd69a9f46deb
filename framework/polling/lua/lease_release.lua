-- Release a lease only if this owner still holds it (compare-and-delete).
-- KEYS[1]  lease key (lease:{name})
-- ARGV[1]  owner token
-- Returns  1 if deleted, 0 if the lease is gone or held by another owner.
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
