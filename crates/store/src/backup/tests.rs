use bytes::Bytes;

use super::*;
use crate::{ManifestRecord, MetaStore, RedbMetaStore};

/// A data directory with `n` blobs linked in `repo` and one manifest listing them, tagged `t`.
async fn data_dir(dir: &Path, repo: &str, n: usize, tag: &str) -> (RedbMetaStore, Vec<Digest>) {
    let meta = RedbMetaStore::open(&dir.join(META_FILE)).unwrap();
    let mut ds = Vec::new();
    for i in 0..n {
        let body = format!("blob {repo} {i} {}", "x".repeat(i * 1000));
        let d = Digest::sha256(body.as_bytes());
        let p = dir.join(blob_rel_path(&d));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &body).unwrap();
        meta.link_blob(repo, &d, body.len() as u64).await.unwrap();
        ds.push(d);
    }
    let body = Bytes::from(format!(
        "{{\"layers\":{:?}}}",
        ds.iter().map(|d| d.to_string()).collect::<Vec<_>>()
    ));
    meta.put_manifest(
        repo,
        ManifestRecord {
            digest: Digest::sha256(&body),
            media_type: oci::media_types::OCI_MANIFEST.into(),
            body,
            blobs: ds.clone(),
            children: vec![],
            subject: None,
            referrer: None,
            frozen_tags: vec![],
            actor: "test".into(),
        },
        vec![tag.into()],
    )
    .await
    .unwrap();
    (meta, ds)
}

/// Backs up `data` (as `wharf backup` on a data directory does) into `to`.
async fn backup(meta: &RedbMetaStore, data: &Path, to: &Path, link: bool) -> BackupManifest {
    let snap = meta.backup_snapshot().await.unwrap();
    let mut dir = BackupDir::create(to).unwrap();
    dir.put_meta(&mut File::open(snap.path()).unwrap(), &mut |_| {})
        .unwrap();
    let reader = SnapshotReader::open(snap.path()).unwrap();
    let mut after = None;
    loop {
        let page = reader.blobs(after.as_deref(), 2).unwrap();
        let Some((last, _)) = page.last() else { break };
        after = Some(last.to_string());
        for (d, size) in page {
            let src = data.join(blob_rel_path(&d));
            if !(link && dir.link_blob(&d, size, &src, &mut |_| {}).unwrap()) {
                dir.put_blob(&d, size, &mut File::open(&src).unwrap(), &mut |_| {})
                    .unwrap();
            }
        }
    }
    dir.finish(1, "test", snap.counts()).unwrap()
}

#[tokio::test]
async fn a_snapshot_holds_what_was_committed_before_it_and_nothing_after() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let (meta, ds) = data_dir(&data, "a/b", 3, "v1").await;
    let snap = meta.backup_snapshot().await.unwrap();
    // Written after the snapshot: not in it.
    meta.link_blob("c/d", &Digest::sha256(b"later"), 5)
        .await
        .unwrap();
    let c = snap.counts();
    assert_eq!((c.repositories, c.manifests, c.tags, c.blobs), (1, 1, 1, 3));
    let r = SnapshotReader::open(snap.path()).unwrap();
    let mut listed: Vec<Digest> = r
        .blobs(None, 100)
        .unwrap()
        .into_iter()
        .map(|b| b.0)
        .collect();
    let mut want = ds.clone();
    listed.sort_by_key(|d| d.to_string());
    want.sort_by_key(|d| d.to_string());
    assert_eq!(listed, want);
    let path = snap.path().to_owned();
    assert!(path.starts_with(&data), "written beside the database");
    drop(r);
    drop(snap);
    assert!(!path.exists(), "the snapshot file goes with its handle");
}

