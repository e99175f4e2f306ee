//! The Redis side: key names, the Lua scripts that make each step atomic, and the stream read.
//! Scripts take the time from Redis (`TIME`), so heartbeats do not depend on nodes' clocks.

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{RedisResult, Script, Value};

use super::entry::{self, Entry, Purge, StreamId};
use super::resume::Hello;

/// Every key apicache uses, under `key_prefix`.
#[derive(Debug, Clone)]
pub struct Keys {
    /// The purge log (a stream).
    pub stream: String,
    /// The last purge's number.
    pub seq: String,
    /// The purge-all generation.
    pub gen: String,
    /// The data set's epoch: gone when Redis loses its data.
    pub epoch: String,
    /// Live nodes: a sorted set of node ids by heartbeat expiry (Redis time, ms).
    pub live: String,
    /// The last purge each node applied (a hash).
    pub applied: String,
}

impl Keys {
    /// The keys under `prefix`.
    pub fn new(prefix: &str) -> Self {
        let k = |s: &str| format!("{prefix}:{s}");
        Keys {
            stream: k("purges"),
            seq: k("seq"),
            gen: k("gen"),
            epoch: k("epoch"),
            live: k("live"),
            applied: k("applied"),
        }
    }
}

/// Lua: a number field of a stream entry (`-1` absent, `-2` not a number).
macro_rules! field_of {
    () => {
        r"
local function field_of(e, name)
  local f = e[2]
  for i = 1, #f, 2 do if f[i] == name then return tonumber(f[i + 1]) or -2 end end
  return -1
end
"
    };
}

/// Lua: `now`, Redis' clock in milliseconds (heartbeats never use a node's clock).
macro_rules! redis_now {
    () => {
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"
    };
}

const HELLO: &str = concat!(
    field_of!(),
    r"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local epoch = redis.call('GET', KEYS[1])
local seq = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local gen = tonumber(redis.call('GET', KEYS[3]) or '0') or 0
local last = redis.call('XREVRANGE', KEYS[4], '+', '-', 'COUNT', 1)
local last_id = '0-0'
if #last > 0 then last_id = last[1][1] end
-- A lost counter key: the newest entry still says where numbering stands.
if #last > 0 then
  seq = math.max(seq, field_of(last[1], 'seq'))
  gen = math.max(gen, field_of(last[1], 'gen'))
end
local first = -1
local oldest = redis.call('XRANGE', KEYS[4], '-', '+', 'COUNT', 1)
if #oldest > 0 then first = field_of(oldest[1], 'seq') end
local at = -1
if ARGV[2] ~= '' then
  local e = redis.call('XRANGE', KEYS[4], ARGV[2], ARGV[2])
  if #e > 0 then at = field_of(e[1], 'seq') end
end
return {epoch, seq, gen, last_id, at, first}
"
);

const PUBLISH: &str = concat!(
    field_of!(),
    r"
if redis.call('GET', KEYS[4]) ~= ARGV[6] then return {-1, ''} end
local t = redis.call('TYPE', KEYS[3])['ok']
if t ~= 'stream' and t ~= 'none' then return redis.error_reply('the purge log key is a ' .. t) end
local seq = redis.call('INCR', KEYS[1])
-- A lost counter key must not reuse numbers the stream already holds.
local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
if #last > 0 then
  local s = field_of(last[1], 'seq')
  if s >= seq then seq = s + 1; redis.call('SET', KEYS[1], seq) end
end
local gen = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if ARGV[2] == 'all' then gen = redis.call('INCR', KEYS[2]) end
local id = redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[1], '*', 'seq', seq, 'gen', gen,
  'kind', ARGV[2], 'targets', ARGV[3], 'soft', ARGV[4], 'node', ARGV[5])
return {seq, id}
"
);

const BEAT: &str = concat!(
    redis_now!(),
    r"
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, n in ipairs(gone) do
  redis.call('ZREM', KEYS[1], n)
  redis.call('HDEL', KEYS[2], n)
end
if ARGV[3] == '0' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return {}
end
-- A node that follows another data set must say hello again: its numbers mean nothing here.
if redis.call('GET', KEYS[3]) ~= ARGV[4] then return {'!epoch'} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4] .. ':' .. ARGV[2])
local live = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
local out = {}
for _, n in ipairs(live) do
  table.insert(out, n)
  table.insert(out, redis.call('HGET', KEYS[2], n) or '')
end
return out
"
);

const CONFIRMED: &str = concat!(
    redis_now!(),
    r"
local live = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
local ok = 0
for _, n in ipairs(live) do
  -- Only what a node applied in this data set counts (`epoch:seq`).
  local e, s = string.match(redis.call('HGET', KEYS[2], n) or '', '^(.*):(%d+)$')
  if e == ARGV[2] and tonumber(s) >= tonumber(ARGV[1]) then ok = ok + 1 end
end
return {#live, ok}
"
);

static HELLO_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(HELLO));
static PUBLISH_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(PUBLISH));
static BEAT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(BEAT));
static CONFIRMED_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(CONFIRMED));

/// Most live nodes reported (a heartbeat answer lists them).
const MAX_LISTED_NODES: usize = 256;

