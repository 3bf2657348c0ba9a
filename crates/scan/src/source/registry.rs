//! Registry sources (`docker://` and bare references), read through the project's own client
//! (`client::Client`: its authentication, token cache, credentials and plain-HTTP rules).
//!
//! Manifests and the config are fetched whole (capped) and verified by the client; a layer is
//! streamed by a task that writes it into a bounded in-memory pipe (256 KiB) while the
//! client hashes it: the reader sees the bytes as they come and, at the end, the client's
//! verdict (a digest mismatch or a broken transfer is an error from the last read).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use client::Client;
use oci::{Descriptor, ImageRef, ManifestKind};
use tokio::io::{AsyncRead, DuplexStream, ReadBuf};
use tokio::runtime::Handle;
use tokio_util::io::SyncIoBridge;

use super::{
    ImageMeta, MAX_CONFIG_BYTES, MAX_INDEX_DEPTH, MAX_MANIFEST_BYTES, OpenOptions, Result,
    SourceError, choose_from_index, layout::check_platform, parse_manifest,
};

/// The pipe between the fetching task and the reader: what bounds a layer's memory.
const PIPE_BYTES: usize = 256 * 1024;

/// An image in a registry, resolved to one image manifest (pinned by digest).
#[derive(Debug, Clone)]
pub struct RegistryImage {
    client: Client,
    image: ImageRef,
    meta: ImageMeta,
}

impl RegistryImage {
    /// Fetches the manifest the reference names (following an index to the platform's image,
    /// `linux/amd64` by default) and its config, all verified against their digests.
    pub async fn open(
        client: Client,
        image: &ImageRef,
        options: &OpenOptions,
    ) -> Result<RegistryImage> {
        let platform = options.platform.clone().unwrap_or_default();
        let mut current = image.clone();
        let mut index_digest = None;
        for _ in 0..MAX_INDEX_DEPTH {
            let fetched = client
                .get_manifest_limited(&current, MAX_MANIFEST_BYTES)
                .await?;
            let what = format!("manifest {current}");
            let m = parse_manifest(Some(&fetched.media_type), &fetched.bytes, &what)?;
            match m.kind {
                ManifestKind::Index => {
                    index_digest = Some(fetched.digest.clone());
                    let child = choose_from_index(&m, &platform, &what)?;
                    current = image.with_digest(child.digest);
                }
                ManifestKind::Image => {
                    let pinned = image.with_digest(fetched.digest.clone());
                    let config_d = m
                        .config
                        .clone()
                        .ok_or_else(|| SourceError::malformed(&what, "no config"))?;
                    let config = client
                        .get_blob(&pinned, &config_d.digest, MAX_CONFIG_BYTES)
                        .await?;
                    let meta = ImageMeta::new(
                        fetched.digest,
                        &m,
                        fetched.bytes.to_vec(),
                        index_digest,
                        config.to_vec(),
                    )?;
                    check_platform(&meta, options)?;
                    tracing::debug!(image = %pinned, layers = meta.layers.len(), "resolved image");
                    return Ok(RegistryImage {
                        client,
                        image: pinned,
                        meta,
                    });
                }
            }
        }
        Err(SourceError::malformed(
            image.to_string(),
            format!("indexes nest deeper than {MAX_INDEX_DEPTH}"),
        ))
    }

    /// The image's manifest, config and layers.
    pub fn meta(&self) -> &ImageMeta {
        &self.meta
    }

    /// The image reference, pinned to the chosen manifest's digest.
    pub fn image(&self) -> &ImageRef {
        &self.image
    }

    /// Starts streaming a blob: a task fetches it into a bounded pipe; the returned reader
    /// yields its bytes and fails at the end if the digest does not match. Needs a tokio
    /// runtime (the current one, or the one a `spawn_blocking` thread belongs to):
    /// [`SourceError::NoRuntime`] otherwise.
    pub fn open_blob(&self, d: &Descriptor) -> Result<RegistryBlob> {
        let handle = Handle::try_current().map_err(|e| SourceError::NoRuntime(e.to_string()))?;
        let (mut writer, reader) = tokio::io::duplex(PIPE_BYTES);
        let outcome: Arc<Mutex<Option<client::Result<u64>>>> = Arc::new(Mutex::new(None));
        let slot = outcome.clone();
        let client = self.client.clone();
        let image = self.image.clone();
        let digest = d.digest.clone();
        handle.spawn(async move {
            let r = client.get_blob_to(&image, &digest, &mut writer).await;
            if let Ok(mut s) = slot.lock() {
                *s = Some(r);
            }
            // The pipe closes only now, after the verdict is in the slot.
            drop(writer);
        });
        Ok(RegistryBlob {
            reader,
            outcome,
            expected_size: (d.size >= 0).then_some(d.size as u64),
            read: 0,
            done: false,
        })
    }

    /// [`RegistryImage::open_blob`] as a blocking `std::io::Read`, for a layer walker on a
    /// blocking thread (`tokio::task::spawn_blocking`, whose threads see their runtime).
    /// Never read it on a runtime worker thread (it blocks the thread).
    pub fn open_blob_blocking(&self, d: &Descriptor) -> Result<SyncIoBridge<RegistryBlob>> {
        let handle = Handle::try_current().map_err(|e| SourceError::NoRuntime(e.to_string()))?;
        Ok(SyncIoBridge::new_with_handle(self.open_blob(d)?, handle))
    }
}

/// A registry blob as it streams in; verified at the end (see [`RegistryImage::open_blob`]).
#[derive(Debug)]
pub struct RegistryBlob {
    reader: DuplexStream,
    outcome: Arc<Mutex<Option<client::Result<u64>>>>,
    expected_size: Option<u64>,
    read: u64,
    done: bool,
}

impl RegistryBlob {
    fn verdict(&mut self) -> std::io::Result<()> {
        self.done = true;
        let outcome = self.outcome.lock().ok().and_then(|mut s| s.take());
        let bad = |e: SourceError| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        match outcome {
            Some(Ok(n)) => match self.expected_size {
                Some(want) if want != n || want != self.read => Err(bad(SourceError::malformed(
                    "blob",
                    format!("{} bytes read, {want} expected", self.read),
                ))),
                _ => Ok(()),
            },
            Some(Err(e)) => Err(bad(SourceError::Registry(e))),
            None => Err(bad(SourceError::malformed(
                "blob",
                "the transfer ended without a result",
            ))),
        }
    }
}

impl AsyncRead for RegistryBlob {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.reader).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if n == 0 && buf.remaining() > 0 {
                    return Poll::Ready(this.verdict());
                }
                this.read += n as u64;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}
