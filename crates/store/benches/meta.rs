//! Metadata store benchmarks: the manifest read path (every pull starts there) and the
//! group-committed write path (every push ends there).

use std::sync::Arc;

use bytes::Bytes;
use divan::Bencher;
use oci::{Digest, Reference};
use store::{ManifestRecord, MetaStore, RedbMetaStore};

fn main() {
    divan::main();
}

fn record(i: usize) -> ManifestRecord {
    let body = Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"annotations":{{"i":"{i}"}}}}"#
    ));
    ManifestRecord {
        digest: Digest::sha256(&body),
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        body,
        blobs: vec![],
        children: vec![],
        subject: None,
        referrer: None,
        frozen_tags: vec![],
        actor: "bench".into(),
    }
}

#[divan::bench]
fn get_manifest_by_tag(b: Bencher) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let meta = RedbMetaStore::open(&dir.path().join("meta.redb")).unwrap();
    rt.block_on(meta.put_manifest("bench/app", record(0), vec!["latest".into()]))
        .unwrap();
    let tag = Reference::Tag("latest".into());
    b.bench(|| {
        rt.block_on(meta.get_manifest("bench/app", &tag))
            .unwrap()
            .unwrap()
    });
}

/// 64 concurrent manifest pushes: measures how well group commit folds them into few fsyncs.
#[divan::bench(sample_count = 10)]
fn put_64_manifests_concurrently(b: Bencher) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let meta = Arc::new(RedbMetaStore::open(&dir.path().join("meta.redb")).unwrap());
    let mut n = 0usize;
    b.bench_local(|| {
        rt.block_on(async {
            let tasks: Vec<_> = (0..64)
                .map(|_| {
                    n += 1;
                    let (meta, rec) = (meta.clone(), record(n));
                    tokio::spawn(async move {
                        meta.put_manifest("bench/app", rec, vec![format!("t{n}")])
                            .await
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap().unwrap();
            }
        })
    });
}
