//! The Lua scripts the Redis store runs. Each runs atomically in Redis, so every check and the
//! writes it guards happen as one step however many instances call at once. `ARGV[1]` is
//! always the key prefix; numbers travel as strings so Lua never rounds or reformats them.
//!
//! Keys, under the prefix:
//! - `job:{id}`: hash: `kind`, `params`, `owner`, `state` (newest, JSON), `status`,
//!   `created_ms`, `cancel`, `started_ms`, `ended_ms`, `checkpoint`, `token` (the fencing
//!   token of the lease holding it, `0` for none), `holder` (that instance);
//! - `events:{id}`: stream, entry ids `{seq}-0`, fields `k` (`s` state, `l` log line), `d`;
//! - `jobs`: set of kept ids; `owner:{key}`: zset of an owner's ids by creation time;
//!   `active:{key}`: set of an owner's pending and running ids;
//! - `queue`: zset of waiting ids in arrival order (`queue-order` numbers them);
//! - `running`: zset of leased ids by lease expiry (ms, Redis's clock); `fence`: the counter
//!   tokens come from; `ended`: zset of ended ids by end time.
//!
//! Notices go to the channel `notify`: `e ID:SEQ ...` (events appended), `c ID OWNER` (created;
//! `-` for no owner), `x ID` (cancel requested), `q` (the queue moved or a slot freed).

