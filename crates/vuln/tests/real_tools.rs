//! Each ordering against the real implementation, over many generated and real version pairs:
//! dpkg (`dpkg --compare-versions`), rpm (`rpm.vercmp` in rpm's Lua), PEP 440 (Python's
//! `packaging.version`), npm (node-semver), Maven (`ComparableVersion` from maven-artifact) and
//! Cargo (the `semver` crate). Each test also checks that what this crate refuses, the tool
//! refuses (or warns about), and the other way round.
//!
//! A test skips, printing why, only when its tool is absent; `scripts/install-test-deps.sh`
//! installs all of them (Debian packages `rpm`, `python3-packaging`, `node-semver`,
//! `libmaven3-core-java`; dpkg is always there on Debian).

use std::cmp::Ordering;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use vuln::{cargo, dpkg, maven, npm, pep440, rpm};

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    /// 1 to `max` tokens from `xs`, concatenated.
    fn concat(&mut self, xs: &[&str], max: usize) -> String {
        let n = 1 + self.below(max);
        (0..n).map(|_| self.pick(xs)).collect()
    }
}

/// Runs `cmd` with `input` on stdin; returns stdout lines, panicking with stderr on failure.
fn run(cmd: &mut Command, input: &str) -> (Vec<String>, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn oracle");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("oracle output");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "oracle failed: {stderr}");
    writer.join().expect("writer").expect("write oracle input");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    (lines, stderr)
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

fn sign(o: Ordering) -> i32 {
    o as i32
}

fn parse_sign(s: &str) -> i32 {
    match s.trim() {
        "<" => -1,
        "=" => 0,
        ">" => 1,
        n => n
            .parse::<i64>()
            .map(|n| n.signum() as i32)
            .unwrap_or_else(|_| panic!("oracle said {n:?}")),
    }
}

/// Checks every pair's ordering against the oracle's answers; returns how many pairs.
fn check_pairs(
    name: &str,
    pairs: &[(String, String)],
    answers: &[String],
    ours: impl Fn(&str, &str) -> Ordering,
) -> usize {
    assert_eq!(
        pairs.len(),
        answers.len(),
        "{name}: oracle answered {} of {}",
        answers.len(),
        pairs.len()
    );
    let mut bad = Vec::new();
    for ((a, b), want) in pairs.iter().zip(answers) {
        let want = parse_sign(want);
        let got = sign(ours(a, b));
        if got != want {
            bad.push(format!("{a:?} vs {b:?}: ours {got}, {name} {want}"));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} pairs disagree with {name}:\n{}",
        bad.len(),
        pairs.len(),
        bad[..bad.len().min(40)].join("\n")
    );
    pairs.len()
}

/// Random pairs over `pool`, plus each element against a mutation of itself.
fn pairs_from(
    rng: &mut Rng,
    pool: &[String],
    n: usize,
    mutate: impl Fn(&mut Rng, &str) -> String,
) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(n * 2);
    for _ in 0..n {
        let a = pool[rng.below(pool.len())].clone();
        let b = pool[rng.below(pool.len())].clone();
        out.push((a, b));
    }
    for _ in 0..n {
        let a = pool[rng.below(pool.len())].clone();
        let b = mutate(rng, &a);
        out.push((a, b));
    }
    out
}

fn shared_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vulndata")
}

// ---------------------------------------------------------------------------------------------
// dpkg

const DPKG_UP: &[&str] = &[
    "0", "1", "2", "9", "10", "01", "00", "a", "b", "z", "A", "Z", ".", "+", "~", "~~", ":", "-",
];
const DPKG_REV: &[&str] = &[
    "0", "1", "2", "10", "01", "a", "b", "Z", ".", "+", "~", "deb12u", "ubuntu",
];

