//! Names the build: the commit it was built from goes into `--version`, the start-up
//! line, `/healthz` and `sipfence_build_info`, so that an operator can tell two builds
//! of one version apart when upgrading and rolling back (QA 170: both said 0.1.0).
use std::path::Path;
use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SIPFENCE_COMMIT={commit}");
    // A new commit, a checkout: built again. Outside a git checkout (a source tarball),
    // only this file.
    println!("cargo:rerun-if-changed=build.rs");
    for p in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        if Path::new(p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}
