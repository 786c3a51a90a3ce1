//! Every saved fuzz input (crashes found and fixed, in fuzz/regressions/<target>/) and
//! every seed runs through the same checks the fuzz targets run, on every `cargo test`.

mod common;

use sipfence::fuzzing::TARGETS;

#[test]
fn saved_inputs_pass_every_check() {
    let root = common::project_dir();
    let mut n = 0;
    for (name, check) in TARGETS {
        let dir = root.join("fuzz/regressions").join(name);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let data = std::fs::read(e.path()).unwrap();
            check(&data);
            n += 1;
        }
    }
    // The project's own SIP and capture files are seeds of every target.
    for dir in [
        "testdata/sip",
        "testdata/pcap",
        "deploy",
        "deploy/examples",
        "deploy/examples/lists",
    ] {
        for e in std::fs::read_dir(root.join(dir))
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_file())
        {
            let data = std::fs::read(e.path()).unwrap();
            for (_, check) in TARGETS {
                check(&data);
            }
            n += 1;
        }
    }
    if let Some(shared) = common::shared_dir() {
        for e in std::fs::read_dir(shared.join("corpus/rfc4475"))
            .unwrap()
            .flatten()
        {
            let data = std::fs::read(e.path()).unwrap();
            for (_, check) in TARGETS {
                check(&data);
            }
            n += 1;
        }
    }
    assert!(n > 20, "{n} inputs");
}
