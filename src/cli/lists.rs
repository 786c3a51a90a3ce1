//! `sipfence lists publish`: one list version for every gateway (see
//! [`crate::cluster::lists`]). Every file is checked with the same loader the gateways
//! use before anything is written, so a bad line is refused here with its file and line.

use std::path::PathBuf;

use crate::cluster::{Redis, lists};
use crate::policy::lists::NumberSetBuilder;

pub struct PublishArgs {
    pub config: Option<PathBuf>,
    /// Overrides the policy's `[redis] url`.
    pub redis: Option<String>,
    /// Overrides the policy's `[redis] prefix`.
    pub prefix: Option<String>,
    /// `NAME=FILE` pairs.
    pub lists: Vec<String>,
    /// Publish lists cut by more than half against the set in Redis too.
    pub force: bool,
}

pub fn publish(a: &PublishArgs) -> i32 {
    let policy = match super::load_policy(a.config.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sipfence: config refused: {e}");
            return 1;
        }
    };
    let conf = &policy.redis;
    let url = a.redis.clone().unwrap_or_else(|| conf.url.clone());
    if url.is_empty() {
        eprintln!("sipfence: no Redis: give --redis URL or [redis] url in the policy");
        return 2;
    }
    let mut set = Vec::new();
    for item in &a.lists {
        let Some((name, file)) = item.split_once('=') else {
            eprintln!(
                "sipfence: '{item}': expected NAME=FILE (e.g. blacklist=/etc/sipfence/blacklist.txt)"
            );
            return 2;
        };
        if !lists::valid_name(name) {
            eprintln!(
                "sipfence: '{name}': lists are {} and whitelist:<trunk>",
                crate::policy::LIST_NAMES.join(", ")
            );
            return 2;
        }
        // Every gateway would refuse the whole version for it: refused here, before
        // anything is published, as the gateways judge it (given their policy).
        if let Some(t) = name.strip_prefix("whitelist:")
            && !policy.source.starts_with("builtin:")
            && policy.whitelist_of(name).is_none()
        {
            eprintln!(
                "sipfence: '{name}': no trunk '{t}' with a whitelist in {} (the gateways would refuse this version)",
                policy.source
            );
            return 2;
        }
        // Read as `check` and a reload read it (QA 203: a GBK comment was refused here
        // with no line, and loaded there).
        let text = match crate::policy::lists::read_list_text(std::path::Path::new(file), file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("sipfence: refused, nothing published: {e}");
                return 1;
            }
        };
        let mut b = NumberSetBuilder::for_plan(&policy.plan);
        if let Err(e) = b.add_text(&text, file) {
            eprintln!("sipfence: refused, nothing published: {e}");
            return 1;
        }
        let n = b.build().len();
        // An empty list goes to every gateway at once; the cut guard spares lists under
        // 100 entries (QA 203: a blacklist of 2 published empty with no word).
        if n == 0 && !a.force {
            eprintln!(
                "sipfence: refused, nothing published: {name}={file} holds no entry (an export that failed, or a file cut short?); to publish it empty: --force"
            );
            return 1;
        }
        set.push((name.to_string(), text, n));
    }
    if set.is_empty() {
        eprintln!("sipfence: nothing to publish: give NAME=FILE pairs");
        return 2;
    }
    // Gateways read only their own prefix: one published elsewhere is never seen, so
    // the prefix is named in the answer, and a default one said to be the default.
    let prefix = a.prefix.as_deref().unwrap_or(&conf.prefix);
    if a.prefix.is_none() && a.config.is_none() {
        eprintln!(
            "sipfence: no --config or --prefix: publishing under the default prefix \"{prefix}\" (gateways with another [redis] prefix will not see it)"
        );
    }
    let redis = match Redis::open(
        &url,
        prefix,
        conf.timeout_ms.max(2000),
        conf.list_timeout_ms,
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sipfence: {e}");
            return 1;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sipfence: runtime: {e}");
            return 1;
        }
    };
    let payload: Vec<(String, String)> =
        set.iter().map(|(n, t, _)| (n.clone(), t.clone())).collect();
    let (base, judged_on) = match judged_or_refused(a, &policy, &rt, &redis, &url, &payload) {
        Ok(j) => j,
        Err(code) => return code,
    };
    match rt.block_on(lists::publish(
        &redis,
        &payload,
        a.force,
        base,
        judged_on.as_deref(),
    )) {
        Ok(Err(now)) => {
            eprintln!(
                "sipfence: refused, nothing published: another set was published while this one was judged (current is now {now}); run the same command again to judge it against that one"
            );
            1
        }
        Ok(Ok(v)) => {
            let names: Vec<String> = set
                .iter()
                .map(|(n, _, c)| {
                    format!("{n} ({})", crate::policy::counted(*c, "entry", "entries"))
                })
                .collect();
            println!(
                "published lists v{v} to {} (prefix {prefix}): {}",
                crate::cluster::url_for_people(&url),
                names.join(", ")
            );
            0
        }
        Err(e) => {
            eprintln!(
                "sipfence: cannot publish to {}: {e}",
                crate::cluster::url_for_people(&url)
            );
            1
        }
    }
}

