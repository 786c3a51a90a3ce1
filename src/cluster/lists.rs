//! One list version everywhere. `sipfence lists publish` checks the lists it is given
//! and stores them as one numbered set: `INCR <prefix>:lists:seq` gives the version,
//! then one transaction writes the hash `<prefix>:lists:v<N>` (list name -> list-file
//! text) and points `<prefix>:lists:current` at it, so an instance never sees half a
//! publication. Older sets beyond the last three are deleted.
//!
//! `current` holds `<version>:<tag>`, the tag a digest of the set's content: a Redis
//! that lost its data numbers the next publication v1 again, and the tag is what tells
//! the gateways still running an older v1 that this one is another set.
//!
//! Each instance polls `current` every `list_poll_ms`; a new version is fetched, built
//! with the same list loader as files (errors name `redis:lists/v<N>/<name>:<line>`)
//! and swapped in whole, or refused: the instance logs why, shows the refused version
//! in its metrics and keeps the lists it had.

use super::{Redis, RedisFailure};

/// A published list set: (name, list-file text) pairs, and its version.
pub type ListSet = Vec<(String, String)>;

/// What `current` names: a version and the digest of its content (0 when a publisher
/// wrote the version alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub version: u64,
    pub tag: u64,
}

impl Published {
    /// `7:0123456789abcdef`, or `7` as a bare version.
    pub fn parse(s: &str) -> Option<Published> {
        let (v, tag) = match s.trim().split_once(':') {
            Some((v, t)) => (v, u64::from_str_radix(t, 16).ok()?),
            None => (s.trim(), 0),
        };
        Some(Published {
            version: v.parse().ok()?,
            tag,
        })
    }
}

/// The digest of a set: its names and texts, in name order.
pub fn tag_of(lists: &[(String, String)]) -> u64 {
    let mut sorted: Vec<&(String, String)> = lists.iter().collect();
    sorted.sort();
    let parts: Vec<&[u8]> = sorted
        .iter()
        .flat_map(|(n, t)| [n.as_bytes(), t.as_bytes()])
        .collect();
    crate::sip::lex::tag_hash(&parts)
}

/// Set names a publication may carry.
pub fn valid_name(name: &str) -> bool {
    crate::policy::LIST_NAMES.contains(&name)
        || name
            .strip_prefix("whitelist:")
            .is_some_and(|t| !t.is_empty())
}

/// Stores a new list set; returns its version. Beside the set, `<prefix>:lists:v<N>:judged`
/// says that `lists publish` judged it (`checked`), or took a list cut by more than half
/// as meant (`forced`), and `<prefix>:lists:v<N>:base` against what: the digest of the
/// set in Redis it was judged against (`base`), or `files` (none was there). A gateway
/// takes a forced set as it comes, and a checked one when it runs its files (restarted:
/// QA 177 A) or when the set it runs is among the bases the set was judged against, link
/// by link ([`judged_from`]); any other set it judges against its own lists (written by
/// other means, or judged without the set running here: Redis lost it, or this gateway
/// was cut off meanwhile, QA 181, QA 184). A release before session 53 reads the set
/// alone; session 53's reads the mark and not the base.
pub async fn publish(
    redis: &Redis,
    lists: &[(String, String)],
    forced: bool,
    base: Option<u64>,
    expected: Option<&str>,
) -> Result<Result<u64, String>, RedisFailure> {
    let seq = redis.key("lists:seq");
    let version: u64 = redis
        .run(|mut c| async move { redis::cmd("INCR").arg(&seq).query_async(&mut c).await })
        .await?;
    let set = redis.key(&format!("lists:v{version}"));
    let tag = tag_of(lists);
    // The set first, under its own version, which no gateway reads before `current`
    // names it; then the few bytes that make it current, in a script that checks
    // `current` is still what the set was judged on. (The whole write in one script
    // held Redis three to four times longer than this, QA 188: the counter syncs of
    // every gateway timed out meanwhile.)
    let mut pipe = redis::pipe();
    pipe.atomic();
    pipe.cmd("DEL").arg(&set).ignore();
    for (name, text) in lists {
        pipe.cmd("HSET").arg(&set).arg(name).arg(text).ignore();
    }
    redis
        .run_bulk(|mut c| async move { pipe.query_async::<()>(&mut c).await })
        .await?;
    let now = format!("{version}:{tag:016x}");
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(MAKE_CURRENT)
        .arg(3)
        .arg(redis.key("lists:current"))
        .arg(format!("{set}:judged"))
        .arg(format!("{set}:base"))
        .arg(expected.unwrap_or_default())
        .arg(&now)
        .arg(judged_mark(forced, tag))
        .arg(base.map_or_else(|| "files".to_string(), |b| format!("{b:016x}")));
    let moved: Result<Option<String>, RedisFailure> = redis
        .run(|mut c| async move { cmd.query_async(&mut c).await })
        .await;
    let moved = match moved {
        Ok(m) => m,
        // The answer lost: the script may have run (QA 188: "broken pipe" said of a
        // set every gateway took). What `current` says now tells.
        Err(e) => match current_raw(redis).await {
            Ok(Some(c)) if c == now => None,
            _ => {
                drop_unused(redis, &set).await;
                return Err(e);
            }
        },
    };
    if let Some(found) = moved {
        drop_unused(redis, &set).await;
        return Ok(Err(found));
    }
    trim(redis, version).await;
    Ok(Ok(version))
}