/// Helpers every script starts with.
const COMMON: &str = r"
local p = ARGV[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function notify(text) redis.call('PUBLISH', p .. 'notify', text) end
local function live(status) return status == 'pending' or status == 'running' end
local function take(id, instance, lease_ms)
  local token = redis.call('INCR', p .. 'fence')
  redis.call('HSET', p .. 'job:' .. id, 'token', token, 'holder', instance)
  redis.call('ZADD', p .. 'running', now_ms() + lease_ms, id)
  return token
end
local function forget(id)
  local jk = p .. 'job:' .. id
  local owner = redis.call('HGET', jk, 'owner')
  if owner then
    redis.call('ZREM', p .. 'owner:' .. owner, id)
    redis.call('SREM', p .. 'active:' .. owner, id)
  end
  redis.call('DEL', jk, p .. 'events:' .. id)
  redis.call('SREM', p .. 'jobs', id)
  for _, set in ipairs({'ended', 'queue', 'running'}) do redis.call('ZREM', p .. set, id) end
end
local function create(c)
  local jk = p .. 'job:' .. c.id
  redis.call('HSET', jk, 'kind', c.kind, 'params', c.params, 'state', c.state, 'status', c.status,
    'created_ms', c.created_ms, 'cancel', '0', 'token', '0')
  if c.owner ~= cjson.null then
    redis.call('HSET', jk, 'owner', c.owner)
    redis.call('ZADD', p .. 'owner:' .. c.owner, c.created_ms, c.id)
    if live(c.status) then redis.call('SADD', p .. 'active:' .. c.owner, c.id) end
  end
  redis.call('SADD', p .. 'jobs', c.id)
end
local function enqueue(id)
  redis.call('ZADD', p .. 'queue', redis.call('INCR', p .. 'queue-order'), id)
end
";

/// Applies one batch (ARGV[2], JSON): checks, then writes. Writes of jobs that are gone, held
/// under another lease, or whose events do not follow the kept ones are skipped (refused) and
/// their ids returned; the rest is written.
const WRITE_BATCH: &str = r"
local b = cjson.decode(ARGV[2])
local created, skip, fenced = {}, {}, {}
for _, c in ipairs(b.created) do
  if redis.call('EXISTS', p .. 'job:' .. c.id) == 1 then
    return redis.error_reply('job ' .. c.id .. ' exists already')
  end
  created[c.id] = true
end
for _, w in ipairs(b.writes) do
  if not created[w.id] then
    local token = redis.call('HGET', p .. 'job:' .. w.id, 'token')
    if token ~= w.lease then
      skip[w.id] = true
      table.insert(fenced, w.id)
    end
  end
  if not skip[w.id] and #w.events > 0 then
    local kept = 0
    if not created[w.id] then
      local last = redis.call('XREVRANGE', p .. 'events:' .. w.id, '+', '-', 'COUNT', 1)
      if #last > 0 then kept = tonumber(string.match(last[1][1], '^(%d+)')) end
    end
    -- The next number, or a later one when the write forgets all those in between anyway
    -- (store::follows). Otherwise written by a holder that lost the job, or not kept: refused
    -- like a stale lease, so the rest of the batch (and every later one) is not held up by it.
    local first, last = tonumber(w.events[1][1]), tonumber(w.events[#w.events][1])
    if last <= kept and not created[w.id] then
      -- Every event is kept already, under this lease: a batch written once whose answer was
      -- lost, tried again. It is done, not refused.
      skip[w.id] = true
    elseif first <= kept or first > math.max(kept, tonumber(w.forget_through)) + 1 then
      skip[w.id] = true
      table.insert(fenced, w.id)
    end
  end
end
for _, c in ipairs(b.created) do
  create(c)
  if c.status == 'pending' then enqueue(c.id)
  elseif c.status == 'running' then redis.call('ZADD', p .. 'running', 0, c.id)
  else redis.call('ZADD', p .. 'ended', c.created_ms, c.id) end
end
local appended, freed = {}, false
for _, w in ipairs(b.writes) do
  if not skip[w.id] then
    local ek = p .. 'events:' .. w.id
    local jk = p .. 'job:' .. w.id
    for _, e in ipairs(w.events) do
      redis.call('XADD', ek, e[1] .. '-0', 'k', e[2], 'd', e[3])
    end
    if #w.events > 0 then table.insert(appended, w.id .. ':' .. w.events[#w.events][1]) end
    if w.forget_through ~= '0' then
      redis.call('XTRIM', ek, 'MINID', (tonumber(w.forget_through) + 1) .. '-0')
    end
    if w.state ~= cjson.null then
      redis.call('HSET', jk, 'state', w.state.json, 'status', w.state.status)
      if w.state.ended_ms ~= cjson.null then
        redis.call('HSET', jk, 'ended_ms', w.state.ended_ms)
        redis.call('ZADD', p .. 'ended', w.state.ended_ms, w.id)
        local owner = redis.call('HGET', jk, 'owner')
        if owner then redis.call('SREM', p .. 'active:' .. owner, w.id) end
        if redis.call('ZREM', p .. 'running', w.id) + redis.call('ZREM', p .. 'queue', w.id) > 0 then freed = true end
      end
    end
    if w.started_ms ~= cjson.null then redis.call('HSETNX', jk, 'started_ms', w.started_ms) end
    if w.checkpoint ~= cjson.null then redis.call('HSET', jk, 'checkpoint', w.checkpoint) end
    if w.cancel then redis.call('HSET', jk, 'cancel', '1') end
  end
end
for _, id in ipairs(b.removed) do forget(id) end
if #appended > 0 then notify('e ' .. table.concat(appended, ' ')) end
if freed then notify('q') end
return fenced
";

/// Admits a new job. ARGV: 2 instance, 3 lease ms, 4 max running, 5 max queued, 6 max active
/// per owner, 7 max jobs, 8 the job (JSON). Returns `{'ok', token, evicted...}` (token `0`:
/// queued) or `{'owner_limit'}`, `{'queue_full'}`, `{'full'}`.
const ADMIT: &str = r"
local j = cjson.decode(ARGV[8])
if redis.call('EXISTS', p .. 'job:' .. j.id) == 1 then
  return redis.error_reply('job ' .. j.id .. ' exists already')
end
if j.owner ~= cjson.null and redis.call('SCARD', p .. 'active:' .. j.owner) >= tonumber(ARGV[6]) then
  return {'owner_limit'}
end
local queued = redis.call('ZCARD', p .. 'queue')
local run = queued == 0 and redis.call('ZCARD', p .. 'running') < tonumber(ARGV[4])
if not run and queued >= tonumber(ARGV[5]) then return {'queue_full'} end
local out = {'ok', '0'}
if redis.call('SCARD', p .. 'jobs') >= tonumber(ARGV[7]) then
  local oldest = redis.call('ZRANGE', p .. 'ended', 0, 0)
  if #oldest == 0 then return {'full'} end
  forget(oldest[1])
  table.insert(out, oldest[1])
end
create(j)
redis.call('XADD', p .. 'events:' .. j.id, '1-0', 'k', 's', 'd', j.state)
if run then
  out[2] = tostring(take(j.id, ARGV[2], tonumber(ARGV[3])))
else
  enqueue(j.id)
end
if j.owner ~= cjson.null then notify('c ' .. j.id .. ' ' .. j.owner) else notify('c ' .. j.id .. ' -') end
if not run then notify('q') end
return out
";

/// Takes waiting jobs, oldest first, while the running bound allows. ARGV: 2 instance, 3 lease
/// ms, 4 max running, 5 most. Returns `{{id, token}...}`.
const CLAIM: &str = r"
local out = {}
local most = tonumber(ARGV[5])
while #out < most and redis.call('ZCARD', p .. 'running') < tonumber(ARGV[4]) do
  local first = redis.call('ZRANGE', p .. 'queue', 0, 0)
  if #first == 0 then break end
  local id = first[1]
  redis.call('ZREM', p .. 'queue', id)
  if live(redis.call('HGET', p .. 'job:' .. id, 'status')) then
    table.insert(out, {id, tostring(take(id, ARGV[2], tonumber(ARGV[3])))})
  end
end
return out
";

/// Takes over jobs whose lease expired, except those the caller holds (it is alive, since it
/// asks; its next heartbeat renews them). A lease of the caller's name that it does not hold
/// (a reply it never got, a previous process of the same name) is taken over like any other.
/// ARGV: 2 instance, 3 lease ms, 4 most, then the ids the caller holds. Returns
/// `{{id, token}...}`.
const REAP: &str = r"
local out = {}
local mine = {}
for i = 5, #ARGV do mine[ARGV[i]] = true end
local expired = redis.call('ZRANGEBYSCORE', p .. 'running', '-inf', now_ms(), 'LIMIT', 0, tonumber(ARGV[4]) + #ARGV - 4)
for _, id in ipairs(expired) do
  local status = redis.call('HGET', p .. 'job:' .. id, 'status')
  if mine[id] then
    -- held: left for the caller's heartbeat
  elseif live(status) then
    table.insert(out, {id, tostring(take(id, ARGV[2], tonumber(ARGV[3])))})
  else
    redis.call('ZREM', p .. 'running', id)
  end
end
return out
";

/// Renews leases. ARGV: 2 lease ms, then id, token pairs. Returns `{lost, cancelled}`.
const HEARTBEAT: &str = r"
local lost, cancelled = {}, {}
local until_ms = now_ms() + tonumber(ARGV[2])
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local kept = redis.call('HMGET', p .. 'job:' .. id, 'token', 'cancel')
  if kept[1] ~= ARGV[i + 1] then
    table.insert(lost, id)
  else
    redis.call('ZADD', p .. 'running', 'XX', until_ms, id)
    if kept[2] == '1' then table.insert(cancelled, id) end
  end
end
return {lost, cancelled}
";

/// Gives leases back: they expire now. ARGV: id, token pairs from 2.
const RELEASE: &str = r"
for i = 2, #ARGV, 2 do
  if redis.call('HGET', p .. 'job:' .. ARGV[i], 'token') == ARGV[i + 1] then
    redis.call('ZADD', p .. 'running', 'XX', 0, ARGV[i])
  end
end
return 'OK'
";

/// Asks a job to stop. ARGV: 2 instance, 3 lease ms, 4 id. Returns `{'unknown'}`,
/// `{'ended', status}`, `{'requested'}` or `{'claimed', token}` (it was waiting).
const CANCEL: &str = r"
local id = ARGV[4]
local jk = p .. 'job:' .. id
local status = redis.call('HGET', jk, 'status')
if not status then return {'unknown'} end
if not live(status) then return {'ended', status} end
redis.call('HSET', jk, 'cancel', '1')
if redis.call('ZREM', p .. 'queue', id) == 1 then
  return {'claimed', tostring(take(id, ARGV[2], tonumber(ARGV[3])))}
end
notify('x ' .. id)
return {'requested'}
";

/// Forgets jobs ended at or before ARGV[2] (ms), at most ARGV[3] of them. Returns how many.
const EXPIRE_ENDED: &str = r"
local ids = redis.call('ZRANGEBYSCORE', p .. 'ended', '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do forget(id) end
return #ids
";

/// The scripts, ready to run (Redis caches them by hash; `invoke` loads one when missing).
pub(super) struct Scripts {
    pub(super) write_batch: redis::Script,
    pub(super) admit: redis::Script,
    pub(super) claim: redis::Script,
    pub(super) reap: redis::Script,
    pub(super) heartbeat: redis::Script,
    pub(super) release: redis::Script,
    pub(super) cancel: redis::Script,
    pub(super) expire_ended: redis::Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        let script = |body: &str| redis::Script::new(&format!("{COMMON}{body}"));
        Self {
            write_batch: script(WRITE_BATCH),
            admit: script(ADMIT),
            claim: script(CLAIM),
            reap: script(REAP),
            heartbeat: script(HEARTBEAT),
            release: script(RELEASE),
            cancel: script(CANCEL),
            expire_ended: script(EXPIRE_ENDED),
        }
    }
}