fn dpkg_generate(rng: &mut Rng) -> String {
    let mut v = String::new();
    if rng.chance(20) {
        v.push_str(rng.pick(&["0", "1", "2", "10"]));
        v.push(':');
    }
    v.push_str(rng.pick(&["0", "1", "2", "9", "10", "01"]));
    let mut up = rng.concat(DPKG_UP, 6);
    let has_rev = rng.chance(70);
    if !has_rev {
        up = up.replace('-', ".");
    }
    if v.contains(':') || has_rev {
        v.push_str(&up);
    } else {
        v.push_str(&up.replace(':', "."));
    }
    if has_rev {
        v.push('-');
        v.push_str(rng.pick(&["0", "1", "2", "10", "a"]));
        if rng.chance(60) {
            v.push_str(&rng.concat(DPKG_REV, 4));
        }
    }
    if !v.contains(':') {
        v = v.replace(':', ".");
    }
    v
}

fn dpkg_mutate(rng: &mut Rng, v: &str) -> String {
    match rng.below(7) {
        0 => format!("{v}~{}", rng.pick(&["", "rc1", "1", "a"])),
        1 => format!("{v}+{}", rng.pick(&["deb12u1", "b1", "1", "0"])),
        2 => format!("{v}.{}", rng.pick(&["0", "1", "a"])),
        3 if !v.contains(':') => format!("1:{v}"),
        4 => {
            // Bump or lower one digit.
            let mut b = v.as_bytes().to_vec();
            if let Some(i) = b.iter().rposition(u8::is_ascii_digit) {
                b[i] = if b[i] == b'9' { b'0' } else { b[i] + 1 };
            }
            String::from_utf8(b).unwrap_or_else(|_| v.to_owned())
        }
        5 => v.replacen('.', "~", 1),
        _ => v.replace("deb12u", "deb12u1"),
    }
}

fn dpkg_real_versions() -> Vec<String> {
    let mut out = Vec::new();
    let dir = shared_dir().join("debian");
    for (file, cols) in [
        ("debian-advisories-summary.tsv", &[4usize, 5][..]),
        ("bookworm-target-binaries.tsv", &[2, 4][..]),
    ] {
        match std::fs::read_to_string(dir.join(file)) {
            Ok(text) => {
                for line in text.lines().skip(1) {
                    let f: Vec<&str> = line.split('\t').collect();
                    for &c in cols {
                        if let Some(v) = f.get(c).filter(|v| !v.is_empty() && **v != "0") {
                            out.push((*v).to_owned());
                        }
                    }
                }
            }
            Err(e) => println!("note: no {file} ({e}); real versions from dpkg-query only"),
        }
    }
    if let Ok(o) = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}\n"])
        .output()
    {
        out.extend(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned),
        );
    }
    out.sort();
    out.dedup();
    out
}

const DPKG_SCRIPT: &str = r#"
while IFS='	' read -r a b; do
  if dpkg --compare-versions "$a" lt "$b"; then echo '<'
  elif dpkg --compare-versions "$a" eq "$b"; then echo '='
  else echo '>'; fi
done
"#;

/// Prints `ok` for each version dpkg takes silently, `bad` when it warns or fails.
const DPKG_VALID_SCRIPT: &str = r#"
while IFS= read -r a; do
  if out=$(dpkg --compare-versions "$a" eq "$a" 2>&1) && [ -z "$out" ]; then echo ok; else echo bad; fi
done
"#;

