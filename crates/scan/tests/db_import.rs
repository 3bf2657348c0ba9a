//! The vulnerability database with the real shared advisory data: every feed kind imported,
//! statuses and hashes, the index loaded and timed, imports replacing feeds atomically (an
//! error half-way and a process killed half-way both leave the previous import), damaged
//! sources as typed errors.

#[path = "db_common.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{DATA, import_all, zip_dir};
use scan::db::{DbError, FeedKind, VulnDb};

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

#[test]
fn the_whole_data_set_imports_and_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let db = VulnDb::open(tmp.path().join("db")).unwrap();
    let t = Instant::now();
    let imported = import_all(&db, tmp.path());
    eprintln!("import of {} feeds: {:?}", imported.len(), t.elapsed());
    let status = db.status().unwrap();
    assert_eq!(status.len(), imported.len());
    let by_kind = |k: FeedKind| status.iter().filter(|s| s.kind == k).count();
    assert_eq!(by_kind(FeedKind::OsvDir), 8);
    assert_eq!(by_kind(FeedKind::AlpineSecdb), 8);
    assert_eq!(by_kind(FeedKind::DebianTracker), 1);
    // File feeds are hashed as sha256sum does.
    let secdb = Path::new(DATA).join("alpine/secdb/v3.20/main.json");
    let st = status
        .iter()
        .find(|s| s.source.ends_with("v3.20/main.json"))
        .unwrap();
    assert_eq!(st.sha256, sha256sum(&secdb));
    assert!(st.records > 1000, "{st:?}");
    assert!(!db.is_stale(Duration::from_secs(3600)).unwrap());
    let empty = VulnDb::open(tmp.path().join("empty")).unwrap();
    assert!(
        empty.is_stale(Duration::from_secs(3600)).unwrap(),
        "no feed is stale"
    );

    let (index, load) = db.index_with_stats().unwrap();
    eprintln!(
        "index: {} advisories read in {:?}, built in {:?}; stats {:?} problems {}",
        load.advisories,
        load.read,
        load.build,
        (index.stats().advisories, index.stats().entries),
        index.stats().problems.len()
    );
    let total: u64 = status.iter().map(|s| s.records).sum();
    assert_eq!(load.advisories as u64, total);
    // The tracker and the OSV CVE records both say so; one finding after deduplication.
    let f = index
        .matches("Debian:12", "glibc", "2.36-9+deb12u2")
        .unwrap();
    assert_eq!(f.iter().filter(|f| f.id == "CVE-2023-4911").count(), 1);
    let f = index.matches("PyPI", "requests", "2.19.0").unwrap();
    assert!(f.iter().any(|f| f.id == "CVE-2018-18074"));
    // Reopening sees the same.
    drop(index);
    drop(db);
    let db = VulnDb::open(tmp.path().join("db")).unwrap();
    assert_eq!(db.status().unwrap().len(), status.len());
}

#[test]
fn an_osv_zip_imports_like_its_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let zip = tmp.path().join("all.zip");
    zip_dir(&Path::new(DATA).join("go/vulndb-osv"), &zip);
    let db = VulnDb::open(tmp.path().join("db")).unwrap();
    let st = db.import_path(&zip).unwrap();
    assert_eq!(st.kind, FeedKind::OsvZip);
    assert_eq!(st.records, 319);
    assert_eq!(st.sha256, sha256sum(&zip));
    let idx = db.index().unwrap();
    let f = idx.matches("Go", "stdlib", "v1.21.1").unwrap();
    assert!(f.iter().any(|f| f.id == "CVE-2023-39325"), "{f:?}");
    // One OSV record on its own.
    let one = Path::new(DATA).join("go/vulndb-osv/GO-2023-2102.json");
    let st = db.import_path(&one).unwrap();
    assert_eq!((st.kind, st.records), (FeedKind::OsvJson, 1));
}

fn copy_records(dst: &Path, names: &[&str]) {
    std::fs::create_dir_all(dst).unwrap();
    for n in names {
        std::fs::copy(
            Path::new(DATA).join("pypi/pysec-osv-json/requests").join(n),
            dst.join(n),
        )
        .unwrap();
    }
}

#[test]
fn a_reimport_replaces_the_feed_and_a_failed_one_keeps_it() {
    let tmp = tempfile::tempdir().unwrap();
    let db = VulnDb::open(tmp.path().join("db")).unwrap();
    let feed = tmp.path().join("feed");
    copy_records(&feed, &["PYSEC-2018-28.json", "PYSEC-2014-13.json"]);
    let first = db.import_path(&feed).unwrap();
    assert_eq!(first.records, 2);
    // Replace: one record removed.
    std::fs::remove_file(feed.join("PYSEC-2014-13.json")).unwrap();
    let second = db.import_path(&feed).unwrap();
    assert_eq!(second.records, 1);
    assert_ne!(second.sha256, first.sha256);
    let advs = db.advisories().unwrap();
    assert_eq!(advs.len(), 1);
    assert_eq!(advs[0].id, "PYSEC-2018-28");
    // A damaged record sorted last: the import fails after storing the others, and the
    // previous import is what remains.
    copy_records(&feed, &["PYSEC-2014-13.json"]);
    std::fs::write(feed.join("zzz.json"), b"{\"id\": \"X\", \"affected\": 3}").unwrap();
    let err = db.import_path(&feed).unwrap_err();
    match &err {
        DbError::Parse(p) => {
            assert!(p.origin.ends_with("zzz.json"), "{p}");
        }
        e => panic!("{e}"),
    }
    assert_eq!(db.status().unwrap(), vec![second]);
    assert_eq!(db.advisories().unwrap().len(), 1);
    // Removing the feed removes its advisories.
    assert!(db.remove_feed(&db.status().unwrap()[0].name).unwrap());
    assert!(db.advisories().unwrap().is_empty());
}

