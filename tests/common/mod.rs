//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared` beside the project. Under CI it must exist (a missing corpus is a
/// failure, not a skip); elsewhere a test without it prints why and skips.
pub fn shared_dir() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared");
    if p.join("corpus").is_dir() {
        return Some(p);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!(
            "../shared/corpus is missing at {}: CI needs it",
            p.display()
        );
    }
    eprintln!("skipped: ../shared/corpus not found at {}", p.display());
    None
}

pub fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