/// A set this publication wrote and did not make current: it alone goes. (Counted from
/// a version that lost, the clean-up below deleted the set `current` names: QA 190.)
async fn drop_unused(redis: &Redis, set: &str) {
    let _ = redis
        .run(|mut c| async move { redis::cmd("DEL").arg(set).query_async::<()>(&mut c).await })
        .await;
}

/// Deletes what a publication that made `version` current leaves behind: the sets of
/// every version from three back to [`MARKS_KEPT`] back (not only the one three back:
/// a version that lost a race or broke off may have left its own, QA 188), and the
/// marks and bases past [`MARKS_KEPT`]. Best effort: a leftover is deleted by the next
/// publication.
async fn trim(redis: &Redis, version: u64) {
    let mut old: Vec<String> = vec![];
    let sets_from = version.saturating_sub(MARKS_KEPT).max(1);
    for w in sets_from..version.saturating_sub(2) {
        old.push(redis.key(&format!("lists:v{w}")));
    }
    for w in version.saturating_sub(2 * MARKS_KEPT).max(1)..sets_from {
        old.push(redis.key(&format!("lists:v{w}:judged")));
        old.push(redis.key(&format!("lists:v{w}:base")));
    }
    if old.is_empty() {
        return;
    }
    let _ = redis
        .run(|mut c| async move { redis::cmd("DEL").arg(&old).query_async::<()>(&mut c).await })
        .await;
}

/// How many versions back the marks and bases stay (the sets: three).
const MARKS_KEPT: u64 = 100;

/// What makes a written set current, only while `current` is what the set was judged
/// on (`ARGV[1]`, empty for none): two publishers at once would else put a set judged
/// against a stale one on top of the other's (QA 186). Returns nil when done, else the
/// `current` found.
const MAKE_CURRENT: &str = r#"
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[1] then return cur end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SET', KEYS[3], ARGV[4])
redis.call('SET', KEYS[1], ARGV[2])
return false
"#;

/// `<prefix>:lists:current` as written (`None`: none), for [`publish`]'s `expected`.
pub async fn current_raw(redis: &Redis) -> Result<Option<String>, RedisFailure> {
    let k = redis.key("lists:current");
    redis
        .run(|mut c| async move { redis::cmd("GET").arg(&k).query_async(&mut c).await })
        .await
}

/// `policy` with a published set in force; errors name `redis:lists/v<N>/<name>:<line>`.
pub fn apply(
    policy: &crate::policy::Policy,
    version: u64,
    lists: &ListSet,
) -> Result<crate::policy::Policy, crate::load_error::LoadError> {
    policy.with_lists(&format!("redis:lists/v{version}"), lists)
}

/// The publication `current` points at, if any (a value that reads as none is none).
pub async fn current(redis: &Redis) -> Result<Option<Published>, RedisFailure> {
    let k = redis.key("lists:current");
    let v: Option<String> = redis
        .run(|mut c| async move { redis::cmd("GET").arg(&k).query_async(&mut c).await })
        .await?;
    Ok(v.as_deref().and_then(Published::parse))
}

/// The lists of one version (name, text), sorted by name.
pub async fn fetch(redis: &Redis, version: u64) -> Result<Vec<(String, String)>, RedisFailure> {
    let k = redis.key(&format!("lists:v{version}"));
    let mut v: Vec<(String, String)> = redis
        .run_bulk(|mut c| async move { redis::cmd("HGETALL").arg(&k).query_async(&mut c).await })
        .await?;
    v.sort();
    Ok(v)
}

