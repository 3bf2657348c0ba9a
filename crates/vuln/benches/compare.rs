//! How fast each ecosystem compares two versions (parse of both included, as the matcher does
//! it for every inventory entry against every advisory bound).

use divan::black_box;
use vuln::{Ecosystem, compare};

fn main() {
    divan::main();
}

const PAIRS: &[(Ecosystem, &str, &str)] = &[
    (Ecosystem::Dpkg, "2.36-9+deb12u2", "2.36-9+deb12u3"),
    (Ecosystem::Rpm, "1:2.28-225.el9_3.5", "1:2.28-225.el9_3.10"),
    (Ecosystem::Apk, "3.1.4-r5", "3.1.4_rc1-r0"),
    (Ecosystem::PyPI, "2.31.0", "2.32.0rc1.post1.dev2"),
    (Ecosystem::Npm, "4.17.20", "4.17.21-beta.1"),
    (
        Ecosystem::Go,
        "v0.0.0-20220722155237-a158d28d115b",
        "0.17.0",
    ),
    (Ecosystem::Cargo, "1.38.0", "1.38.1-alpha.2"),
    (Ecosystem::Maven, "2.13.4.2", "2.14.0-rc1"),
];

#[divan::bench(args = PAIRS.iter().map(|p| p.0))]
fn compare_pair(eco: Ecosystem) {
    let Some(&(_, a, b)) = PAIRS.iter().find(|p| p.0 == eco) else {
        return;
    };
    black_box(compare(black_box(eco), black_box(a), black_box(b))).ok();
}

/// One installed version against one advisory range (CVE-2023-4911's Debian 12 range).
#[divan::bench]
fn affects_dpkg_range(bencher: divan::Bencher) {
    use vuln::{Event, Range, RangeKind};
    let range = Range::new(
        Ecosystem::Dpkg,
        RangeKind::Ecosystem,
        vec![
            Event::Introduced("0".into()),
            Event::Fixed("2.36-9+deb12u3".into()),
        ],
    )
    .expect("range");
    bencher.bench(|| black_box(&range).affects(black_box("2.36-9+deb12u2")).ok());
}
