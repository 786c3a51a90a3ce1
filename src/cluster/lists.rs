//! One list version everywhere. `sipfence lists publish` checks the lists it is given
//! and stores them as one numbered set: `INCR <prefix>:lists:seq` gives the version,
//! then one transaction writes the hash `<prefix>:lists:v<N>` (list name -> list-file
//! text) and points `<prefix>:lists:current` at it, so an instance never sees half a
//! publication. Older sets beyond the last three are deleted.
//!
//! Each instance polls `current` every `list_poll_ms`; a new version is fetched, built
//! with the same list loader as files (errors name `redis:lists/v<N>/<name>:<line>`)
//! and swapped in whole, or refused: the instance logs why, shows the refused version
//! in its metrics and keeps the lists it had.

use super::{Redis, RedisFailure};

/// A published list set: (name, list-file text) pairs, and its version.
pub type ListSet = Vec<(String, String)>;

/// Set names a publication may carry.
pub fn valid_name(name: &str) -> bool {
    crate::policy::LIST_NAMES.contains(&name)
        || name
            .strip_prefix("whitelist:")
            .is_some_and(|t| !t.is_empty())
}

/// Stores a new list set; returns its version.
pub async fn publish(redis: &Redis, lists: &[(String, String)]) -> Result<u64, RedisFailure> {
    let seq = redis.key("lists:seq");
    let version: u64 = redis
        .run(|mut c| async move { redis::cmd("INCR").arg(&seq).query_async(&mut c).await })
        .await?;
    let set = redis.key(&format!("lists:v{version}"));
    let current = redis.key("lists:current");
    let mut pipe = redis::pipe();
    pipe.atomic();
    pipe.cmd("DEL").arg(&set).ignore();
    for (name, text) in lists {
        pipe.cmd("HSET").arg(&set).arg(name).arg(text).ignore();
    }
    pipe.cmd("SET").arg(&current).arg(version).ignore();
    redis
        .run(|mut c| async move { pipe.query_async::<()>(&mut c).await })
        .await?;
    if version > 3 {
        let old = redis.key(&format!("lists:v{}", version - 3));
        let _ = redis
            .run(|mut c| async move { redis::cmd("DEL").arg(&old).query_async::<()>(&mut c).await })
            .await;
    }
    Ok(version)
}

/// `policy` with a published set in force; errors name `redis:lists/v<N>/<name>:<line>`.
pub fn apply(
    policy: &crate::policy::Policy,
    version: u64,
    lists: &ListSet,
) -> Result<crate::policy::Policy, crate::load_error::LoadError> {
    policy.with_lists(&format!("redis:lists/v{version}"), lists)
}

/// The version `current` points at, if any was published.
pub async fn current(redis: &Redis) -> Result<Option<u64>, RedisFailure> {
    let k = redis.key("lists:current");
    redis
        .run(|mut c| async move { redis::cmd("GET").arg(&k).query_async(&mut c).await })
        .await
}

/// The lists of one version (name, text), sorted by name.
pub async fn fetch(redis: &Redis, version: u64) -> Result<Vec<(String, String)>, RedisFailure> {
    let k = redis.key(&format!("lists:v{version}"));
    let mut v: Vec<(String, String)> = redis
        .run(|mut c| async move { redis::cmd("HGETALL").arg(&k).query_async(&mut c).await })
        .await?;
    v.sort();
    Ok(v)
}
