"""The Lua scripts the Redis backplane runs (docs/cluster.md has the key layout).

Each does one step atomically in Redis, so servers sharing it never see
half of one.
"""
from __future__ import annotations

# KEYS[1] the name; ARGV[1] "<server> <client id>", ARGV[2] the TTL. 1 if ours now.
CLAIM_SCRIPT = """
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""
# KEYS: names and client keys; ARGV[i]: what each should hold. Deletes those still ours.
RELEASE_SCRIPT = """
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i] then redis.call('DEL', key) end
end
return 1
"""
# KEYS: names and client keys; ARGV[1] the TTL, ARGV[i + 1] what each holds.
# Renews those still ours (or free again); returns the names lost to others.
REFRESH_SCRIPT = """
local lost = {}
for i, key in ipairs(KEYS) do
  local held = redis.call('GET', key)
  if held and held ~= ARGV[i + 1] then
    table.insert(lost, key)
  else
    redis.call('SET', key, ARGV[i + 1], 'EX', ARGV[1])
  end
end
return lost
"""
# KEYS[1] the recipient's name or client key; ARGV: sender, payload, TTL.
# Numbers the message in the recipient's inbox and sends it to its server.
DIRECT_SCRIPT = """
local held = redis.call('GET', KEYS[1])
if not held then return 0 end
local server, client = string.match(held, '^(%S+) (%S+)$')
local inbox = 'txpubsub:inbox:' .. client
local id = redis.call('INCR', inbox)
redis.call('EXPIRE', inbox, 86400)
local now = redis.call('TIME')
local at = now[1] .. '.' .. string.format('%06d', tonumber(now[2]))
redis.call('PUBLISH', 'txpubsub:srv:' .. server,
           client .. ' ' .. id .. ' ' .. at .. ' ' .. ARGV[1] .. ' ' .. ARGV[2])
return id
"""

# KEYS[1] the servers' sorted set, KEYS[2] this server's client list;
# ARGV[1] this server, ARGV[2] the TTL, then client id, "name connected_at" pairs.
# The heartbeat: this server is alive, and these are its clients.
SERVER_SCRIPT = """
local now = redis.call('TIME')
redis.call('ZADD', KEYS[1], now[1], ARGV[1])
redis.call('DEL', KEYS[2])
if #ARGV > 2 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 3))
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
return 1
"""
# KEYS[1] the servers' sorted set; ARGV[1] the TTL. Every live server's clients,
# as client id, "name connected_at" pairs.
WHO_SCRIPT = """
local now = redis.call('TIME')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now[1] - ARGV[1]))
local found = {}
for _, server in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  for _, item in ipairs(redis.call('HGETALL', 'txpubsub:who:' .. server)) do
    table.insert(found, item)
  end
end
return found
"""

PUBLISH_SCRIPT = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
end
local id = redis.call('INCR', KEYS[2])
local now = redis.call('TIME')
local at = now[1] .. '.' .. string.format('%06d', tonumber(now[2]))
local keep = tonumber(ARGV[2])
if keep > 0 then
  redis.call('XADD', KEYS[3], 'MAXLEN', keep, id, 's', ARGV[3], 't', at, 'p', ARGV[4])
else
  redis.call('DEL', KEYS[3])
end
redis.call('PUBLISH', ARGV[5], id .. ' ' .. at .. ' ' .. ARGV[3] .. ' ' .. ARGV[4])
return {id, epoch}
"""
