//! A trunk's concurrent calls (`max_concurrent_calls`) counted across gateways. An
//! enterprise line sold as 60 channels and reached through two gateways in
//! active-active has 60 places, not 30 at each.
//!
//! Every `sync_ms` each gateway writes its own count of calls up on each limited trunk
//! into a hash per trunk (`<prefix>:calls:<trunk>`, field = the process's, instance name
//! and a random tag as the rate counters' fields, value = count and time) and reads the
//! hash back, in one script per trunk and one pipeline for all; the
//! other gateways' fresh counts are what it then adds to its own when it admits a call
//! ([`crate::behaviour::live::LiveCalls::set_elsewhere`]). No call waits on Redis. The
//! time is Redis's own clock, read in the script: gateways whose clocks disagree still
//! agree on which counts are fresh.
//!
//! Overshoot: two gateways can each give the last place within one sync interval, so a
//! trunk can pass its limit by the calls the others admit in one interval. A gateway that
//! stops writing (stopped, cut off) is forgotten after [`stale_ms`]; with Redis out of
//! reach for that long, each gateway counts only its own calls against the whole limit
//! (fail-open, as the shared rate counters do) until it is back.

use super::{Redis, RedisFailure};
use crate::behaviour::live::LiveCalls;

/// How old another gateway's count may be and still count: ten sync intervals, and
/// never less than two seconds (a gateway busy for a moment is not gone).
pub fn stale_ms(sync_ms: u64) -> u64 {
    (10 * sync_ms).max(2_000)
}

/// One sync: publishes this gateway's counts for `trunks` (id, name) and learns the
/// others'. Returns the calls up elsewhere, summed over the trunks.
pub async fn sync(
    redis: &Redis,
    field: &str,
    trunks: &[(u64, String)],
    live: &LiveCalls,
    now_ms: u64,
    stale_ms: u64,
) -> Result<u32, RedisFailure> {
    if trunks.is_empty() {
        live.set_elsewhere([]);
        return Ok(0);
    }
    let mut pipe = redis::pipe();
    for (id, name) in trunks {
        pipe.cmd("EVAL")
            .arg(PUBLISH)
            .arg(1)
            .arg(redis.key(&format!("calls:{name}")))
            .arg(field)
            .arg(live.up_now(*id, now_ms))
            // A trunk no gateway limits any more disappears on its own.
            .arg(stale_ms * 3);
    }
    let all: Vec<(u64, Vec<(String, String)>)> = redis
        .run(|mut c| async move { pipe.query_async(&mut c).await })
        .await?;
    let mut total = 0u32;
    let elsewhere: Vec<(u64, u32)> = trunks
        .iter()
        .zip(all)
        .map(|((id, _), (redis_now, fields))| {
            let n = others(&fields, field, redis_now, stale_ms);
            total = total.saturating_add(n);
            (*id, n)
        })
        .collect();
    live.set_elsewhere(elsewhere);
    Ok(total)
}

/// The fleet's calls ended through a gateway other than the one that admitted them:
/// a sorted set (`<prefix>:calls-ended`, member = the call's dialog key, score = when
/// Redis was told, by its clock), kept [`ENDED_KEEP_MS`].
const ENDED_KEY: &str = "calls-ended";

/// How long an ended call is kept for the others to read: far longer than any sync
/// interval or a restart.
pub const ENDED_KEEP_MS: u64 = 120_000;

/// Tells the others of the calls that ended through this gateway (`ended`), and learns
/// those that ended elsewhere since Redis's time `since_ms` (0: everything kept). A
/// gateway holding one of those gives its place back ([`LiveCalls::ended_by_others`]).
/// Returns Redis's time now, for the next read.
pub async fn exchange_ends(
    redis: &Redis,
    live: &LiveCalls,
    ended: &[u64],
    since_ms: u64,
) -> Result<u64, RedisFailure> {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(ENDED)
        .arg(1)
        .arg(redis.key(ENDED_KEY))
        .arg(since_ms)
        .arg(ENDED_KEEP_MS);
    for k in ended {
        cmd.arg(*k);
    }
    let (now, keys): (u64, Vec<String>) = redis
        .run(|mut c| async move { cmd.query_async(&mut c).await })
        .await?;
    let keys: Vec<u64> = keys.iter().filter_map(|k| k.parse().ok()).collect();
    live.told_others(ended.len());
    live.ended_by_others(&keys);
    Ok(now)
}

/// KEYS[1] the ended calls; ARGV[1] since (Redis ms, exclusive), ARGV[2] how long they
/// are kept, ARGV[3..] the calls ended here. Returns Redis's time and the calls ended
/// since, a second before `since` included (a clock that steps back at Redis). At most
/// 100,000 are kept, the oldest dropped first (QA 200: a trunk peer whose core answers
/// 200 to BYEs of no dialog grew the set with every BYE it sent, 200,000 in 20 s).
const ENDED: &str = "\
local t = redis.call('TIME') \
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) \
for i = 3, #ARGV do \
  redis.call('ZADD', KEYS[1], now, ARGV[i]) \
end \
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2])) \
local n = redis.call('ZCARD', KEYS[1]) \
if n > 100000 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - 100001) end \
local since = tonumber(ARGV[1]) - 1000 \
local got = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. since, '+inf') \
if #got > 0 or #ARGV > 2 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end \
return {now, got}";

/// How long a stopping gateway's counts stay fresh for the others when its calls go
/// to the next process (`[proxy] calls_file`): a restart's time, within which the next
/// process takes the same field over and writes its count in their place.
pub const HANDOVER_MS: u64 = 60_000;

