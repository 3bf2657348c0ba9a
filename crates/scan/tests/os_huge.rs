//! A layer with 200 MB files, generated on the fly through readers (never in memory), walked
//! plain, gzip- and zstd-compressed with flat memory: the walker's peak RSS grows by a few MiB,
//! not by the file's size. One test in this binary, so the process's peak is its own.

use std::io::{self, Cursor, Read};

use scan::analyze::{AnalyzeError, Analyzer, FileInfo, Found, os_analyzers};
use scan::layer::{SHARED_READ_CAP, analyze_layer};

const HUGE: u64 = 200 << 20;

/// A tar entry's header and, after `size` bytes of content, its padding.
fn header(path: &str, size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_path(path).unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    h.as_bytes().to_vec()
}

fn padding(size: u64) -> Cursor<Vec<u8>> {
    Cursor::new(vec![0u8; ((512 - size % 512) % 512) as usize])
}

/// A tar stream: a 200 MB zero-filled dpkg `status` (the dpkg analyser wants it, and finds
/// its one 200 MB line too long), a 200 MB `/data/blob` (wanted by two test analysers), then a
/// small os-release. Built from chained readers: nothing is held.
fn stream() -> impl Read {
    let os = b"ID=huge\nVERSION_ID=1\n";
    Cursor::new(header("var/lib/dpkg/status", HUGE))
        .chain(io::repeat(b'x').take(HUGE))
        .chain(padding(HUGE))
        .chain(Cursor::new(header("data/blob", HUGE)))
        .chain(io::repeat(0).take(HUGE))
        .chain(padding(HUGE))
        .chain(Cursor::new(header("etc/os-release", os.len() as u64)))
        .chain(Cursor::new(os.to_vec()))
        .chain(padding(os.len() as u64))
        .chain(Cursor::new(vec![0u8; 1024]))
}

/// Counts the bytes it is given (the count is the version it reports).
struct Counter(&'static str);

impl Analyzer for Counter {
    fn name(&self) -> &'static str {
        self.0
    }
    fn wants(&self, file: &FileInfo<'_>) -> bool {
        file.path == "/data/blob"
    }
    fn analyze(
        &self,
        file: &FileInfo<'_>,
        content: &mut dyn Read,
    ) -> Result<Option<Found>, AnalyzeError> {
        let n = io::copy(content, &mut io::sink()).map_err(|source| AnalyzeError::Io {
            path: file.path.into(),
            source,
        })?;
        Ok(Some(Found {
            packages: vec![scan::Package {
                kind: scan::PackageKind::Npm,
                name: self.0.into(),
                version: n.to_string(),
                source_name: None,
                source_version: None,
                arch: None,
                licenses: vec![],
                path: file.path.into(),
                layer: String::new(),
            }],
            os: None,
        }))
    }
}

/// The process's peak resident set (VmHWM), in KiB.
fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn check(label: &str, reader: impl Read) {
    let mut analyzers = os_analyzers();
    analyzers.push(Box::new(Counter("first")));
    analyzers.push(Box::new(Counter("second")));
    let inv = analyze_layer("sha256:huge", None, reader, &analyzers).unwrap();
    let got: Vec<_> = inv
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.analyzer.as_str()))
        .collect();
    // The dpkg `status` is skipped (malformed: a line longer than 1 MiB); the blob, larger than
    // the shared-read cap, goes to the first analyser only, whole; os-release after them.
    assert_eq!(
        got,
        [("/data/blob", "first"), ("/etc/os-release", "os-release")],
        "{label}"
    );
    assert_eq!(
        inv.files[0].packages[0].version,
        HUGE.to_string(),
        "{label}"
    );
    assert_eq!(inv.files[1].os.as_ref().unwrap().id, "huge", "{label}");
}

#[test]
fn huge_files_pass_with_flat_memory() {
    const { assert!(HUGE > SHARED_READ_CAP) };
    let before = peak_kib();
    let t = std::time::Instant::now();
    check("tar", stream());
    let tar_peak = peak_kib();
    eprintln!("tar: {:?}", t.elapsed());
    let t = std::time::Instant::now();
    // Compressed by gzip(1) in a child process, fed by a thread: flate2's encoder in a debug
    // build would take minutes; decompression is ours.
    let mut gzip = std::process::Command::new("gzip")
        .arg("-1c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = gzip.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || io::copy(&mut stream(), &mut stdin).map(|_| ()));
    check("gzip", gzip.stdout.take().unwrap());
    feeder.join().unwrap().unwrap();
    assert!(gzip.wait().unwrap().success());
    eprintln!("gzip: {:?}", t.elapsed());
    let t = std::time::Instant::now();
    check(
        "zstd",
        zstd::stream::read::Encoder::new(stream(), 1).unwrap(),
    );
    eprintln!("zstd: {:?}", t.elapsed());
    let after = peak_kib();
    eprintln!(
        "peak RSS: {before} KiB before, {tar_peak} KiB after tar, {after} KiB after gzip and zstd"
    );
    // 3 x 600 MB streamed; the walker's own buffers are a few hundred KiB, zstd's window 8 MiB.
    // (saturating: the kernel syncs per-thread RSS counters lazily, so two readings of the
    // high-water mark can differ by a few pages either way)
    let grew = after.saturating_sub(before);
    assert!(grew < 48 << 10, "peak RSS grew by {grew} KiB");
}

/// A GNU long-name entry of 100 MB (a real tar header, generated data): the tar reader would
/// read it whole into memory; the walker stops it at 4 MiB with an error.
#[test]
fn a_huge_gnu_long_name_is_refused_not_read_into_memory() {
    let mut h = tar::Header::new_gnu();
    h.as_mut_bytes()[..13].copy_from_slice(b"././@LongLink");
    h.set_entry_type(tar::EntryType::GNULongName);
    let size: u64 = 100 << 20;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    let stream = Cursor::new(h.as_bytes().to_vec())
        .chain(io::repeat(b'a').take(size))
        .chain(Cursor::new(header("etc/os-release", 0)))
        .chain(Cursor::new(vec![0u8; 1024]));
    let err = analyze_layer("sha256:longname", None, stream, &os_analyzers()).unwrap_err();
    assert!(
        matches!(&err, scan::layer::LayerError::Read { .. })
            && err.to_string().contains("tar headers"),
        "{err}"
    );
}
