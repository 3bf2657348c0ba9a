//! `wharf backup` and `wharf restore` (docs/operations.md, "Backups").
//!
//! `wharf backup --to DIR` writes a backup directory: a consistent snapshot of the metadata and
//! every blob it names, each verified, then `wharf-backup.json`. With `--server URL` it asks a
//! running server (`POST /api/v1/backup`, administrators), which streams the backup as a tar
//! while it keeps serving; on a data directory (the server stopped: the metadata database admits
//! one process) it reads the files itself, and `--hard-link` links blobs instead of copying them
//! when the backup is on the same filesystem. Either way garbage collection is paused from the
//! snapshot to the last blob (`service::backup`).
//!
//! `wharf restore --from DIR --data-dir NEW` verifies a backup and writes a new data directory
//! from it (`store::backup::restore`).

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::StreamExt;
use store::backup::{
    BLOB_PAGE, BackupDir, BackupManifest, RestoreReport, SnapshotReader, blob_rel_path,
};

use crate::admin::DataDir;
use crate::door::{Door, Remote};
use crate::versions::human_size;

/// Flags of `wharf backup`.
#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// Directory to write the backup into (must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// On a data directory: hard-link blobs into the backup when it is on the same filesystem
    /// (blob files are immutable; each link is still verified). Protects against mistakes, not
    /// against losing the disk.
    #[arg(long)]
    pub hard_link: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub output: crate::output::OutputArg,
    /// Print the backup's manifest as JSON (the same as `--output json`).
    #[arg(long, hide = true)]
    pub json: bool,
    #[command(flatten)]
    pub data: DataDir,
}

/// Flags of `wharf restore`.
#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// The backup directory (written by `wharf backup`).
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    /// The new data directory: must not exist, or be empty.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub output: crate::output::OutputArg,
    /// Print the report as JSON (the same as `--output json`).
    #[arg(long, hide = true)]
    pub json: bool,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

use crate::output::bytes_bar as bar;

/// Runs `wharf backup`.
pub fn backup(args: BackupArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let t0 = Instant::now();
        let remote = Remote::of(&args.data)?;
        if remote.is_some() && args.hard_link {
            bail!("--hard-link works on a data directory only (a server streams its backup)");
        }
        let existed = args.to.exists();
        let dir = BackupDir::create(&args.to)
            .with_context(|| format!("writing the backup into {}", args.to.display()))?;
        let r = match remote {
            Some(remote) => remote_backup(&remote, dir, args.quiet).await,
            None => local_backup(&args, dir).await,
        };
        let m = match r {
            Ok(m) => m,
            Err(e) => {
                // It was new or empty: leave it as it was.
                clear(&args.to);
                if !existed {
                    let _ = std::fs::remove_dir(&args.to);
                }
                return Err(e.context("the backup failed; nothing was kept"));
            }
        };
        let secs = t0.elapsed().as_secs_f64();
        if args.json || args.output.output == crate::output::Output::Json {
            println!("{}", serde_json::to_string_pretty(&m)?);
            return Ok(());
        }
        let c = &m.counts;
        println!(
            "backed up {} repositories, {} manifests, {} tags, {} records and {} blobs ({}) to {} in {secs:.1}s ({}/s)",
            c.repositories,
            c.manifests,
            c.tags,
            c.records,
            c.blobs,
            human_size(c.blob_bytes),
            args.to.display(),
            human_size((c.blob_bytes as f64 / secs.max(0.001)) as u64),
        );
        println!(
            "snapshot taken at unix time {}; metadata {} (sha256 {}); restore with: wharf restore --from {} --data-dir NEW",
            m.created,
            human_size(m.metadata.size),
            m.metadata.sha256,
            args.to.display()
        );
        Ok(())
    })
}

/// Empties a backup directory that failed (it was new or empty when the backup started).
fn clear(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
        }
    }
}