/// The mark `lists publish` leaves beside a set it judged: how, and the digest of the
/// set's content, so that a set edited in place afterwards is no longer taken for the
/// one judged (QA 178 A3).
fn judged_mark(forced: bool, tag: u64) -> String {
    format!("{}:{tag:016x}", if forced { "forced" } else { "checked" })
}

/// The mark beside version `version`, if any (see [`publish`]).
pub async fn mark_of(redis: &Redis, version: u64) -> Result<Option<String>, RedisFailure> {
    let k = redis.key(&format!("lists:v{version}:judged"));
    redis
        .run(|mut c| async move { redis::cmd("GET").arg(&k).query_async(&mut c).await })
        .await
}

/// Whether `mark` is the one `lists publish` left beside `lists`, as they are now.
pub fn mark_matches(mark: &str, lists: &ListSet) -> bool {
    judgement_in(mark, lists).is_some()
}

/// How `lists publish` judged a set ([`publish`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// Against the sets in Redis before it (or the policy's files when there were none).
    Checked,
    /// A cut taken as meant (`--force`).
    Forced,
}

fn judgement_in(mark: &str, lists: &ListSet) -> Option<Judgement> {
    let tag = tag_of(lists);
    if mark == judged_mark(false, tag) {
        Some(Judgement::Checked)
    } else if mark == judged_mark(true, tag) {
        Some(Judgement::Forced)
    } else {
        None
    }
}

/// What a gateway makes of a set, given how it was judged and what the gateway runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Judged by `lists publish` against the sets the fleet ran, or forced: taken as it
    /// comes, whatever this gateway ran before (restarted on its files, a version
    /// behind: QA 177 A).
    Taken,
    /// Written by other means, or edited since it was judged: judged here against the
    /// running lists.
    Unjudged,
    /// Checked by `lists publish`, but not against the set running here nor against
    /// one judged against it ([`judged_from`]): Redis lost that set (flushed, restored
    /// from an older snapshot) and the publisher had only the policy's files to judge
    /// against, or this gateway was cut off while the fleet moved on. Judged here too
    /// (QA 181: a feed's file cut short and published after a Redis restart went to
    /// every gateway unjudged; QA 184: a gateway cut off meanwhile took it).
    CheckedWithoutRunning,
}

impl Trust {
    /// `from_running`: the set was judged from the set this gateway runs, or it runs its
    /// files (no set).
    pub fn of(judged: Option<Judgement>, from_running: bool) -> Trust {
        match judged {
            Some(Judgement::Forced) => Trust::Taken,
            Some(Judgement::Checked) if from_running => Trust::Taken,
            Some(Judgement::Checked) => Trust::CheckedWithoutRunning,
            None => Trust::Unjudged,
        }
    }
}

/// The digest of the set version `version` was judged against, from its base mark
/// (`None`: the policy's files, or no base written: a publisher before the mark).
pub async fn base_of(redis: &Redis, version: u64) -> Result<Option<u64>, RedisFailure> {
    let k = redis.key(&format!("lists:v{version}:base"));
    let v: Option<String> = redis
        .run(|mut c| async move { redis::cmd("GET").arg(&k).query_async(&mut c).await })
        .await?;
    Ok(v.and_then(|s| u64::from_str_radix(s.trim(), 16).ok()))
}

/// The digest a judged mark says its set had.
fn marked_digest(mark: &str) -> Option<u64> {
    let (_, d) = mark.split_once(':')?;
    u64::from_str_radix(d.trim(), 16).ok()
}

/// How many bases back a gateway follows a set's judging for the set it runs.
const LINEAGE: usize = 32;

/// Whether version `version` was judged against the set whose digest is `running`, or
/// against a set that was judged against it, and so on ([`LINEAGE`] links, over the
/// versions Redis still holds): then the publisher judged every step from what this
/// gateway runs to the new set.
pub async fn judged_from(redis: &Redis, version: u64, running: u64) -> Result<bool, RedisFailure> {
    let mut v = version;
    for _ in 0..LINEAGE {
        let Some(base) = base_of(redis, v).await? else {
            return Ok(false);
        };
        if base == running {
            return Ok(true);
        }
        // The version whose mark names that digest, below this one.
        let mut below = None;
        for w in (v.saturating_sub(LINEAGE as u64).max(1)..v).rev() {
            if mark_of(redis, w)
                .await?
                .is_some_and(|m| marked_digest(&m) == Some(base))
            {
                below = Some(w);
                break;
            }
        }
        match below {
            Some(w) => v = w,
            None => return Ok(false),
        }
    }
    Ok(false)
}