/// Judges `payload` as the gateways will run it, whole (a list it leaves out goes back
/// to its file at every gateway: QA 177 B), against the sets in Redis ([`baselines`]:
/// the newest a `lists publish` judged, or the policy's files when there is none, and
/// the current one when it is another): a list cut by more than
/// half is refused here, before any gateway sees it, unless `--force`, and what `check`
/// would newly warn of is said (QA 175). The gateways take a set judged so as it comes.
/// Without --config the gateways' files are not known: judged against none (and their
/// whitelists left to them), not the built-in example's (QA 177 C). `Ok`: the digest of
/// the set in Redis it was judged against (`None`: none, the policy's files), and
/// `<prefix>:lists:current` as it was read before judging, which the write checks is
/// still so; `Err`: the exit status, the reason said.
fn judged_or_refused(
    a: &PublishArgs,
    policy: &crate::policy::Policy,
    rt: &tokio::runtime::Runtime,
    redis: &Redis,
    url: &str,
    payload: &[(String, String)],
) -> Result<(Option<u64>, Option<String>), i32> {
    let known = a.config.is_some();
    let base = if known {
        policy.clone()
    } else {
        match crate::policy::Policy::from_str("", "(no --config)", std::path::Path::new(".")) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("sipfence: {e}");
                return Err(1);
            }
        }
    };
    let judgeable = |set: &[(String, String)]| -> lists::ListSet {
        set.iter()
            .filter(|(n, _)| known || !n.starts_with("whitelist:"))
            .cloned()
            .collect()
    };
    let read = async {
        Ok::<_, crate::cluster::RedisFailure>((
            lists::current_raw(redis).await?,
            baselines(redis).await?,
        ))
    };
    let (judged_on, (judged_set, current)) = match rt.block_on(read) {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "sipfence: cannot read {}: {e}",
                crate::cluster::url_for_people(url)
            );
            return Err(1);
        }
    };
    let current_names: Vec<String> = judged_set
        .iter()
        .chain(current.iter())
        .flat_map(|(_, l)| l.iter().map(|(n, _)| n.clone()))
        .collect();
    let as_policy = |(v, l): &(u64, lists::ListSet)| match lists::apply(&base, *v, &judgeable(l)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "sipfence: warning: the set in redis v{v} does not load with this policy ({e}): judged against the policy's files"
            );
            base.clone()
        }
    };
    // The newest set a publisher judged, else the policy's files (Redis holds none: only
    // sets written by other means, or by a release before the mark); and the current
    // one when it is another.
    if current.is_none() && judged_set.is_none() {
        // A first publish, or Redis lost its sets (the runbook's "publish again"): what
        // the gateways run is not known here (QA 181).
        eprintln!(
            "sipfence: warning: no published set in redis to judge this one against (a first publish, or redis lost its sets): judged against {}; a gateway still running a set redis lost judges it against that set, and refuses a list cut by more than half unless --force",
            if known {
                "the policy's list files"
            } else {
                "no lists (no --config)"
            }
        );
    }
    let mut against = vec![judged_set.as_ref().map_or_else(|| base.clone(), as_policy)];
    if let Some(c) = &current {
        against.push(as_policy(c));
    }
    // Without --config a whitelist the running set holds and this one leaves out goes
    // back to a file no one here can see: refused unless forced (QA 178 A1: a blacklist
    // published alone emptied a published whitelist everywhere).
    if !known && !a.force {
        let left: Vec<String> = current_names
            .iter()
            .filter(|n| n.starts_with("whitelist:") && !payload.iter().any(|(p, _)| p == *n))
            .cloned()
            .collect();
        if !left.is_empty() {
            eprintln!(
                "sipfence: refused, nothing published: the set running leaves {} to this one, which leaves it out: each gateway would go back to its file, which cannot be judged without --config (give the gateways' policy, or publish the whitelist too, or --force)",
                left.join(", ")
            );
            return Err(1);
        }
    }
    // The new set built once, judged against each.
    let new = match lists::apply(&base, 0, &judgeable(payload)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sipfence: refused, nothing published: {e}");
            return Err(1);
        }
    };
    let (mut shrunk, mut warnings) = (Vec::<String>::new(), Vec::<String>::new());
    for running in &against {
        let (s, w) = lists::cuts_and_warnings(running, &new);
        for (from, into) in [(s, &mut shrunk), (w, &mut warnings)] {
            for x in from {
                if !into.contains(&x) {
                    into.push(x);
                }
            }
        }
    }
    let leaves_out = current_names
        .iter()
        .any(|n| !payload.iter().any(|(p, _)| p == n));
    // Named by their files, where they are mended (QA 177 E).
    let located = |w: &str| {
        a.lists
            .iter()
            .fold(w.to_string(), |w, item| match item.split_once('=') {
                Some((name, file)) => {
                    w.replace(&format!("redis:lists/v0/{name}:"), &format!("{file}:"))
                }
                None => w,
            })
    };
    let refused = !shrunk.is_empty() && !a.force;
    for w in &warnings {
        // A refusal says more than the tenth's warning.
        if !(refused && w.contains("lost more than a tenth")) {
            eprintln!("sipfence: warning: {}", located(w));
        }
    }
    if !shrunk.is_empty() {
        if refused {
            eprintln!(
                "sipfence: refused, nothing published: {} lost more than half against the sets in redis (the newest a `lists publish` judged, and the current one){} (a feed's file cut short?); to publish it as it is: --force",
                shrunk.join(", "),
                match (leaves_out, known) {
                    (false, _) => "",
                    (true, true) => ", a list the set leaves out going back to its file",
                    (true, false) => {
                        " (without --config, a list the set leaves out is judged going back to no file: give the gateways' policy)"
                    }
                }
            );
            return Err(1);
        }
        eprintln!(
            "sipfence: --force: {} published as meant",
            shrunk.join(", ")
        );
    }
    // The same content again (a feed published on a timer) makes no link of its own:
    // its base is the base of the set it repeats, so that a gateway cut off meanwhile
    // follows the lineage past any number of repeats (QA 188).
    let base = match judged_set.map(|(v, l)| (v, lists::tag_of(&l))) {
        Some((v, tag)) if tag == lists::tag_of(payload) => {
            rt.block_on(lists::base_of(redis, v)).unwrap_or(None)
        }
        Some((_, tag)) => Some(tag),
        None => None,
    };
    Ok((base, judged_on))
}