#[tokio::test]
async fn backup_then_restore_serves_the_same_metadata_and_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, bk, new) = (
        tmp.path().join("data"),
        tmp.path().join("bk"),
        tmp.path().join("new"),
    );
    std::fs::create_dir(&data).unwrap();
    let (meta, ds) = data_dir(&data, "team/app", 5, "1.0").await;
    let m = backup(&meta, &data, &bk, true).await;
    assert_eq!(m.counts.blobs, 5);
    assert_eq!(read_manifest(&bk).unwrap(), m);
    let r = restore(&bk, &new, &mut |_| {}).unwrap();
    assert_eq!((r.blobs, r.blob_bytes), (5, m.counts.blob_bytes));
    drop(meta);
    let restored = RedbMetaStore::open(&new.join(META_FILE)).unwrap();
    let got = restored
        .get_manifest("team/app", &oci::Reference::Tag("1.0".into()))
        .await
        .unwrap()
        .expect("the tag is restored");
    assert_eq!(got.digest.algorithm(), Algorithm::Sha256);
    for d in &ds {
        assert_eq!(
            std::fs::read(new.join(blob_rel_path(d))).unwrap(),
            std::fs::read(data.join(blob_rel_path(d))).unwrap()
        );
        assert!(restored.blob_linked("team/app", d).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn restore_refuses_a_flipped_byte_a_missing_blob_and_a_used_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, bk) = (tmp.path().join("data"), tmp.path().join("bk"));
    std::fs::create_dir(&data).unwrap();
    let (meta, ds) = data_dir(&data, "a", 3, "t").await;
    backup(&meta, &data, &bk, false).await;

    // A flipped byte in a blob.
    let p = bk.join(blob_rel_path(&ds[1]));
    let mut b = std::fs::read(&p).unwrap();
    b[0] ^= 1;
    std::fs::write(&p, &b).unwrap();
    let new = tmp.path().join("new");
    let e = restore(&bk, &new, &mut |_| {}).unwrap_err();
    assert!(
        matches!(&e, BackupError::Corrupt { what, .. } if what.contains(&ds[1].to_string())),
        "{e}"
    );
    assert!(!new.exists(), "a failed restore leaves nothing behind");
    b[0] ^= 1;
    std::fs::write(&p, &b).unwrap();

    // A missing blob.
    std::fs::remove_file(&p).unwrap();
    let e = restore(&bk, &new, &mut |_| {}).unwrap_err();
    assert!(matches!(e, BackupError::Missing(_)), "{e}");
    std::fs::write(&p, &b).unwrap();

    // A used destination.
    std::fs::create_dir(&new).unwrap();
    std::fs::write(new.join("x"), "x").unwrap();
    let e = restore(&bk, &new, &mut |_| {}).unwrap_err();
    assert!(matches!(e, BackupError::NotEmpty(_)), "{e}");
    assert!(new.join("x").exists());

    // The metadata copy changed.
    std::fs::remove_file(new.join("x")).unwrap();
    let mut m = std::fs::read(bk.join(META_FILE)).unwrap();
    let last = m.len() - 1;
    m[last] ^= 0xff;
    std::fs::write(bk.join(META_FILE), &m).unwrap();
    let e = restore(&bk, &new, &mut |_| {}).unwrap_err();
    assert!(matches!(e, BackupError::Corrupt { .. }), "{e}");
    assert!(new.exists() && std::fs::read_dir(&new).unwrap().next().is_none());

    // No manifest: not a (complete) backup.
    std::fs::remove_file(bk.join(MANIFEST_FILE)).unwrap();
    let e = restore(&bk, &new, &mut |_| {}).unwrap_err();
    assert!(matches!(e, BackupError::Invalid(_)), "{e}");
}

fn tar_of(entries: &[(&str, &[u8])], end: bool) -> Vec<u8> {
    let mut v = Vec::new();
    for (p, body) in entries {
        v.extend_from_slice(&tar_header(p, body.len() as u64).unwrap());
        v.extend_from_slice(body);
        v.extend(std::iter::repeat_n(0u8, tar_padding(body.len() as u64)));
    }
    if end {
        v.extend_from_slice(&TAR_END);
    }
    v
}

