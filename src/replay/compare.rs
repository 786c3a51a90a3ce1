//! One capture through two policies at once: the calls a policy change would treat
//! otherwise, before it goes live (`sipfence replay --config new.toml --baseline
//! running.toml capture.pcap`).
//!
//! Both replayers see every packet in turn, so memory stays that of two replays
//! (no table of every call's verdict), and each packet's decisions are paired by
//! Call-ID as they come out.

use std::path::Path;

use super::Replayer;
use super::capture::{self, End};
use crate::record::Record;

/// What changed between the baseline and the new policy.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// Initial INVITEs judged by both policies.
    pub calls: u64,
    /// Refused (rejected or dropped) now, let through before.
    pub newly_blocked: u64,
    /// Let through now, refused before.
    pub newly_allowed: u64,
    /// Another verdict, code or rule, blocked or let through by both (a 403 that becomes
    /// a 608, a label added, a rewrite).
    pub otherwise: u64,
    /// Decided by one policy only (a trunk that one of them does not have may make a
    /// message its own output, which is not judged).
    pub one_sided: u64,
}

impl Comparison {
    pub fn changed(&self) -> u64 {
        self.newly_blocked + self.newly_allowed + self.otherwise
    }
}

fn blocked(r: &Record) -> bool {
    matches!(r.verdict, "reject" | "drop")
}

/// Replays `path` through `new` and `baseline`; calls `on_change(before, after)` for
/// every call whose verdict, code or rule differs.
pub fn file(
    new: &mut Replayer<'_>,
    baseline: &mut Replayer<'_>,
    path: &Path,
    cmp: &mut Comparison,
    on_change: &mut dyn FnMut(&Record, &Record),
) -> Result<End, String> {
    let (mut after, mut before): (Vec<Record>, Vec<Record>) = (Vec::new(), Vec::new());
    let end = capture::read(path, |p| {
        after.clear();
        before.clear();
        new.summary.packets += 1;
        new.packet(p, false, &mut |rec| {
            if rec.kind == "call" {
                after.push(rec)
            }
        });
        baseline.summary.packets += 1;
        baseline.packet(p, false, &mut |rec| {
            if rec.kind == "call" {
                before.push(rec)
            }
        });
        for a in after.drain(..) {
            let Some(i) = before.iter().position(|b| b.call_id == a.call_id) else {
                cmp.one_sided += 1;
                continue;
            };
            let b = before.swap_remove(i);
            cmp.calls += 1;
            if (a.verdict, a.code, a.rule) == (b.verdict, b.code, b.rule) {
                continue;
            }
            match (blocked(&b), blocked(&a)) {
                (false, true) => cmp.newly_blocked += 1,
                (true, false) => cmp.newly_allowed += 1,
                _ => cmp.otherwise += 1,
            }
            on_change(&b, &a);
        }
        cmp.one_sided += before.len() as u64;
    })?;
    Ok(end)
}
