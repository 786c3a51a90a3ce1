//! Command-line shells around the core: `check`, `explain` and `trace` (here), `run` (the
//! proxy), `replay` (captures). Each is thin: load, call the core, print.

use std::path::{Path, PathBuf};

use crate::load_error::LoadError;
use crate::policy::Policy;

pub mod explain;
pub mod lists;
pub mod number;
pub mod trace;

/// Loads `--config FILE`, or the built-in example policy when none is given.
pub fn load_policy(config: Option<&Path>) -> Result<Policy, LoadError> {
    match config {
        Some(p) => Policy::load(p),
        None => Policy::builtin(),
    }
}

/// `--trunk NAME` as a trunk index; an unknown name is refused with the names there
/// are (exit status 2, a usage error).
pub fn trunk_arg(policy: &Policy, name: &str) -> Result<usize, i32> {
    policy.trunk_by_name(name).ok_or_else(|| {
        eprintln!(
            "sipfence: no trunk named '{name}' (have: {})",
            policy
                .trunks
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        2
    })
}

pub fn check(config: Option<PathBuf>, against: Option<PathBuf>) -> i32 {
    let p = match load_policy(config.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sipfence: config refused: {e}");
            return 1;
        }
    };
    print!("{}", p.summary());
    // Loads, but some whitelist entries can never place a call: said, not refused (a
    // feed may race the contract's paperwork; the operator decides).
    for w in crate::policy::lint::warnings(&p) {
        println!("warning: {w}");
    }
    if let Some(old) = against {
        let o = match Policy::load(&old) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("sipfence: --against policy refused: {e}");
                return 1;
            }
        };
        let mut c = crate::policy::diff::changes(&o, &p);
        // The routing table's answer on this host, as a reload here would find it.
        c.restart
            .extend(crate::proxy::renamed(&crate::proxy::wildcard_names(&o), &p));
        println!("changes against {}:", old.display());
        if c.is_empty() {
            println!("  none");
        }
        for a in &c.applied {
            println!("  reload applies: {a}");
        }
        for r in &c.restart {
            println!("  needs a restart (read at start only): {r}");
        }
        // What the reload would refuse (QA 119 N4: check said ok to a cut list), or
        // warn of (QA 155).
        if let Some(w) = crate::policy::diff::cut_warning(&o, &p) {
            println!("warning: {w}");
        }
        let shrunk = crate::policy::diff::shrunk_lists(&o, &p);
        if !shrunk.is_empty() {
            println!(
                "a reload refuses it: {} lost more than half (POST /reload?force=1 takes it, or a restart)",
                shrunk.join(", ")
            );
            return 1;
        }
    }
    println!("ok");
    0
}

/// The proxy's steady time in Unix milliseconds: the wall clock as it read at the first
/// call, moved on by the monotonic clock since. Tables, windows and expiries run on
/// it ([`crate::decide::Context::now_ms`]), so that a step of the wall clock (NTP at
/// boot, `date -s`, a VM's clock put right) neither ends the calls up nor holds rate
/// windows and lockouts for the length of the step (QA 192); the calendar (contracted
/// hours, nonces, records) reads [`now_ms`].
pub fn steady_ms() -> u64 {
    static ANCHOR: std::sync::OnceLock<(std::time::Instant, u64)> = std::sync::OnceLock::new();
    let (at, wall) = *ANCHOR.get_or_init(|| (std::time::Instant::now(), now_ms()));
    wall + at.elapsed().as_millis() as u64
}

/// How far the wall clock has moved from the steady one since the process started
/// (its steps, and any slewing), in milliseconds.
pub fn clock_step_ms() -> i64 {
    let steady = steady_ms();
    now_ms() as i64 - steady as i64
}

/// Wall-clock time in Unix milliseconds: read here, in the shell, never in the core.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
