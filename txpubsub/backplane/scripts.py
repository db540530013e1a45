"""The Lua scripts the Redis backplane runs (docs/cluster.md has the key layout).

Each does one step atomically in Redis, so servers sharing it never see
half of one.
"""
from __future__ import annotations

# KEYS[1] the epoch; ARGV[1] this server's candidate. Redis's epoch, set to the
# candidate (and told to every server, as by the publish script) if it had none.
EPOCH_SCRIPT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('PUBLISH', 'txpubsub:srv:all', 'epoch ' .. ARGV[1])
end
return redis.call('GET', KEYS[1])
"""
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
# KEYS[1] the recipient's name or client key; ARGV: sender, payload, TTL, the
# sender's client id ("" for the server's own voice). Numbers the message in
# the recipient's inbox and sends it to its server; 0: no such client, or its
# server no longer listens; -1 or -2: the recipient's DIRECT takes nobody's,
# or only others' (its txpubsub:direct:<id> key: "-", or the names and ids it
# takes, spaced).
DIRECT_SCRIPT = """
local held = redis.call('GET', KEYS[1])
if not held then return 0 end
local server, client = string.match(held, '^(%S+) (%S+)')
local policy = redis.call('GET', 'txpubsub:direct:' .. client)
if policy and ARGV[4] ~= '' then
  if policy == '-' then return -1 end
  local taken = false
  for who in string.gmatch(policy, '%S+') do
    if who == ARGV[1] or who == ARGV[4] then taken = true end
  end
  if not taken then return -2 end
end
local inbox = 'txpubsub:inbox:' .. client
local id = redis.call('INCR', inbox)
redis.call('EXPIRE', inbox, 86400)
local now = redis.call('TIME')
local at = now[1] .. '.' .. string.format('%06d', tonumber(now[2]))
if redis.call('PUBLISH', 'txpubsub:srv:' .. server,
              client .. ' ' .. id .. ' ' .. at .. ' ' .. ARGV[1] .. ' ' .. ARGV[2]) == 0 then
  -- its server is gone (killed, its keys not expired yet): nobody got it
  redis.call('DECR', inbox)
  return 0
end
return id
"""

# KEYS[1] the servers' sorted set, KEYS[2] this server's client list;
# ARGV[1] this server, ARGV[2] the TTL, then client id, "name connected_at" pairs.
# The heartbeat: this server is alive, and these are its clients; servers
# silent for longer than the TTL are forgotten. Returns Redis's time.
SERVER_SCRIPT = """
local now = redis.call('TIME')
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now[1] - ARGV[2]))
redis.call('ZADD', KEYS[1], now[1], ARGV[1])
redis.call('DEL', KEYS[2])
if #ARGV > 2 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 3))
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
return now[1] .. '.' .. string.format('%06d', tonumber(now[2]))
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

# What every channel script shares: Redis's time as "<seconds>.<micros>", and
# the line that tells every server's $sys.channels readers of a change.
_NOW = """
local now = redis.call('TIME')
local at = now[1] .. '.' .. string.format('%06d', tonumber(now[2]))
"""


def _channel_event(what: str, server: str, channel: str) -> str:
    return (f"redis.call('PUBLISH', 'txpubsub:m:$sys.channels', "
            f"'0 ' .. at .. ' 0 ' .. {server} .. ' {what} ' .. {channel})")


# KEYS: 1 the epoch, 2 the id floors, 3 the channel's last id, 4 its Stream,
# 5 its settings. ARGV: 1 sender, 2 payload, 3 the channel's history should it
# be new, 4 the epoch should Redis have none, 5 the TTL of a channel that
# keeps nothing, 6 this server, 7 the pub/sub channel, 8 the channel's floor
# bucket, 9 the channel. (In this order, the parts a server can keep ready
# are together: RedisBackplane.publish.) Returns {id, epoch}.
#
# A channel that keeps messages lives as long as its Stream; one that keeps
# nothing is forgotten TTL seconds after its last use, its id then going on
# from its bucket's floor, so ids never go back in an epoch.
PUBLISH_SCRIPT = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[4]
  redis.call('SET', KEYS[1], epoch)
  -- Redis lost its data: every server hears of the new epoch before its
  -- first message (one connection gets both, in order), not only this one.
  redis.call('PUBLISH', 'txpubsub:srv:all', 'epoch ' .. epoch)
end""" + _NOW + """
local keep = redis.call('HGET', KEYS[5], 'keep')
if keep then
  keep = tonumber(keep)
else
  keep = tonumber(ARGV[3])
  redis.call('HSET', KEYS[5], 'keep', keep)
  """ + _channel_event("create", "ARGV[6]", "ARGV[9]") + """
end
local id = redis.call('INCR', KEYS[3])
if id == 1 then
  local floor = tonumber(redis.call('HGET', KEYS[2], ARGV[8]) or '0')
  if floor > 0 then
    id = floor + 1
    redis.call('SET', KEYS[3], id)
  end
end
if keep > 0 then
  redis.call('XADD', KEYS[4], 'MAXLEN', keep, id, 's', ARGV[1], 't', at, 'p', ARGV[2])
  redis.call('PERSIST', KEYS[3])
  redis.call('PERSIST', KEYS[5])