async fn local_backup(args: &BackupArgs, mut dir: BackupDir) -> anyhow::Result<BackupManifest> {
    let data = args.data.data_dir.clone();
    if !data.join(store::backup::META_FILE).exists() {
        bail!("{} holds no Wharf data (no meta.redb)", data.display());
    }
    let Door::Local(svc, actor) = Door::local(&data, |b| b)? else {
        bail!("a data directory opens locally");
    };
    let start = svc.manage().backup(&actor).await?;
    let counts = start.counts();
    let meta_size = std::fs::metadata(start.snapshot().path())?.len();
    let bar = bar(args.quiet, meta_size + counts.blob_bytes, "backup");
    let (hard_link, b) = (args.hard_link, bar.clone());
    let m = tokio::task::spawn_blocking(move || -> anyhow::Result<BackupManifest> {
        let mut progress = |n: u64| b.inc(n);
        let snap = start.snapshot().path();
        let mut f = std::fs::File::open(snap)
            .with_context(|| format!("reading the snapshot {}", snap.display()))?;
        dir.put_meta(&mut f, &mut progress)?;
        let reader = SnapshotReader::open(snap)?;
        let mut after: Option<String> = None;
        loop {
            let page = reader.blobs(after.as_deref(), BLOB_PAGE)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.to_string());
            for (d, size) in page {
                let src = data.join(blob_rel_path(&d));
                if hard_link && dir.link_blob(&d, size, &src, &mut progress)? {
                    continue;
                }
                let mut f = std::fs::File::open(&src).with_context(|| {
                    format!("blob {d} is named by the metadata but cannot be read from the store")
                })?;
                dir.put_blob(&d, size, &mut f, &mut progress)?;
            }
        }
        drop(reader);
        let m = dir.finish(start.created(), env!("CARGO_PKG_VERSION"), counts)?;
        // The snapshot file goes, and collections may run again.
        drop(start);
        Ok(m)
    })
    .await
    .context("the backup task failed")??;
    bar.finish_and_clear();
    Ok(m)
}

/// Reads the chunks a task receives from the network, for the tar reader on a blocking thread.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, String>>,
    cur: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => {
                    return Err(io::Error::other(format!(
                        "the backup stream broke off: {e} (see the server's log)"
                    )));
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

async fn remote_backup(
    remote: &Remote,
    dir: BackupDir,
    quiet: bool,
) -> anyhow::Result<BackupManifest> {
    let resp = remote
        .request(reqwest::Method::POST, "/api/v1/backup")
        .send()
        .await
        .context("POST /api/v1/backup")?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        let msg = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_owned))
            .unwrap_or(text);
        bail!("POST /api/v1/backup: {status}: {msg}");
    }
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let total = header(api::backup::BYTES_HEADER).unwrap_or(0);
    let bar = bar(quiet, total, "backup");
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut body = resp.bytes_stream();
    let pump = tokio::spawn(async move {
        while let Some(chunk) = body.next().await {
            let item = chunk.map_err(|e| {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg = format!("{msg}: {s}");
                    src = s.source();
                }
                msg
            });
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    let b = bar.clone();
    let r = tokio::task::spawn_blocking(move || {
        let reader = ChannelReader {
            rx,
            cur: Bytes::new(),
        };
        store::backup::unpack_tar(reader, dir, &mut |n| b.inc(n))
    })
    .await
    .context("the backup task failed")?;
    pump.abort();
    bar.finish_and_clear();
    Ok(r?)
}

/// Runs `wharf restore`.
pub fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let m = store::backup::read_manifest(&args.from)?;
    let bar = bar(args.quiet, m.counts.blob_bytes + m.metadata.size, "restore");
    let b = bar.clone();
    let r: RestoreReport = store::backup::restore(&args.from, &args.data_dir, &mut |n| b.inc(n))
        .with_context(|| {
            format!(
                "restoring {} into {}",
                args.from.display(),
                args.data_dir.display()
            )
        })?;
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    if args.json || args.output.output == crate::output::Output::Json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let c = &r.manifest.counts;
    println!(
        "restored {} repositories, {} manifests, {} tags, {} records and {} blobs ({}), every checksum verified, into {} in {secs:.1}s",
        c.repositories,
        c.manifests,
        c.tags,
        c.records,
        r.blobs,
        human_size(r.blob_bytes),
        args.data_dir.display()
    );
    println!(
        "backup taken at unix time {} by Wharf {}; start it with: wharf serve --data-dir {} (a new token signing key is made; scan results are rebuilt by scanning again)",
        r.manifest.created,
        r.manifest.wharf_version,
        args.data_dir.display()
    );
    Ok(())
}
