//! Tests of the filesystem blob store: the upload reader and the listings.

use super::*;

fn blob(n: u8) -> Digest {
    Digest::sha256(&[n; 7])
}

#[test]
fn blob_files_are_listed_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let mut want = Vec::new();
    for n in 0..20u8 {
        let d = blob(n);
        let p = dir.path().join("blobs/sha256").join(&d.hex()[..2]);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join(d.hex()), [n; 3]).unwrap();
        want.push(d.hex().to_owned());
    }
    want.sort();
    let mut got = Vec::new();
    let mut after: Option<Digest> = None;
    loop {
        let page = list_blob_files(dir.path(), after.as_ref(), 3).unwrap();
        let Some(last) = page.last() else { break };
        assert!(page.len() <= 3);
        after = Some(last.digest.clone());
        got.extend(page.iter().map(|f| f.digest.hex().to_owned()));
    }
    assert_eq!(got, want);
}

/// A part whose bytes arrive when the test sends them.
fn fed_part() -> (tokio::sync::mpsc::Sender<io::Result<Bytes>>, BlobStream) {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    (tx, Box::pin(tokio_stream_from(rx)))
}

/// Polls `r` from `offset` until it holds `want` bytes (the writer thread is a moment behind).
async fn read_until(r: &dyn UploadReader, offset: u64, want: usize) -> Bytes {
    for _ in 0..2000 {
        let b = r.read_at(offset, 1 << 20).await.unwrap();
        if b.len() >= want {
            return b;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    panic!("the reader never saw {want} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_reader_follows_appends_and_outlives_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(FsBlobStore::open(dir.path()).unwrap());
    s.upload_create("u1").await.unwrap();
    let r = s.upload_open("u1").await.unwrap();
    assert!(
        r.read_at(0, 16).await.unwrap().is_empty(),
        "nothing written yet"
    );

    let (tx, body) = fed_part();
    let appender = {
        let s = s.clone();
        tokio::spawn(async move { s.upload_append("u1", Some(0), None, body).await })
    };
    tx.send(Ok(Bytes::from_static(b"hello "))).await.unwrap();
    // Another task reads the bytes of the part still in progress.
    let (r, seen) = tokio::spawn(async move {
        let seen = read_until(r.as_ref(), 0, 6).await;
        (r, seen)
    })
    .await
    .unwrap();
    assert_eq!(&seen[..], b"hello ");
    tx.send(Ok(Bytes::from_static(b"world"))).await.unwrap();
    assert_eq!(&read_until(r.as_ref(), 6, 5).await[..], b"world");
    drop(tx);
    assert_eq!(appender.await.unwrap().unwrap().size, 11);

    let d = Digest::sha256(b"hello world");
    assert_eq!(s.upload_commit("u1", &d).await.unwrap(), 11);
    // The upload is gone, but the open reader keeps reading the (now committed) bytes.
    assert!(matches!(
        s.upload_open("u1").await,
        Err(StoreError::UploadUnknown)
    ));
    assert_eq!(&r.read_at(0, 64).await.unwrap()[..], b"hello world");
    assert_eq!(&r.read_at(6, 3).await.unwrap()[..], b"wor");
    assert!(r.read_at(11, 8).await.unwrap().is_empty());
    assert!(matches!(
        s.upload_open("../blobs").await,
        Err(StoreError::UploadUnknown)
    ));
}

/// Pages through `list` (`after`, `limit`) and checks each page's bound and order.
async fn all_pages<T, K: Ord + Clone, F, Fut>(
    limit: usize,
    key: impl Fn(&T) -> K,
    list: F,
) -> Vec<T>
where
    F: Fn(Option<K>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>>>,
{
    let mut out: Vec<T> = Vec::new();
    let mut after = None;
    loop {
        let page = list(after.clone()).await.unwrap();
        assert!(page.len() <= limit, "a page holds at most `limit` entries");
        let Some(last) = page.last() else { break };
        after = Some(key(last));
        out.extend(page);
    }
    assert!(
        out.windows(2).all(|w| key(&w[0]) < key(&w[1])),
        "strictly ordered, no repeats"
    );
    out
}

#[tokio::test]
async fn blobs_and_uploads_are_listed_in_key_order_a_page_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let s = FsBlobStore::open(dir.path()).unwrap();
    let part = |b: &'static [u8]| -> BlobStream {
        Box::pin(futures_util::stream::once(async move {
            Ok(Bytes::from_static(b))
        }))
    };
    let mut blobs = Vec::new();
    for (i, body) in [&b"a"[..], b"bb", b"ccc", b"dddd", b"eeeee", b"ffffff", b"g"]
        .into_iter()
        .enumerate()
    {
        let id = format!("c{i}");
        s.upload_create(&id).await.unwrap();
        s.upload_append(&id, Some(0), None, part(body))
            .await
            .unwrap();
        let d = Digest::sha256(body);
        s.upload_commit(&id, &d).await.unwrap();
        blobs.push((d.to_string(), body.len() as u64));
    }
    blobs.sort();
    let mut uploads = Vec::new();
    for i in 0..5u64 {
        let id = format!("up-{}", 4 - i);
        s.upload_create(&id).await.unwrap();
        s.upload_append(&id, Some(0), None, part(&b"xyzw"[..i as usize]))
            .await
            .unwrap();
        uploads.push((id, i));
    }
    uploads.sort();

    let listed = all_pages(
        2,
        |b: &BlobEntry| b.digest.to_string(),
        |after| {
            let after = after.map(|a| Digest::parse(&a).unwrap());
            let s = &s;
            async move { s.list_blobs(after.as_ref(), 2).await }
        },
    )
    .await;
    let listed: Vec<_> = listed
        .iter()
        .map(|b| (b.digest.to_string(), b.size))
        .collect();
    assert_eq!(listed, blobs);

    let listed = all_pages(
        2,
        |u: &UploadEntry| u.id.clone(),
        |after| {
            let s = &s;
            async move { s.list_uploads(after.as_deref(), 2).await }
        },
    )
    .await;
    let listed: Vec<_> = listed.iter().map(|u| (u.id.clone(), u.size)).collect();
    assert_eq!(listed, uploads, "committed uploads are no longer listed");
    // A page after the last entry is empty; a limit of zero lists nothing.
    assert!(s.list_uploads(Some("up-4"), 2).await.unwrap().is_empty());
    assert!(s.list_blobs(None, 0).await.unwrap().is_empty());
}

#[test]
fn reused_read_buffers_hold_only_what_was_read() {
    let dir = tempfile::tempdir().unwrap();
    let long = dir.path().join("long");
    std::fs::write(&long, vec![7u8; 3000]).unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, b"short").unwrap();
    let long = std::fs::File::open(&long).unwrap();
    let short = std::fs::File::open(&short).unwrap();
    // Fill a buffer, free it, and read less into the same one: nothing of the first read shows.
    for _ in 0..2 {
        let first = pread(&long, 0, 3000).unwrap();
        assert_eq!(&first[..], &[7u8; 3000][..]);
        drop(first);
        assert_eq!(&pread(&short, 1, 100).unwrap()[..], b"hort");
        assert!(pread(&short, 5, 100).unwrap().is_empty());
    }
    // Held buffers are not handed out twice.
    let held: Vec<Bytes> = (0..READ_BUFS_KEPT + 2)
        .map(|i| pread(&long, i as u64, 10).unwrap())
        .collect();
    assert!(held.iter().all(|b| b[..] == [7u8; 10]));
    assert_eq!(pread(&short, 0, 5).unwrap(), &b"short"[..]);
    drop(held);
    assert!(READ_BUFS.lock().unwrap().len() <= READ_BUFS_KEPT);
    // Larger than a reusable buffer: read into memory of its own, up to the end of the file.
    assert_eq!(pread(&long, 0, READ_BUF + 10).unwrap().len(), 3000);
}