/// The sets a new one is judged against: the newest set a `lists publish` judged whose
/// mark still matches its content (looked for over the last [`LOOK_BACK`] versions,
/// however many sets written by other means came after it: QA 179 N1, N2), and the set
/// `current` names when it is another (one written by other means that the gateways
/// took, not being a cut: QA 179 N3). A cut against either is refused.
async fn baselines(
    redis: &Redis,
) -> Result<
    (Option<(u64, lists::ListSet)>, Option<(u64, lists::ListSet)>),
    crate::cluster::RedisFailure,
> {
    let Some(p) = lists::current(redis).await? else {
        return Ok((None, None));
    };
    let judged = |mark: Option<String>, set: &lists::ListSet| {
        !set.is_empty() && mark.is_some_and(|m| lists::mark_matches(&m, set))
    };
    let newest = lists::fetch(redis, p.version).await?;
    if judged(lists::mark_of(redis, p.version).await?, &newest) {
        return Ok((Some((p.version, newest)), None));
    }
    for v in (p.version.saturating_sub(LOOK_BACK).max(1)..p.version).rev() {
        let Some(mark) = lists::mark_of(redis, v).await? else {
            continue;
        };
        let set = lists::fetch(redis, v).await?;
        if judged(Some(mark), &set) {
            return Ok((Some((v, set)), Some((p.version, newest))));
        }
    }
    Ok((None, Some((p.version, newest))))
}

/// How many versions back the publisher looks for the newest judged set.
const LOOK_BACK: u64 = 100;