/// At a stop whose calls the next start counts again (`[proxy] calls_file`), writes
/// this gateway's last counts (trunk name, calls up) under `field` dated
/// [`HANDOVER_MS`] ahead: the others go on counting them while the gateway restarts
/// (QA 135: taken out, they counted nowhere meanwhile, and a trunk of 3 had 4 up; left
/// as they were, they went stale after two seconds), and the next process, publishing
/// under the same field, replaces them (QA 134: a field of its own counted beside
/// them, twice). A gateway that does not come back is forgotten that much later.
pub async fn hand_over(
    redis: &Redis,
    field: &str,
    counts: &[(String, u32)],
) -> Result<(), RedisFailure> {
    if counts.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for (name, n) in counts {
        pipe.cmd("EVAL")
            .arg(HAND_OVER)
            .arg(1)
            .arg(redis.key(&format!("calls:{name}")))
            .arg(field)
            .arg(*n)
            .arg(HANDOVER_MS)
            .ignore();
    }
    redis
        .run(|mut c| async move { pipe.query_async::<()>(&mut c).await })
        .await
}

const HAND_OVER: &str = "local t = redis.call('TIME') \
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) \
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. (now + tonumber(ARGV[3]))) \
if redis.call('PTTL', KEYS[1]) < 2 * tonumber(ARGV[3]) then \
  redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[3])) \
end \
return 1";

/// Writes this gateway's count with Redis's time, keeps the hash alive, takes out the
/// fields no process has written for the hash's lifetime (each restart of a gateway
/// starts a field: those of the processes before would pile up), and returns that time
/// and the whole hash.
const PUBLISH: &str = "local t = redis.call('TIME') \
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) \
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. now) \
redis.call('PEXPIRE', KEYS[1], ARGV[3]) \
local all = redis.call('HGETALL', KEYS[1]) \
local kept = {} \
for i = 1, #all, 2 do \
  local at = tonumber(string.match(all[i + 1], ' (%d+)$')) \
  if at and now - at > tonumber(ARGV[3]) then \
    redis.call('HDEL', KEYS[1], all[i]) \
  else \
    kept[#kept + 1] = all[i] \
    kept[#kept + 1] = all[i + 1] \
  end \
end \
return {now, kept}";

/// The fresh counts of the other instances in one trunk's hash. A value that does not
/// read (written by something else) counts as nothing.
fn others(fields: &[(String, String)], field: &str, now_ms: u64, stale_ms: u64) -> u32 {
    fields
        .iter()
        .filter(|(gw, _)| gw != field)
        .filter_map(|(_, v)| {
            let (n, at) = v.split_once(' ')?;
            let (n, at) = (n.parse::<u32>().ok()?, at.parse::<u64>().ok()?);
            (now_ms.saturating_sub(at) <= stale_ms).then_some(n)
        })
        .fold(0u32, u32::saturating_add)
}

/// Syncs every `every` until the process ends. `trunks` names the limited trunks (id,
/// name) at each beat, so that a reload adding or removing a limit is followed;
/// `on_error` counts a failed sync. With Redis out of reach longer than [`stale_ms`],
/// the others' calls are forgotten: each gateway then counts its own against the whole
/// limit (fail-open) until Redis is back.
pub async fn run(
    redis: &Redis,
    field: &str,
    live: &LiveCalls,
    every: std::time::Duration,
    trunks: impl Fn() -> Vec<(u64, String)>,
    on_error: impl Fn(),
) {
    let stale = stale_ms(every.as_millis() as u64);
    let mut last_ok = crate::cli::steady_ms();
    live.share_with_others();
    // Redis's time at the last read of the calls ended elsewhere (0: none yet), and
    // those ended here that could not be told yet.
    let (mut ends_read, mut untold) = (0u64, Vec::<u64>::new());
    // Said once when the others' counts are given up, and once when Redis is back
    // (QA 132: said only when some other gateway had calls up then, and the return
    // never).
    let mut alone = false;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let trunks = trunks();
        let now = crate::cli::steady_ms();
        if !trunks.is_empty() {
            untold.extend(live.ended_elsewhere());
            // Bounded as the table is: what Redis could not take for a while is dropped.
            let over = untold
                .len()
                .saturating_sub(crate::behaviour::live::ELSEWHERE_MAX);
            untold.drain(..over);
            match exchange_ends(redis, live, &untold, ends_read).await {
                Ok(t) => {
                    ends_read = t;
                    untold.clear();
                }
                Err(_) => on_error(),
            }
        }
        match sync(redis, field, &trunks, live, now, stale).await {
            Ok(_) => {
                last_ok = now;
                if std::mem::take(&mut alone) {
                    tracing::info!("redis reachable: concurrent calls are shared again");
                }
            }
            Err(e) => {
                on_error();
                if now.saturating_sub(last_ok) > stale && !trunks.is_empty() {
                    if !alone {
                        tracing::warn!(error = %e, "redis unreachable: concurrent calls counted at this gateway only until it is back");
                    }
                    alone = true;
                    live.set_elsewhere([]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_others_fresh_counts_add_up() {
        let f = |gw: &str, v: &str| (gw.to_string(), v.to_string());
        let fields = [
            f("gw0", "7 1000"),
            f("gw1", "2 9000"),
            f("gw2", "3 10000"),
            f("gw3", "5 1000"),
            f("gw4", "x 10000"),
            f("gw5", "4"),
        ];
        // gw0 is us; gw3's count is older than the stale bound; gw4, gw5 do not read.
        assert_eq!(others(&fields, "gw0", 10_000, 2_000), 5);
        assert_eq!(stale_ms(50), 2_000);
        assert_eq!(stale_ms(500), 5_000);
    }
}