#[test]
fn dpkg_agrees_with_dpkg_compare_versions() {
    if which("dpkg").is_none() {
        println!("SKIP: dpkg not found on PATH");
        return;
    }
    let mut rng = Rng(0x5eed_d9c6);
    let real = dpkg_real_versions();
    for v in &real {
        dpkg::Version::parse(v).unwrap_or_else(|e| panic!("real version {v:?} refused: {e}"));
    }
    let mut pool = real.clone();
    let generated: Vec<String> = (0..1500).map(|_| dpkg_generate(&mut rng)).collect();
    let generated: Vec<String> = generated
        .into_iter()
        .filter(|v| dpkg::Version::parse(v).is_ok())
        .collect();
    pool.extend(generated.iter().cloned());
    let mut pairs = pairs_from(&mut rng, &pool, 2500, dpkg_mutate);
    pairs.retain(|(a, b)| dpkg::Version::parse(a).is_ok() && dpkg::Version::parse(b).is_ok());
    // The known answer of issue 12 (CVE-2023-4911, fixed in +deb12u3), through dpkg too.
    pairs.push(("2.36-9+deb12u2".into(), "2.36-9+deb12u3".into()));
    // One dpkg process per comparison: spread the pairs over a few shells at once.
    let chunks: Vec<String> = pairs
        .chunks(pairs.len().div_ceil(4))
        .map(|c| c.iter().map(|(a, b)| format!("{a}\t{b}\n")).collect())
        .collect();
    let results: Vec<(Vec<String>, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|c| s.spawn(move || run(Command::new("sh").arg("-c").arg(DPKG_SCRIPT), c)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("dpkg shell"))
            .collect()
    });
    let answers: Vec<String> = results.iter().flat_map(|r| r.0.iter().cloned()).collect();
    let stderr: String = results.iter().map(|r| r.1.as_str()).collect();
    assert!(
        stderr.is_empty(),
        "dpkg warned about versions this crate accepts:\n{stderr}"
    );
    let n = check_pairs("dpkg", &pairs, &answers, |a, b| {
        dpkg::compare(a, b).unwrap()
    });
    assert_eq!(answers.last().map(String::as_str), Some("<"));

    // Validity: random strings over a wider alphabet, accepted here iff dpkg takes them silently.
    let junk_alphabet = &[
        "0", "1", "9", "a", "Z", ".", "+", "~", ":", "-", "_", "!", "x:", "1:", ":1", "--", "é",
    ];
    let junk: Vec<String> = (0..400)
        .map(|_| rng.concat(junk_alphabet, 5))
        .filter(|s| !s.starts_with('-'))
        .collect();
    let (verdicts, _) = run(
        Command::new("sh").arg("-c").arg(DPKG_VALID_SCRIPT),
        &junk.iter().map(|s| format!("{s}\n")).collect::<String>(),
    );
    let mut bad = Vec::new();
    for (s, v) in junk.iter().zip(&verdicts) {
        let ours = dpkg::Version::parse(s).is_ok();
        if ours != (v == "ok") {
            bad.push(format!("{s:?}: ours {ours}, dpkg {v}"));
        }
    }
    assert!(
        bad.is_empty(),
        "validity disagrees with dpkg:\n{}",
        bad.join("\n")
    );
    println!(
        "dpkg: {n} pairs ({} real versions, {} generated) and {} validity checks agree",
        real.len(),
        generated.len(),
        junk.len()
    );
}

// ---------------------------------------------------------------------------------------------
// rpm

const RPM_TOKENS: &[&str] = &[
    "0", "1", "2", "10", "01", "007", "a", "b", "Z", "rc", "el", ".", ".", "_", "+", "~", "^",
    "~~", "^^",
];

fn rpm_generate(rng: &mut Rng) -> String {
    let mut v = String::new();
    if rng.chance(20) {
        v.push_str(rng.pick(&["0", "1", "2", "10", "00"]));
        v.push(':');
    }
    v.push_str(rng.pick(&["0", "1", "2", "10", "a"]));
    v.push_str(&rng.concat(RPM_TOKENS, 6));
    if rng.chance(50) {
        v.push('-');
        v.push_str(rng.pick(&["1", "2", "10", "0"]));
        v.push_str(&rng.concat(RPM_TOKENS, 4));
    }
    v
}

fn rpm_mutate(rng: &mut Rng, v: &str) -> String {
    match rng.below(6) {
        0 => format!(
            "{v}{}",
            rng.pick(&["~", "^", "~rc1", "^post", ".0", "a", "1"])
        ),
        1 => v.replacen('.', rng.pick(&["_", "~", "^", ".."]), 1),
        2 => format!("{}{v}", rng.pick(&["1:", "0:", ""])),
        3 => v.replacen('1', "01", 1),
        4 => v
            .rsplit_once('-')
            .map(|(h, _)| h.to_owned())
            .unwrap_or_else(|| format!("{v}-1")),
        _ => v.replacen('a', "b", 1),
    }
}