#[test]
fn damaged_sources_are_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let db = VulnDb::open(tmp.path().join("db")).unwrap();
    // A truncated zip.
    let zip = tmp.path().join("all.zip");
    zip_dir(&Path::new(DATA).join("rust/rustsec-osv-json"), &zip);
    let bytes = std::fs::read(&zip).unwrap();
    let cut = tmp.path().join("cut.zip");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(db.import_path(&cut), Err(DbError::Zip { .. })));
    // Not a feed at all.
    let junk = tmp.path().join("junk.json");
    std::fs::write(&junk, b"[1, 2, 3]").unwrap();
    assert!(matches!(
        db.import_path(&junk),
        Err(DbError::UnknownFormat { .. })
    ));
    // A secdb without its release.
    let bad = tmp.path().join("secdb.json");
    std::fs::write(&bad, br#"{"distroversion": "3.20", "packages": []}"#).unwrap();
    match db.import_path(&bad) {
        Err(DbError::Parse(p)) => assert_eq!(p.field, "distroversion"),
        other => panic!("{other:?}"),
    }
    // A tracker document with a wrong shape names the package.
    let tr = tmp.path().join("tracker.json");
    std::fs::write(
        &tr,
        br#"{"zlib": {"CVE-1": {"releases": {"bookworm": {"status": 7}}}}}"#,
    )
    .unwrap();
    match db.import_path(&tr) {
        Err(DbError::Parse(p)) => assert_eq!(p.field, "zlib"),
        other => panic!("{other:?}"),
    }
    // A missing path.
    assert!(matches!(
        db.import_path(tmp.path().join("nope")),
        Err(DbError::Io { .. })
    ));
    assert!(db.status().unwrap().is_empty());
}

/// Run in a child process by `a_killed_import_leaves_the_previous_feed`: imports the Debian
/// CVE records over an existing feed and exits abruptly part-way.
#[test]
#[ignore = "helper run by a_killed_import_leaves_the_previous_feed"]
fn killed_import_child() {
    let Ok(dir) = std::env::var("WHARF_DB_KILL_DIR") else {
        return;
    };
    let delay: u64 = std::env::var("WHARF_DB_KILL_AFTER_MS")
        .unwrap()
        .parse()
        .unwrap();
    let db = VulnDb::open(Path::new(&dir).join("db")).unwrap();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(delay));
        std::process::abort();
    });
    db.import_named(
        "feed",
        &Path::new(DATA).join("debian/osv/CVE-debian-only"),
        "big",
        None,
    )
    .unwrap();
    // Finished before the abort: say so, so the parent can tell.
    std::fs::write(Path::new(&dir).join("finished"), b"").unwrap();
    std::thread::sleep(Duration::from_secs(10));
}

#[test]
fn a_killed_import_leaves_the_previous_feed() {
    let tmp = tempfile::tempdir().unwrap();
    let small = tmp.path().join("small");
    copy_records(&small, &["PYSEC-2018-28.json"]);
    {
        let db = VulnDb::open(tmp.path().join("db")).unwrap();
        db.import_named("feed", &small, "small", None).unwrap();
    }
    // How long a full import takes here, to abort the child half-way through.
    let probe = tempfile::tempdir().unwrap();
    let t = Instant::now();
    VulnDb::open(probe.path())
        .unwrap()
        .import_named(
            "feed",
            &Path::new(DATA).join("debian/osv/CVE-debian-only"),
            "big",
            None,
        )
        .unwrap();
    let full = t.elapsed();
    let delay = (full.as_millis() / 2).max(20) as u64;
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["killed_import_child", "--exact", "--ignored", "--nocapture"])
        .env("WHARF_DB_KILL_DIR", tmp.path())
        .env("WHARF_DB_KILL_AFTER_MS", delay.to_string())
        .status()
        .unwrap();
    assert!(!status.success(), "the child must die by abort");
    let db = VulnDb::open(tmp.path().join("db")).unwrap();
    let st = db.status().unwrap();
    let advs = db.advisories().unwrap();
    if tmp.path().join("finished").exists() {
        // The import committed before the abort (a slow first half): all of it is there.
        assert_eq!(advs.len(), 1358);
    } else {
        assert_eq!(st.len(), 1);
        assert_eq!(st[0].source, "small", "full import took {full:?}");
        assert_eq!(advs.len(), 1);
        assert_eq!(advs[0].id, "PYSEC-2018-28");
    }
}