/// How `lists publish` judged version `version` as it now holds `lists`; `None` for a
/// set written by other means, or edited since (see [`publish`]).
pub async fn judged(
    redis: &Redis,
    version: u64,
    lists: &ListSet,
) -> Result<Option<Judgement>, RedisFailure> {
    Ok(mark_of(redis, version)
        .await?
        .and_then(|m| judgement_in(&m, lists)))
}

/// What a gateway running `running` says of a set before taking it: the lists the set
/// cuts by more than half (refused when no `lists publish` judged the set), and the
/// warnings it would newly give (a list cut by more than a tenth; a `+86*` that takes
/// in a whole country, ...). The publisher asks the same of the sets in Redis
/// ([`cuts_and_warnings`]), so that a feed's cut file is refused before any gateway
/// sees it (QA 175 F1, F2).
pub struct Judged {
    pub policy: crate::policy::Policy,
    pub shrunk: Vec<String>,
    pub warnings: Vec<String>,
}

/// The set applied on top of `running` (a list it leaves out is judged when the files
/// are read again, as a reload is).
pub fn judge(
    running: &crate::policy::Policy,
    version: u64,
    lists: &ListSet,
) -> Result<Judged, crate::load_error::LoadError> {
    let policy = apply(running, version, lists)?;
    let (shrunk, warnings) = cuts_and_warnings(running, &policy);
    Ok(Judged {
        policy,
        shrunk,
        warnings,
    })
}

/// What `running` says of `policy`, a set applied: the lists cut by more than half, and
/// the warnings newly given ([`Judged`]). The publisher asks it of each set it judges
/// against, the new set applied to the policy's files once, so that a list the set
/// leaves out is judged going back to its file (QA 177 B).
pub fn cuts_and_warnings(
    running: &crate::policy::Policy,
    policy: &crate::policy::Policy,
) -> (Vec<String>, Vec<String>) {
    use crate::policy::{diff, lint};
    let before = lint::warnings(running);
    let mut warnings: Vec<String> = lint::warnings(policy)
        .into_iter()
        .filter(|w| !before.contains(w))
        .collect();
    warnings.extend(diff::cut_warning(running, policy));
    (diff::shrunk_lists(running, policy), warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publications_are_told_by_version_and_content() {
        assert_eq!(
            Published::parse("3"),
            Some(Published { version: 3, tag: 0 })
        );
        assert_eq!(
            Published::parse("3:00000000000000ff"),
            Some(Published {
                version: 3,
                tag: 255
            })
        );
        assert_eq!(Published::parse("x"), None);
        assert_eq!(Published::parse("3:zz"), None);
        let a = vec![("blacklist".to_string(), "+8613800000001\n".to_string())];
        let b = vec![("blacklist".to_string(), "+8613800000002\n".to_string())];
        assert_ne!(tag_of(&a), tag_of(&b));
        let ab = vec![a[0].clone(), ("exempt".to_string(), String::new())];
        let ba = vec![ab[1].clone(), ab[0].clone()];
        assert_eq!(tag_of(&ab), tag_of(&ba));
    }

    /// A published set is part of what the running policy is: its fingerprint moves
    /// with the set's content, and the same set on the same files gives the same one
    /// on every gateway.
    #[test]
    fn a_published_set_changes_the_policy_fingerprint() {
        let p = crate::policy::Policy::builtin().unwrap();
        let a = vec![("blacklist".to_string(), "+8613800000001\n".to_string())];
        let b = vec![("blacklist".to_string(), "+8613800000002\n".to_string())];
        let pa = apply(&p, 1, &a).unwrap();
        let pb = apply(&p, 1, &b).unwrap();
        assert_ne!(pa.fingerprint(), p.fingerprint());
        assert_ne!(pa.fingerprint(), pb.fingerprint());
        // The same set again, on top of the one running (as a gateway applies the next
        // version): the same policy (QA 80: it changed).
        assert_eq!(apply(&pb, 2, &a).unwrap().fingerprint(), pa.fingerprint());
        assert_eq!(
            apply(&crate::policy::Policy::builtin().unwrap(), 1, &a)
                .unwrap()
                .fingerprint(),
            pa.fingerprint()
        );
        assert_eq!(
            crate::policy::Policy::builtin().unwrap().fingerprint(),
            p.fingerprint()
        );
    }
}