#[test]
fn rpm_agrees_with_rpm_vercmp() {
    if which("rpm").is_none() {
        println!("SKIP: rpm not found on PATH (Debian package `rpm`)");
        return;
    }
    let mut rng = Rng(0x0072_706d);
    let pool: Vec<String> = (0..1500).map(|_| rpm_generate(&mut rng)).collect();
    let mut pairs = pairs_from(&mut rng, &pool, 2500, rpm_mutate);
    pairs.retain(|(a, b)| rpm::Evr::parse(a).is_ok() && rpm::Evr::parse(b).is_ok());
    let dir = tempdir("rpm");
    let file = dir.join("pairs");
    std::fs::write(
        &file,
        pairs
            .iter()
            .map(|(a, b)| format!("{a} {b}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let lua = format!(
        "%{{lua: for l in io.lines(\"{}\") do local a, b = l:match(\"^(%S+) (%S+)$\"); io.write(rpm.vercmp(a, b), \"\\n\") end}}",
        file.display()
    );
    let (answers, _) = run(Command::new("rpm").arg("--eval").arg(lua), "");
    let answers: Vec<String> = answers.into_iter().filter(|l| !l.is_empty()).collect();
    let n = check_pairs("rpm", &pairs, &answers, |a, b| rpm::compare(a, b).unwrap());
    std::fs::remove_dir_all(&dir).ok();
    println!(
        "rpm: {n} pairs agree with rpm {}",
        tool_version(Command::new("rpm").arg("--version"))
    );
}

// ---------------------------------------------------------------------------------------------
// PEP 440

const PEP440_SCRIPT: &str = r#"
import sys
from packaging.version import Version, InvalidVersion
def p(s):
    try:
        return Version(s)
    except InvalidVersion:
        return None
out = []
for line in sys.stdin:
    a, b = line.rstrip("\n").split("\t")
    va, vb = p(a), p(b)
    if va is None or vb is None:
        out.append("invalid %d%d" % (va is not None, vb is not None))
    else:
        out.append(str((va > vb) - (va < vb)))
sys.stdout.write("\n".join(out) + "\n")
"#;

fn python_with_packaging() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("WHARF_TEST_PYTHON") {
        candidates.push(p.into());
    }
    candidates.push("/usr/bin/python3".into());
    if let Some(p) = which("python3") {
        candidates.push(p);
    }
    candidates.into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import packaging.version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn pep440_generate(rng: &mut Rng) -> String {
    let mut v = String::new();
    if rng.chance(10) {
        v.push_str(rng.pick(&["v", "V"]));
    }
    if rng.chance(10) {
        v.push_str(rng.pick(&["1!", "0!", "2!", "01!"]));
    }
    v.push_str(rng.pick(&["0", "1", "2", "10", "01", "00"]));
    for _ in 0..rng.below(4) {
        v.push('.');
        v.push_str(rng.pick(&["0", "1", "2", "10", "01", "00", "999999999999999999999"]));
    }
    let sep = |rng: &mut Rng| rng.pick(&["", "", ".", "-", "_"]).to_owned();
    let num = |rng: &mut Rng| rng.pick(&["", "0", "1", "2", "10", "01"]).to_owned();
    if rng.chance(40) {
        v += &sep(rng);
        v += rng.pick(&[
            "a", "alpha", "b", "beta", "c", "rc", "pre", "preview", "RC", "Alpha",
        ]);
        v += &sep(rng);
        v += &num(rng);
    }
    if rng.chance(30) {
        if rng.chance(30) {
            v += "-";
            v += rng.pick(&["0", "1", "2"]);
        } else {
            v += &sep(rng);
            v += rng.pick(&["post", "rev", "r", "POST"]);
            v += &sep(rng);
            v += &num(rng);
        }
    }
    if rng.chance(30) {
        v += &sep(rng);
        v += rng.pick(&["dev", "DEV"]);
        v += &sep(rng);
        v += &num(rng);
    }
    if rng.chance(20) {
        v.push('+');
        v += &rng.concat(
            &["ubuntu", "1", "0", "a", "B", "10", "abc", ".", "-", "_"],
            4,
        );
    }
    if rng.chance(5) {
        v = format!(" {v} ");
    }
    v
}

fn pep440_mutate(rng: &mut Rng, v: &str) -> String {
    match rng.below(6) {
        0 => format!(
            "{v}{}",
            rng.pick(&[".0", ".post1", ".dev0", "a1", "+local.1", "-1", "rc"])
        ),
        1 => v.to_uppercase(),
        2 => v.replacen('.', rng.pick(&["-", "_", ".0."]), 1),
        3 => {
            v.trim_end_matches(|c: char| c.is_ascii_digit()).to_owned() + rng.pick(&["0", "1", "2"])
        }
        4 => format!("1!{v}"),
        _ => v.replacen("0", "00", 1),
    }
}

#[test]
fn pep440_agrees_with_python_packaging() {
    let Some(py) = python_with_packaging() else {
        println!(
            "SKIP: no python3 with `packaging` (Debian package python3-packaging, or set WHARF_TEST_PYTHON)"
        );
        return;
    };
    let mut rng = Rng(0x0070_6570);
    let mut pool: Vec<String> = (0..2000).map(|_| pep440_generate(&mut rng)).collect();
    // Versions from the PyPA advisories in shared/ (affected ranges' bounds).
    let real = pypi_real_versions();
    pool.extend(real.iter().cloned());
    let mut pairs = pairs_from(&mut rng, &pool, 3000, pep440_mutate);
    // Junk: random token soup, mostly invalid, for the validity check.
    let soup = &[
        "1", "0", "2", ".", "-", "_", "a", "b", "rc", "c", "post", "dev", "r", "!", "+", "v", "x",
        "alpha", "pre", " ",
    ];
    for _ in 0..1500 {
        pairs.push((rng.concat(soup, 7), pool[rng.below(pool.len())].clone()));
    }
    let input: String = pairs.iter().map(|(a, b)| format!("{a}\t{b}\n")).collect();
    let (answers, _) = run(Command::new(&py).arg("-c").arg(PEP440_SCRIPT), &input);
    assert_eq!(answers.len(), pairs.len());
    let (mut compared, mut validity, mut bad) = (0, 0, Vec::new());
    for ((a, b), ans) in pairs.iter().zip(&answers) {
        let (pa, pb) = (pep440::Version::parse(a), pep440::Version::parse(b));
        if let Some(flags) = ans.strip_prefix("invalid ") {
            validity += 1;
            let ours = format!("{}{}", pa.is_ok() as u8, pb.is_ok() as u8);
            if ours != flags {
                bad.push(format!(
                    "{a:?} / {b:?}: valid ours {ours}, packaging {flags}"
                ));
            }
            continue;
        }
        match (pa, pb) {
            (Ok(x), Ok(y)) => {
                compared += 1;
                let want = parse_sign(ans);
                if sign(x.cmp(&y)) != want {
                    bad.push(format!(
                        "{a:?} vs {b:?}: ours {}, packaging {want}",
                        sign(x.cmp(&y))
                    ));
                }
            }
            (x, y) => bad.push(format!(
                "{a:?} / {b:?}: packaging accepts, ours {:?} {:?}",
                x.err(),
                y.err()
            )),
        }
    }
    assert!(
        bad.is_empty(),
        "{} disagreements with packaging:\n{}",
        bad.len(),
        bad[..bad.len().min(40)].join("\n")
    );
    assert!(compared > 3000, "too few valid pairs: {compared}");
    println!(
        "pep440: {compared} ordered pairs and {validity} pairs with an invalid side agree with packaging ({} real versions)",
        real.len()
    );
}

fn pypi_real_versions() -> Vec<String> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(shared_dir().join("pypi/pysec-osv-json")) else {
        println!("note: no shared/vulndata/pypi; generated versions only");
        return out;
    };
    for d in dirs.flatten() {
        for f in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(f.path()).unwrap_or_default();
            // Pull the strings after "introduced"/"fixed"/"last_affected" keys.
            for key in [
                "\"introduced\": \"",
                "\"fixed\": \"",
                "\"last_affected\": \"",
            ] {
                for (i, _) in text.match_indices(key) {
                    let rest = &text[i + key.len()..];
                    if let Some(end) = rest.find('"') {
                        out.push(rest[..end].to_owned());
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

// ---------------------------------------------------------------------------------------------
// npm

const NPM_SCRIPT: &str = r#"
const semver = require(process.argv[1]);
const lines = require('fs').readFileSync(0, 'utf8').split('\n').filter(l => l.length);
const out = [];
for (const l of lines) {
  const [a, b] = l.split('\t');
  const va = semver.valid(a), vb = semver.valid(b);
  if (va === null || vb === null) out.push('invalid ' + (va !== null ? 1 : 0) + (vb !== null ? 1 : 0));
  else out.push(String(semver.compare(a, b)));
}
process.stdout.write(out.join('\n') + '\n');
"#;

fn node_semver() -> Option<PathBuf> {
    which("node")?;
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("WHARF_TEST_NODE_SEMVER") {
        candidates.push(p.into());
    }
    candidates.push("/usr/share/nodejs/semver".into());
    candidates.push("/usr/lib/node_modules/semver".into());
    candidates
        .into_iter()
        .find(|p| p.join("package.json").is_file())
}

fn semver_generate(rng: &mut Rng, junk: bool) -> String {
    let n = |rng: &mut Rng| {
        rng.pick(&["0", "1", "2", "10", "9007199254740991"])
            .to_owned()
    };
    let mut v = format!("{}.{}.{}", n(rng), n(rng), n(rng));
    if junk && rng.chance(50) {
        v = v.replacen(
            rng.pick(&["0", "1", "."]),
            rng.pick(&["00", "01", "", "..", "a"]),
            1,
        );
    }
    if rng.chance(50) {
        v.push('-');
        let ids = &[
            "alpha", "beta", "rc", "0", "1", "2", "11", "x-y", "-", "1a", "a1", "A", "Z",
        ];
        let k = 1 + rng.below(3);
        let parts: Vec<&str> = (0..k).map(|_| rng.pick(ids)).collect();
        v += &parts.join(".");
        if junk && rng.chance(30) {
            v += rng.pick(&[".", ".01", "..", "!", "_"]);
        }
    }
    if rng.chance(20) {
        v.push('+');
        v += rng.pick(&["build.1", "001", "sha.abc", "x-y"]);
        if junk && rng.chance(30) {
            v += rng.pick(&[".", "+", "..a"]);
        }
    }
    if rng.chance(10) {
        v = format!("{}{v}", rng.pick(&["v", " ", "=", "V", "vv"]));
    }
    v
}

fn semver_mutate(rng: &mut Rng, v: &str) -> String {
    match rng.below(5) {
        0 => format!("{v}{}", rng.pick(&["-0", "-alpha", ".1", "+b"])),
        1 => v
            .split_once('-')
            .map(|(h, _)| h.to_owned())
            .unwrap_or_else(|| format!("{v}-rc.1")),
        2 => v.replacen("1", "2", 1),
        3 => v.replacen("alpha", "beta", 1),
        _ => v.replacen(".0", ".1", 1),
    }
}

#[test]
fn npm_agrees_with_node_semver() {
    let Some(lib) = node_semver() else {
        println!(
            "SKIP: node or node-semver missing (Debian package node-semver, or set WHARF_TEST_NODE_SEMVER)"
        );
        return;
    };
    let mut rng = Rng(0x006e_706d);
    let pool: Vec<String> = (0..1500)
        .map(|_| semver_generate(&mut rng, false))
        .collect();
    let mut pairs = pairs_from(&mut rng, &pool, 2500, semver_mutate);
    for _ in 0..1000 {
        pairs.push((
            semver_generate(&mut rng, true),
            pool[rng.below(pool.len())].clone(),
        ));
    }
    let input: String = pairs.iter().map(|(a, b)| format!("{a}\t{b}\n")).collect();
    let (answers, _) = run(
        // Debian's node-semver finds its own dependencies (lru-cache) beside it.
        Command::new("node")
            .arg("-e")
            .arg(NPM_SCRIPT)
            .arg(&lib)
            .env("NODE_PATH", lib.parent().unwrap_or(Path::new("/"))),
        &input,
    );
    assert_eq!(answers.len(), pairs.len());
    let (mut compared, mut bad) = (0, Vec::new());
    for ((a, b), ans) in pairs.iter().zip(&answers) {
        let (pa, pb) = (npm::parse(a), npm::parse(b));
        if let Some(flags) = ans.strip_prefix("invalid ") {
            let ours = format!("{}{}", pa.is_ok() as u8, pb.is_ok() as u8);
            if ours != flags {
                bad.push(format!(
                    "{a:?} / {b:?}: valid ours {ours}, node-semver {flags}"
                ));
            }
            continue;
        }
        match (pa, pb) {
            (Ok(x), Ok(y)) => {
                compared += 1;
                if sign(x.cmp(&y)) != parse_sign(ans) {
                    bad.push(format!(
                        "{a:?} vs {b:?}: ours {}, node-semver {ans}",
                        sign(x.cmp(&y))
                    ));
                }
            }
            (x, y) => bad.push(format!(
                "{a:?} / {b:?}: node-semver accepts, ours {:?} {:?}",
                x.err(),
                y.err()
            )),
        }
    }
    assert!(
        bad.is_empty(),
        "{} disagreements with node-semver:\n{}",
        bad.len(),
        bad[..bad.len().min(40)].join("\n")
    );
    println!(
        "npm: {compared} ordered pairs, {} pairs in all, agree with node-semver",
        pairs.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Cargo

#[test]
fn cargo_agrees_with_the_semver_crate() {
    let mut rng = Rng(0x0063_6172);
    let pool: Vec<String> = (0..1500)
        .map(|_| semver_generate(&mut rng, false))
        .collect();
    let mut pairs = pairs_from(&mut rng, &pool, 2500, semver_mutate);
    for _ in 0..1000 {
        pairs.push((
            semver_generate(&mut rng, true),
            pool[rng.below(pool.len())].clone(),
        ));
    }
    let (mut compared, mut bad) = (0, Vec::new());
    for (a, b) in &pairs {
        let (ra, rb) = (::semver::Version::parse(a), ::semver::Version::parse(b));
        let (pa, pb) = (cargo::parse(a), cargo::parse(b));
        if ra.is_ok() != pa.is_ok() || rb.is_ok() != pb.is_ok() {
            bad.push(format!(
                "{a:?} / {b:?}: semver crate {} {}, ours {} {}",
                ra.is_ok(),
                rb.is_ok(),
                pa.is_ok(),
                pb.is_ok()
            ));
            continue;
        }
        if let (Ok(ra), Ok(rb), Ok(pa), Ok(pb)) = (ra, rb, pa, pb) {
            compared += 1;
            // Precedence: the semver crate's order with build metadata taken out.
            let want = ra.cmp_precedence(&rb);
            if pa.cmp(&pb) != want {
                bad.push(format!(
                    "{a:?} vs {b:?}: ours {:?}, semver crate {want:?}",
                    pa.cmp(&pb)
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} disagreements with the semver crate:\n{}",
        bad.len(),
        bad[..bad.len().min(40)].join("\n")
    );
    println!(
        "cargo: {compared} ordered pairs, {} pairs in all, agree with the semver crate",
        pairs.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Maven

const MAVEN_JAVA: &str = r#"
import org.apache.maven.artifact.versioning.ComparableVersion;
import java.io.*;
public class Cmp {
  public static void main(String[] args) throws Exception {
    BufferedReader r = new BufferedReader(new InputStreamReader(System.in, "UTF-8"));
    StringBuilder sb = new StringBuilder();
    String l;
    while ((l = r.readLine()) != null) {
      String[] p = l.split("\t", -1);
      int c = new ComparableVersion(p[0]).compareTo(new ComparableVersion(p[1]));
      sb.append(Integer.signum(c)).append('\n');
    }
    System.out.print(sb);
  }
}
"#;

fn maven_jar() -> Option<PathBuf> {
    which("java")?;
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("WHARF_TEST_MAVEN_ARTIFACT_JAR") {
        candidates.push(p.into());
    }
    candidates.push("/usr/share/java/maven-artifact-3.x.jar".into());
    candidates.push("/usr/share/maven/lib/maven-artifact-3.x.jar".into());
    candidates.into_iter().find(|p| p.is_file())
}

const MAVEN_TOKENS: &[&str] = &[
    "0",
    "1",
    "2",
    "10",
    "00",
    "01",
    "1234567890",
    "12345678901234567890",
    "alpha",
    "a",
    "b",
    "m",
    "beta",
    "milestone",
    "rc",
    "cr",
    "snapshot",
    "SNAPSHOT",
    "ga",
    "final",
    "release",
    "RELEASE",
    "sp",
    "foo",
    "x",
    ".",
    ".",
    "-",
    "-",
];

#[test]
fn maven_agrees_with_comparable_version() {
    let Some(jar) = maven_jar() else {
        println!("SKIP: java or maven-artifact missing (Debian package libmaven3-core-java)");
        return;
    };
    let mut rng = Rng(0x006d_766e);
    let mut pool: Vec<String> = (0..2000).map(|_| rng.concat(MAVEN_TOKENS, 7)).collect();
    pool.extend(
        [
            "1",
            "1.0",
            "1.0.0",
            "1-ga",
            "1-final",
            "1-SNAPSHOT",
            "1.0-alpha-1",
            "1.0-rc1",
            "2.13.4.2",
            "2.14.0-rc1",
            "1.0.RELEASE",
            "3.0.0.M1",
            "1-sp1",
        ]
        .map(str::to_owned),
    );
    let mutate = |rng: &mut Rng, v: &str| match rng.below(4) {
        0 => format!(
            "{v}{}",
            rng.pick(&[".0", "-0", "-ga", "-sp", "-rc1", "-SNAPSHOT", "1", "a"])
        ),
        1 => v.replacen('.', "-", 1),
        2 => v.replacen('-', ".", 1),
        _ => v.to_uppercase(),
    };
    let pairs = pairs_from(&mut rng, &pool, 3000, mutate);
    let pairs: Vec<(String, String)> = pairs
        .into_iter()
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .collect();
    let dir = tempdir("maven");
    let src = dir.join("Cmp.java");
    std::fs::write(&src, MAVEN_JAVA).unwrap();
    let input: String = pairs.iter().map(|(a, b)| format!("{a}\t{b}\n")).collect();
    let (answers, _) = run(Command::new("java").arg("-cp").arg(&jar).arg(&src), &input);
    std::fs::remove_dir_all(&dir).ok();
    let n = check_pairs("ComparableVersion", &pairs, &answers, |a, b| {
        maven::compare(a, b).unwrap()
    });
    println!(
        "maven: {n} pairs agree with ComparableVersion ({})",
        jar.display()
    );
}

// ---------------------------------------------------------------------------------------------

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wharf-vuln-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tool_version(cmd: &mut Command) -> String {
    cmd.output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
