//! `VulnDb::update` against a local HTTP server (a small tokio server in the test) serving
//! the shared advisory data: an OSV zip made on the fly, a tracker JSON generated from the
//! summary TSV, an Alpine secdb file. Unchanged content is not imported again; a 404, a
//! truncated body, a wrong pinned digest and a non-feed each fail alone and keep the
//! previous import.

#[path = "db_common.rs"]
mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::{DATA, tracker_json, zip_dir};
use scan::db::{DbError, FeedSource, UpdateOutcome, VulnDb, default_sources};
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Hits = Arc<Mutex<HashMap<String, usize>>>;

/// Serves files under `root` (`GET /rel/path`), one request per connection. `/truncated/X`
/// announces X's full length and sends half of it.
async fn serve(root: PathBuf) -> (SocketAddr, Hits) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits: Hits = Arc::default();
    let h = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let root = root.clone();
            let hits = h.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    req.extend_from_slice(&buf[..n]);
                }
                let line = String::from_utf8_lossy(&req)
                    .lines()
                    .next()
                    .unwrap()
                    .to_string();
                let path = line.split(' ').nth(1).unwrap().to_string();
                *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
                let (truncate, rel) = match path.strip_prefix("/truncated/") {
                    Some(r) => (true, r.to_string()),
                    None => (false, path.trim_start_matches('/').to_string()),
                };
                match tokio::fs::read(root.join(&rel)).await {
                    Ok(body) => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        sock.write_all(head.as_bytes()).await.unwrap();
                        let send = if truncate {
                            &body[..body.len() / 2]
                        } else {
                            &body
                        };
                        // In pieces, as a real server streams.
                        for chunk in send.chunks(64 << 10) {
                            if sock.write_all(chunk).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(_) => {
                        let _ = sock
                            .write_all(
                                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                            )
                            .await;
                    }
                }
                let _ = sock.shutdown().await;
            });
        }
    });
    (addr, hits)
}

fn sha256_file(p: &Path) -> String {
    hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()))
}

fn source(name: &str, addr: SocketAddr, path: &str) -> FeedSource {
    FeedSource {
        name: name.into(),
        url: format!("http://{addr}/{path}"),
        sha256: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_downloads_verifies_and_imports() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    std::fs::create_dir_all(www.join("secdb/v3.20")).unwrap();
    zip_dir(&Path::new(DATA).join("go/vulndb-osv"), &www.join("go.zip"));
    std::fs::write(www.join("tracker.json"), tracker_json()).unwrap();
    std::fs::copy(
        Path::new(DATA).join("alpine/secdb/v3.20/main.json"),
        www.join("secdb/v3.20/main.json"),
    )
    .unwrap();
    std::fs::write(www.join("junk.json"), b"[\"not a feed\"]").unwrap();
    let (addr, hits) = serve(www.clone()).await;
    let db = VulnDb::open(tmp.path().join("db")).unwrap();

    let sources = vec![
        source("osv/Go", addr, "go.zip"),
        source("debian-tracker", addr, "tracker.json"),
        source("alpine/v3.20/main", addr, "secdb/v3.20/main.json"),
    ];
    let out = db.update(&sources).await;
    let mut statuses = Vec::new();
    for (name, r) in &out {
        match r {
            Ok(UpdateOutcome::Imported(s)) => statuses.push(s.clone()),
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(statuses[0].records, 319);
    assert_eq!(statuses[0].sha256, sha256_file(&www.join("go.zip")));
    assert_eq!(statuses[1].sha256, sha256_file(&www.join("tracker.json")));
    assert_eq!(statuses[2].source, sources[2].url);
    let idx = db.index().unwrap();
    assert!(
        idx.matches("Go", "stdlib", "1.21.1")
            .unwrap()
            .iter()
            .any(|f| f.id == "CVE-2023-39325")
    );
    assert!(
        idx.matches("Debian:12", "glibc", "2.36-9+deb12u2")
            .unwrap()
            .iter()
            .any(|f| f.id == "CVE-2023-4911")
    );
    assert!(
        idx.matches("Alpine:v3.20", "openssl", "3.3.1-r3")
            .unwrap()
            .iter()
            .any(|f| f.id == "CVE-2024-6119")
    );

    // Same content again: downloaded, recognised, not imported.
    let before = db.status().unwrap();
    let out = db.update(&sources).await;
    for (name, r) in &out {
        assert!(
            matches!(r, Ok(UpdateOutcome::Unchanged(_))),
            "{name}: {r:?}"
        );
    }
    assert_eq!(db.status().unwrap(), before);
    assert_eq!(hits.lock().unwrap()["/go.zip"], 2);

    // New content for one feed.
    let text = std::fs::read_to_string(Path::new(DATA).join("alpine/secdb/v3.21/main.json"))
        .unwrap()
        .replace("\"v3.21\"", "\"v3.20\"");
    std::fs::write(www.join("secdb/v3.20/main.json"), text).unwrap();
    let out = db.update(&sources[2..]).await;
    match &out[0].1 {
        Ok(UpdateOutcome::Imported(s)) => assert_ne!(s.sha256, statuses[2].sha256),
        other => panic!("{other:?}"),
    }

    // Failures: each alone, each keeping the previous import.
    let before = db.status().unwrap();
    let mut pinned = source("osv/Go", addr, "go.zip");
    pinned.sha256 = Some("00".repeat(32));
    let bad = vec![
        source("debian-tracker", addr, "missing.json"),
        source("osv/Go", addr, "truncated/go.zip"),
        pinned,
        source("alpine/v3.20/main", addr, "junk.json"),
        source("unreachable", "127.0.0.1:1".parse().unwrap(), "x.json"),
    ];
    let out = db.update(&bad).await;
    assert!(
        matches!(&out[0].1, Err(DbError::Http { message, .. }) if message.contains("404")),
        "{:?}",
        out[0]
    );
    assert!(
        matches!(&out[1].1, Err(DbError::Http { .. })),
        "{:?}",
        out[1]
    );
    assert!(
        matches!(&out[2].1, Err(DbError::Checksum { .. })),
        "{:?}",
        out[2]
    );
    assert!(
        matches!(&out[3].1, Err(DbError::UnknownFormat { .. })),
        "{:?}",
        out[3]
    );
    assert!(
        matches!(&out[4].1, Err(DbError::Http { .. })),
        "{:?}",
        out[4]
    );
    assert_eq!(db.status().unwrap(), before);
    // No temporary download is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join("db"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".feed-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn the_default_sources_are_the_public_feeds() {
    let s = default_sources();
    assert_eq!(s.len(), 7 + 1 + 8);
    assert!(s.iter().all(|s| s.url.starts_with("https://")));
    assert!(
        s.iter().any(
            |s| s.url == "https://osv-vulnerabilities.storage.googleapis.com/crates.io/all.zip"
        )
    );
    assert!(
        s.iter()
            .any(|s| s.url == "https://secdb.alpinelinux.org/v3.21/community.json")
    );
    let names: std::collections::HashSet<_> = s.iter().map(|s| &s.name).collect();
    assert_eq!(names.len(), s.len(), "names are unique");
}