else
  redis.call('EXPIRE', KEYS[3], ARGV[5])
  redis.call('EXPIRE', KEYS[5], ARGV[5])
  if id > tonumber(redis.call('HGET', KEYS[2], ARGV[8]) or '0') then
    redis.call('HSET', KEYS[2], ARGV[8], id)
  end
end
redis.call('PUBLISH', ARGV[7], id .. ' ' .. at .. ' ' .. keep .. ' ' .. ARGV[1] .. ' ' .. ARGV[2])
return {id, epoch}
"""

# KEYS: 1 the channel's settings, 2 its last id, 3 its Stream. ARGV: 1 its
# history should it be made here ('' : only read), 2 where to read the Stream
# from ('-', '(<id>', or '' : do not read), 3 the TTL, 4 this server, 5 the
# channel. Returns {history or nil, last id, entries}: what Redis holds of it.
CHANNEL_SCRIPT = """
local keep = redis.call('HGET', KEYS[1], 'keep')
if not keep and ARGV[1] ~= '' then""" + _NOW + """
  keep = ARGV[1]
  redis.call('HSET', KEYS[1], 'keep', keep)
  if redis.call('EXISTS', KEYS[3]) == 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
  """ + _channel_event("create", "ARGV[4]", "ARGV[5]") + """
end
local entries = {}
if ARGV[2] ~= '' then entries = redis.call('XRANGE', KEYS[3], ARGV[2], '+') end
return {keep or false, redis.call('GET', KEYS[2]) or '0', entries}
"""

# CREATE: KEYS 1 the channel's settings; ARGV 1 its history, 2 the TTL, 3 this
# server, 4 the channel. 1 if made, 0 if the channel exists.
CREATE_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end""" + _NOW + """
redis.call('HSET', KEYS[1], 'keep', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
""" + _channel_event("create", "ARGV[3]", "ARGV[4]") + """
return 1
"""

# DROP: KEYS 1 the channel's settings, 2 its last id, 3 its Stream, 4 the id
# floors; ARGV 1 its floor bucket, 2 the TTL, 3 this server, 4 the channel.
# Its history and settings go; its last id stays TTL seconds, and in its
# bucket's floor for good. Every server is told. 1 if it existed, else 0.
DROP_SCRIPT = """
local existed = redis.call('DEL', KEYS[1], KEYS[3])
local id = tonumber(redis.call('GET', KEYS[2]) or '0')
if id > 0 then
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  if id > tonumber(redis.call('HGET', KEYS[4], ARGV[1]) or '0') then
    redis.call('HSET', KEYS[4], ARGV[1], id)
  end
end
if existed == 0 then return 0 end""" + _NOW + """
""" + _channel_event("drop", "ARGV[3]", "ARGV[4]") + """
redis.call('PUBLISH', 'txpubsub:srv:all', 'drop ' .. ARGV[3] .. ' ' .. ARGV[4])
return 1
"""

# KEYS: settings and last-id keys of channels with subscribers here; ARGV[1]
# the TTL. Those that would be forgotten sooner live TTL seconds more.
TOUCH_SCRIPT = """
for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, ARGV[1], 'GT') end
return 1
"""

# KEYS[1] the name or client key; ARGV[1] the reason. Tells the server holding
# that client to close it; returns its client id, or nil if nobody holds it.
KICK_SCRIPT = """
local held = redis.call('GET', KEYS[1])
if not held then return false end
local server, client = string.match(held, '^(%S+) (%S+)')
if redis.call('PUBLISH', 'txpubsub:srv:' .. server, 'kick ' .. client .. ' ' .. ARGV[1]) == 0 then
  return false
end
return client
"""

# KEYS[1] the name; ARGV[1] "<server> <client id> cert", ARGV[2] the TTL,
# ARGV[3] why a NAME holder is kicked. A certificate's name: taken from a
# client that chose it with NAME (its server closes it), refused (0) if
# another certificate holds it.
CERTIFICATE_SCRIPT = """
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then
  local server, client, flag = string.match(held, '^(%S+) (%S+) ?(%S*)')
  if flag == 'cert' then return 0 end
  redis.call('PUBLISH', 'txpubsub:srv:' .. server, 'kick ' .. client .. ' ' .. ARGV[3])
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""

# KEYS: pairs of a channel's Stream and its settings; ARGV[1] a Redis time,
# ARGV[i + 1] the last id this server has of the i-th channel (0: none).
# For each channel: {its history or nil, its entries published at or after
# that time and after that id, oldest first}. Read newest first, a hundred
# at a time, so a long Stream costs only what is asked of it.
MISSED_SCRIPT = """
local cut = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS, 2 do
  local after = tonumber(ARGV[(i + 1) / 2 + 1])
  local found = {}
  local top = '+'
  local done = false
  while not done do
    local page = redis.call('XREVRANGE', KEYS[i], top, '-', 'COUNT', 100)
    if #page < 100 then done = true end
    for _, entry in ipairs(page) do
      local id = tonumber(string.match(entry[1], '^(%d+)'))
      if id <= after or tonumber(entry[2][4]) < cut then
        done = true
        break
      end
      table.insert(found, entry)
    end
    if not done then top = '(' .. page[#page][1] end
  end
  local oldest_first = {}
  for j = #found, 1, -1 do table.insert(oldest_first, found[j]) end
  table.insert(out, {redis.call('HGET', KEYS[i + 1], 'keep') or false, oldest_first})
end
return out
"""
