//! `POST /api/v1/backup` (administrators): an online backup, streamed to the caller as a tar
//! archive (docs/operations.md, "Backups"). The operation is `service::manage::Manage::backup`
//! (authorized and audited there); this file only streams what it started.
//!
//! Streaming, rather than writing a directory on the server's side: in a Kubernetes pod the
//! server's disk is the volume the backup must protect against losing, so the backup has to
//! leave the pod; the client (`wharf backup --server URL --to DIR`, from a CronJob or a laptop)
//! writes it where the operator wants and verifies every entry as it arrives.
//!
//! The archive holds `meta.redb` (the snapshot), then every blob it names
//! (`blobs/<alg>/<xx>/<hex>`, each checked against its digest as it is read), then
//! `wharf-backup.json` (counts and the snapshot's SHA-256). A failure part-way ends the body
//! before the manifest, so the client cannot mistake the archive for a complete backup: with
//! an error (a blob missing, storage failing), or cleanly after the entry of a blob that does
//! not match its digest (so the client, which verifies each entry, names it). Garbage collection stays paused until the
//! stream ends or the client goes away.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use api::backup::{BLOBS_HEADER, BYTES_HEADER, MEDIA_TYPE};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use futures_util::StreamExt;
use oci::{Algorithm, Hasher};
use service::backup::BackupStart;
use store::backup::{
    BLOB_PAGE, BackupManifest, FORMAT, FileSum, MANIFEST_FILE, META_FILE, SnapshotReader, TAR_END,
    blob_rel_path, tar_header, tar_padding,
};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use crate::Registry;
use crate::error::ApiError;
use crate::mgmt::admin_or_loopback_actor;

/// Chunks queued between the producer and the connection.
const QUEUE: usize = 4;
/// Read size of the snapshot file.
const CHUNK: usize = 1024 * 1024;

pub(crate) fn routes() -> Router<Registry> {
    Router::new().route("/api/v1/backup", post(backup))
}

async fn backup(State(reg): State<Registry>, req: Request) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let actor = admin_or_loopback_actor(&reg, &parts).await?;
    let start = reg.service().manage().backup(&actor).await?;
    let counts = start.counts();
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(QUEUE);
    tokio::spawn(async move {
        let t0 = Instant::now();
        let tx2 = tx.clone();
        match produce(&reg, &start, &tx).await {
            Ok(()) => tracing::info!(
                blobs = counts.blobs,
                bytes = counts.blob_bytes,
                seconds = t0.elapsed().as_secs_f64(),
                "backup streamed"
            ),
            // The damaged blob's entry is complete: the client finds the damage itself (and the
            // manifest never comes), so the body ends cleanly and nothing it holds is lost.
            Err(Failure::Corrupt(e)) => tracing::error!(error = %e, "backup failed"),
            Err(Failure::Abort(e)) => {
                tracing::error!(error = %e, "backup failed");
                let _ = tx2.send(Err(io::Error::other(e))).await;
            }
        }
        // `start` (the snapshot file and the collector's pause) goes here.
        drop(start);
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed();
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
    h.insert(BLOBS_HEADER, HeaderValue::from(counts.blobs));
    h.insert(BYTES_HEADER, HeaderValue::from(counts.blob_bytes));
    Ok(resp)
}

type Tx = mpsc::Sender<io::Result<Bytes>>;

/// Why a backup stream stops early.
enum Failure {
    /// The stream must be cut (the body ends with an error).
    Abort(String),
    /// A blob in the store does not match its digest; its entry was completed, so the stream
    /// ends without its manifest.
    Corrupt(String),
}

impl From<String> for Failure {
    fn from(e: String) -> Self {
        Failure::Abort(e)
    }
}

/// Sends `b`; an error means the client went away.
async fn send(tx: &Tx, b: Bytes) -> Result<(), String> {
    tx.send(Ok(b))
        .await
        .map_err(|_| "the client went away".to_owned())
}

async fn send_entry_end(tx: &Tx, size: u64) -> Result<(), String> {
    let pad = tar_padding(size);
    if pad > 0 {
        send(tx, Bytes::from(vec![0u8; pad])).await?;
    }
    Ok(())
}

async fn produce(reg: &Registry, start: &BackupStart, tx: &Tx) -> Result<(), Failure> {
    let counts = start.counts();
    // 1. The metadata snapshot.
    let path = start.snapshot().path().to_owned();
    let mut f = tokio::fs::File::open(&path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let size = f.metadata().await.map_err(|e| e.to_string())?.len();
    send(
        tx,
        Bytes::copy_from_slice(&tar_header(META_FILE, size).map_err(|e| e.to_string())?),
    )
    .await?;
    let mut h = Hasher::new(Algorithm::Sha256);
    let mut sent = 0u64;
    while sent < size {
        let mut buf = vec![0u8; CHUNK.min((size - sent) as usize)];
        f.read_exact(&mut buf)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        h.update(&buf);
        sent += buf.len() as u64;
        send(tx, Bytes::from(buf)).await?;
    }
    send_entry_end(tx, size).await?;
    let metadata = FileSum {
        path: META_FILE.into(),
        size,
        sha256: h.finish().hex().to_owned(),
    };

    // 2. Every blob it names, a page at a time.
    let reader = Arc::new(SnapshotReader::open(&path).map_err(|e| e.to_string())?);
    let blobs = reg.service().blobs().clone();
    let (mut n, mut bytes) = (0u64, 0u64);
    let mut after: Option<String> = None;
    loop {
        let (r, a) = (reader.clone(), after.clone());
        let page = tokio::task::spawn_blocking(move || r.blobs(a.as_deref(), BLOB_PAGE))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.to_string());
        for (d, size) in page {
            let head = tar_header(&blob_rel_path(&d), size).map_err(|e| e.to_string())?;
            let mut body = blobs
                .get(&d, 0, size)
                .await
                .map_err(|e| format!("blob {d} named by the snapshot: {e}"))?;
            send(tx, Bytes::copy_from_slice(&head)).await?;
            let mut h = Hasher::new(d.algorithm());
            let mut got = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| format!("reading blob {d}: {e}"))?;
                got += chunk.len() as u64;
                if got > size {
                    break;
                }
                h.update(&chunk);
                send(tx, chunk).await?;
            }
            let actual = h.finish();
            if got != size || actual != d {
                let msg = format!(
                    "blob {d} in the store is corrupt: {got} bytes hashing to {actual}, expected {size} bytes"
                );
                if got == size {
                    send_entry_end(tx, size).await?;
                    return Err(Failure::Corrupt(msg));
                }
                return Err(Failure::Abort(msg));
            }
            send_entry_end(tx, size).await?;
            n += 1;
            bytes += size;
        }
    }
    if (n, bytes) != (counts.blobs, counts.blob_bytes) {
        return Err(Failure::Abort(format!(
            "the snapshot listed {n} blobs ({bytes} bytes) but counted {} ({} bytes)",
            counts.blobs, counts.blob_bytes
        )));
    }

    // 3. The manifest, last.
    let m = BackupManifest {
        format: FORMAT,
        created: start.created(),
        wharf_version: env!("CARGO_PKG_VERSION").into(),
        metadata,
        counts,
    };
    let body = serde_json::to_vec_pretty(&m).map_err(|e| e.to_string())?;
    let len = body.len() as u64;
    send(
        tx,
        Bytes::copy_from_slice(&tar_header(MANIFEST_FILE, len).map_err(|e| e.to_string())?),
    )
    .await?;
    send(tx, Bytes::from(body)).await?;
    send_entry_end(tx, len).await?;
    Ok(send(tx, Bytes::from_static(&TAR_END)).await?)
}
