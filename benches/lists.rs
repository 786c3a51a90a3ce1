//! A national blacklist of 5 million numbers and segments: load time (printed) and
//! lookup time (criterion), hit and miss.
//!
//!     cargo bench --bench lists

use criterion::{Criterion, criterion_group, criterion_main};
use sipfence::numbering::normalise;
use sipfence::policy::lists::NumberSetBuilder;
use std::hint::black_box;
use std::io::Write;
use std::time::Instant;

const N: u64 = 5_000_000;

fn bench(c: &mut Criterion) {
    // 4.9M mobile numbers in national form, 100k segments of 8 digits: a file as an
    // operator would publish it.
    let dir = std::env::temp_dir().join("sipfence-bench-lists");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("blacklist-5m.txt");
    if !path.exists() {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..N {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let prefix = ["138", "139", "186", "189", "150", "177", "198"][(x % 7) as usize];
            if i % 49 == 0 {
                writeln!(f, "{prefix}{:05}*", (x >> 8) % 100_000).unwrap();
            } else {
                writeln!(f, "{prefix}{:08}", (x >> 8) % 100_000_000).unwrap();
            }
        }
    }
    let t = Instant::now();
    let mut b = NumberSetBuilder::new(b"86");
    b.add_file(&path).unwrap();
    let set = b.build();
    let load = t.elapsed();
    println!(
        "blacklist: {} numbers + {} segments loaded in {:.2} s, {} MiB heap, {:.1} bytes/entry",
        set.exact_len(),
        set.segment_len(),
        load.as_secs_f64(),
        set.heap_bytes() >> 20,
        set.heap_bytes() as f64 / set.len() as f64
    );
    let hit = normalise(b"+8613800000000", b"86", None).unwrap();
    let miss = normalise(b"+8613312345678", b"86", None).unwrap();
    let mut g = c.benchmark_group("blacklist_5m");
    g.bench_function("lookup_miss", |bn| {
        bn.iter(|| black_box(set.lookup(black_box(&miss))))
    });
    g.bench_function("lookup_any", |bn| {
        bn.iter(|| black_box(set.lookup(black_box(&hit))))
    });
    // A different caller every time, as on a gateway: the set is far larger than the
    // caches, so this is the figure that counts (the two above stay cache-hot).
    let callers: Vec<_> = (0..65_536u64)
        .map(|i| {
            let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
            let d = format!("+86138{:08}", x % 100_000_000);
            normalise(d.as_bytes(), b"86", None).unwrap()
        })
        .collect();
    let mut k = 0usize;
    g.bench_function("lookup_random_callers", |bn| {
        bn.iter(|| {
            k = (k + 1) & 65_535;
            black_box(set.lookup(black_box(&callers[k])))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