/// Connect, check the epoch (setting `candidate` when there is none) and read where the log
/// stands; `position` is the node's last stream id, if it has one.
pub async fn hello(
    con: &mut MultiplexedConnection,
    keys: &Keys,
    candidate: &str,
    position: Option<StreamId>,
) -> RedisResult<Hello> {
    let (epoch, seq, gen, last_id, at, first): (String, i64, i64, String, i64, i64) = HELLO_SCRIPT
        .key(&keys.epoch)
        .key(&keys.seq)
        .key(&keys.gen)
        .key(&keys.stream)
        .arg(candidate)
        .arg(position.map(|p| p.to_string()).unwrap_or_default())
        .invoke_async(con)
        .await?;
    let info: String = redis::cmd("INFO").arg("server").query_async(con).await?;
    let run_id = info
        .lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .unwrap_or_default()
        .trim()
        .to_string();
    Ok(Hello {
        epoch,
        run_id,
        seq: u64::try_from(seq).unwrap_or(0),
        gen: u64::try_from(gen).unwrap_or(0),
        last_id: StreamId::parse(&last_id).unwrap_or_default(),
        at_position: u64::try_from(at).ok(),
        first_seq: u64::try_from(first).ok(),
    })
}

/// Append a purge (number and entry in one step). `None`: the epoch is no longer `epoch`
/// (Redis lost its data), so nothing was logged.
pub async fn publish(
    con: &mut MultiplexedConnection,
    keys: &Keys,
    epoch: &str,
    purge: &Purge,
    node: &str,
    max_len: u64,
) -> RedisResult<Option<(u64, StreamId)>> {
    let (seq, id): (i64, String) = PUBLISH_SCRIPT
        .key(&keys.seq)
        .key(&keys.gen)
        .key(&keys.stream)
        .key(&keys.epoch)
        .arg(max_len)
        .arg(purge.kind())
        .arg(purge.targets())
        .arg(if purge.soft { "1" } else { "0" })
        .arg(node)
        .arg(epoch)
        .invoke_async(con)
        .await?;
    Ok(u64::try_from(seq).ok().zip(StreamId::parse(&id)))
}

/// Heartbeat: this node is live for `ttl` and has applied `seq` of the data set `epoch` (a
/// zero `ttl` leaves). Returns the live nodes and what each applied, or `None` when the epoch
/// is no longer `epoch` (the node must say hello again).
pub async fn beat(
    con: &mut MultiplexedConnection,
    keys: &Keys,
    node: &str,
    seq: u64,
    ttl: Duration,
    epoch: &str,
) -> RedisResult<Option<Vec<(String, u64)>>> {
    let flat: Vec<String> = BEAT_SCRIPT
        .key(&keys.live)
        .key(&keys.applied)
        .key(&keys.epoch)
        .arg(node)
        .arg(seq)
        .arg(ttl.as_millis() as u64)
        .arg(epoch)
        .invoke_async(con)
        .await?;
    if flat.first().is_some_and(|f| f == "!epoch") {
        return Ok(None);
    }
    let seq_of = |v: &str| {
        v.rsplit_once(':')
            .and_then(|(_, s)| s.parse().ok())
            .unwrap_or(0)
    };
    Ok(Some(
        flat.chunks_exact(2)
            .take(MAX_LISTED_NODES)
            .map(|p| (p[0].clone(), seq_of(&p[1])))
            .collect(),
    ))
}

/// Live nodes, and how many of them applied purge `seq` of the data set `epoch`.
pub async fn confirmed(
    con: &mut MultiplexedConnection,
    keys: &Keys,
    seq: u64,
    epoch: &str,
) -> RedisResult<(usize, usize)> {
    CONFIRMED_SCRIPT
        .key(&keys.live)
        .key(&keys.applied)
        .arg(seq)
        .arg(epoch)
        .invoke_async(con)
        .await
}

/// Entries after `from`, waiting up to `block` for the first (`None`: answer at once); each
/// decoded, or why it could not be (with its id, so reading goes on past it).
pub async fn read(
    mut con: MultiplexedConnection,
    keys: Keys,
    from: StreamId,
    block: Option<Duration>,
    count: usize,
) -> RedisResult<Vec<(StreamId, Result<Entry, entry::Unreadable>)>> {
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("COUNT").arg(count);
    if let Some(b) = block {
        cmd.arg("BLOCK").arg(b.as_millis() as u64);
    }
    let reply: Option<redis::streams::StreamReadReply> = cmd
        .arg("STREAMS")
        .arg(&keys.stream)
        .arg(from.to_string())
        .query_async(&mut con)
        .await?;
    let ids = reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids);
    Ok(ids
        .map(|e| {
            let id = StreamId::parse(&e.id).unwrap_or(from);
            let text: Vec<(String, String)> = e
                .map
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), string(v)?)))
                .collect();
            let field = |name: &str| {
                text.iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
            };
            (id, entry::decode(field))
        })
        .collect())
}

fn string(v: &Value) -> Option<String> {
    redis::from_redis_value_ref::<String>(v).ok()
}