#[tokio::test]
async fn the_tar_stream_unpacks_to_the_same_backup_and_refuses_what_is_not_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, a) = (tmp.path().join("data"), tmp.path().join("a"));
    std::fs::create_dir(&data).unwrap();
    let (meta, _) = data_dir(&data, "r", 4, "t").await;
    let m = backup(&meta, &data, &a, false).await;
    // The stream a server sends: metadata, blobs, manifest last.
    let meta_bytes = std::fs::read(a.join(META_FILE)).unwrap();
    let mut entries: Vec<(String, Vec<u8>)> = vec![(META_FILE.into(), meta_bytes)];
    for (d, _) in SnapshotReader::open(&a.join(META_FILE))
        .unwrap()
        .blobs(None, 100)
        .unwrap()
    {
        let rel = blob_rel_path(&d);
        entries.push((rel.clone(), std::fs::read(a.join(&rel)).unwrap()));
    }
    let man = serde_json::to_vec(&m).unwrap();
    entries.push((MANIFEST_FILE.into(), man));
    let refs: Vec<(&str, &[u8])> = entries.iter().map(|(p, b)| (p.as_str(), &b[..])).collect();

    let b = tmp.path().join("b");
    let got = unpack_tar(
        &tar_of(&refs, true)[..],
        BackupDir::create(&b).unwrap(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(got, m);
    restore(&b, &tmp.path().join("restored"), &mut |_| {}).unwrap();

    // Cut before the manifest: incomplete.
    let c = tmp.path().join("c");
    let e = unpack_tar(
        &tar_of(&refs[..refs.len() - 1], true)[..],
        BackupDir::create(&c).unwrap(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(e, BackupError::Missing(_)), "{e}");
    // Cut in the middle of an entry.
    let d = tmp.path().join("d");
    let whole = tar_of(&refs, true);
    assert!(
        unpack_tar(
            &whole[..whole.len() / 2],
            BackupDir::create(&d).unwrap(),
            &mut |_| {}
        )
        .is_err()
    );
    // A blob whose bytes are not its name.
    let mut bad = refs.clone();
    bad[1].1 = b"something else";
    let e2 = tmp.path().join("e");
    let e = unpack_tar(
        &tar_of(&bad, true)[..],
        BackupDir::create(&e2).unwrap(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(e, BackupError::Corrupt { .. }), "{e}");
    // A path outside the layout.
    assert!(tar_header("../etc/passwd", 1).is_err());
    let mut h = tar::Header::new_ustar();
    h.as_ustar_mut().unwrap().name[..13].copy_from_slice(b"../etc/passwd");
    h.set_size(1);
    h.set_cksum();
    let mut evil = h.as_bytes().to_vec();
    evil.extend_from_slice(&[b'x'; 512]);
    evil.extend_from_slice(&TAR_END);
    let f = tmp.path().join("f");
    let e = unpack_tar(&evil[..], BackupDir::create(&f).unwrap(), &mut |_| {}).unwrap_err();
    assert!(matches!(e, BackupError::Invalid(_)), "{e}");
    assert!(!tmp.path().join("etc").exists());
}

#[test]
fn entries_are_classified_by_path() {
    let d = Digest::sha256(b"x");
    assert_eq!(
        Entry::of(&blob_rel_path(&d)).unwrap(),
        Entry::Blob(d.clone())
    );
    assert_eq!(Entry::of("meta.redb").unwrap(), Entry::Meta);
    assert_eq!(Entry::of("./wharf-backup.json").unwrap(), Entry::Manifest);
    let wrong_fan = format!("blobs/sha256/zz/{}", d.hex());
    for bad in [
        "",
        "blobs",
        "auth/key.pem",
        "/meta.redb",
        &wrong_fan,
        "blobs/sha256/ab/ab",
    ] {
        assert!(Entry::of(bad).is_err(), "{bad:?}");
    }
}
