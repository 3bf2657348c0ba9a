//! `wharf scan`, `wharf sbom` and `wharf vulndb`: vulnerability scanning and SBOMs of images
//! from a registry, an OCI layout or an archive, against a local vulnerability database; and
//! the `[scan]` capability of `wharf serve` (scan on push, findings API, pull rules).

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{ArgAction, Args, Subcommand};
use scan::db::{FeedSource, UpdateOutcome, VulnDb, default_sources};
use scan::report::{Format, ReportInput, fail_on, render};
use scan::results::ScanResults;
use scan::sbom::{ImageInfo, SbomOptions};
use scan::scanner::{Advisories, LayerRef, Progress, ScanError, Scanner};
use scan::source::{Image, OpenOptions, Platform, SourceRef};
use vuln::{IgnoreRules, Severity};

/// How soon the server tries a failed feed download again.
const RETRY_UPDATE: Duration = Duration::from_secs(60);

/// A database older than this is reported as stale by the CLI.
const MAX_DB_AGE: Duration = Duration::from_secs(48 * 3600);

/// The image to read, as skopeo names images.
#[derive(Args, Debug)]
pub struct SourceArgs {
    /// The image: `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, `docker-archive:FILE`,
    /// `docker://HOST/REPO:TAG|@DIGEST`, or a bare `HOST/REPO:TAG`.
    source: String,
    /// `--tls-verify=false` reaches the registry over plain HTTP (loopback registries always
    /// are).
    #[arg(long = "tls-verify", value_name = "BOOL", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    tls_verify: bool,
    /// Which image of a multi-platform index: `os/arch[/variant]` (default `linux/amd64`).
    #[arg(long)]
    platform: Option<String>,
}

/// Where the vulnerability database (and the kept layer inventories) live.
#[derive(Args, Debug)]
pub struct DbArgs {
    /// The database directory. Default: `DATA_DIR/vulndb` with `--data-dir`, else a per-user
    /// cache directory (`$XDG_CACHE_HOME/wharf/vulndb` or `~/.cache/wharf/vulndb`).
    #[arg(long, value_name = "DIR")]
    db: Option<PathBuf>,
    /// The registry's data directory (its database is `DATA_DIR/vulndb`).
    #[arg(long, env = "WHARF_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

impl DbArgs {
    fn dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(d) = &self.db {
            return Ok(d.clone());
        }
        if let Some(d) = &self.data_dir {
            return Ok(d.join("vulndb"));
        }
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .context("no --db, no --data-dir, and neither XDG_CACHE_HOME nor HOME is set")?;
        Ok(cache.join("wharf").join("vulndb"))
    }

    fn open(&self) -> anyhow::Result<VulnDb> {
        let dir = self.dir()?;
        VulnDb::open(&dir).with_context(|| {
            format!(
                "opening the vulnerability database in {} (is a `wharf serve` or another `wharf vulndb` using it?)",
                dir.display()
            )
        })
    }
}

/// `wharf scan`
#[derive(Args, Debug)]
pub struct ScanArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Report format.
    #[arg(long, default_value = "table", value_parser = ["table", "json", "sarif", "cyclonedx"])]
    format: String,
    /// Exit with status 1 when an unsuppressed finding is at or above this severity.
    #[arg(long, value_name = "SEVERITY", value_parser = ["low", "medium", "high", "critical"])]
    fail_on: Option<String>,
    /// An ignore file (TOML `[[ignore]]` entries: id, optional package and image, reason,
    /// optional expiry): matching findings are reported as suppressed.
    #[arg(long, value_name = "FILE")]
    ignore_file: Option<PathBuf>,
    #[command(flatten)]
    db: DbArgs,
}

/// `wharf sbom`
#[derive(Args, Debug)]
pub struct SbomArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// SBOM format.
    #[arg(long, default_value = "cyclonedx", value_parser = ["cyclonedx", "spdx"])]
    format: String,
    #[command(flatten)]
    db: DbArgs,
}

/// `wharf vulndb`
#[derive(Subcommand, Debug)]
pub enum VulndbCmd {
    /// Imports advisories: OSV JSON (a record, a directory of them, or an ecosystem's
    /// all.zip), the Debian security tracker's JSON, Alpine secdb JSON. Each path replaces the
    /// feed of the same name whole.
    Import {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Downloads the feeds and imports what changed (default: osv.dev's ecosystems, the
    /// Debian tracker, Alpine secdb).
    Update {
        /// A feed to download instead of the defaults, `NAME=URL` (repeatable).
        #[arg(long = "feed", value_name = "NAME=URL", value_parser = parse_feed)]
        feeds: Vec<FeedSource>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// The feeds imported, when, their content hashes and record counts.
    Status {
        /// Output format.
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

fn parse_feed(s: &str) -> Result<FeedSource, String> {
    match s.split_once('=') {
        Some((name, url)) if !name.is_empty() && !url.is_empty() => Ok(FeedSource {
            name: name.to_string(),
            url: url.to_string(),
            sha256: None,
        }),
        _ => Err(format!("{s:?} is not NAME=URL")),
    }
}

/// The exit status of a scan: 0 clean, 1 findings at or above `--fail-on`, 2 an error.
pub fn scan(args: ScanArgs) -> i32 {
    match run_scan(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    }
}

/// `wharf sbom`: the SBOM on stdout; exit 2 on errors.
pub fn sbom(args: SbomArgs) -> i32 {
    match run_sbom(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // Blocking layer walkers read registry blobs through a bridge to the async client: the
    // runtime must run on threads of its own.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Opens the source image.
async fn open_image(src: &SourceArgs) -> anyhow::Result<(SourceRef, Image)> {
    let source = SourceRef::parse(&src.source)?;
    let mut opts = OpenOptions::default();
    if let Some(p) = &src.platform {
        opts.platform = Some(Platform::parse(p)?);
    }
    let client = match &source {
        SourceRef::Registry(r) => {
            let mut config =
                client::ClientConfig::from_env().context("reading registry credentials")?;
            if !src.tls_verify {
                config = config.insecure_registry(r.registry().to_string());
            }
            Some(client::Client::new(config).context("setting up the registry client")?)
        }
        _ => None,
    };
    let image = Image::open(&source, &opts, client)
        .await
        .with_context(|| format!("opening {}", src.source))?;
    Ok((source, image))
}

/// The image's inventory, its layers read (or reused) on a blocking thread, with a progress
/// bar on a terminal.
async fn inventory(
    image: Arc<Image>,
    results: Option<ScanResults>,
) -> anyhow::Result<scan::ImageInventory> {
    let layers: Vec<LayerRef> = image
        .meta()
        .layers
        .iter()
        .map(|l| LayerRef {
            digest: l.digest.to_string(),
            media_type: l.media_type.clone(),
            size: l.size,
        })
        .collect();
    let total: u64 = layers.iter().map(|l| l.size).sum();
    tokio::task::spawn_blocking(move || {
        let scanner = Scanner::new(results);
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        let mut progress = |p: Progress<'_>| {
            if let Some(bar) = &bar {
                match p {
                    Progress::Layer {
                        index,
                        total,
                        size,
                        cached,
                        ..
                    } => {
                        bar.set_message(format!("layer {}/{total}", index + 1));
                        if cached {
                            bar.inc(size);
                        }
                    }
                    Progress::Bytes(n) => bar.inc(n),
                }
            }
        };
        let by_digest: std::collections::HashMap<String, oci::Descriptor> = image
            .meta()
            .layers
            .iter()
            .map(|l| (l.digest.to_string(), l.descriptor()))
            .collect();
        let inv = scanner.image(
            &layers,
            |l| {
                let d = &by_digest[&l.digest];
                image.open_blob_blocking(d).map_err(ScanError::from)
            },
            &mut progress,
        );
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        inv
    })
    .await
    .context("the scan thread failed")?
    .map_err(anyhow::Error::from)
}

/// The ignore file's rules (none without a file), read and parsed the same way for `wharf
/// scan --ignore-file` and the server's `[scan] ignore_file`, with the same error context.
fn load_ignore_file(path: Option<&Path>) -> anyhow::Result<IgnoreRules> {
    let Some(p) = path else {
        return Ok(IgnoreRules::default());
    };
    let text = std::fs::read_to_string(p)
        .with_context(|| format!("reading the ignore file {}", p.display()))?;
    IgnoreRules::parse(&text).with_context(|| format!("in the ignore file {}", p.display()))
}

fn run_scan(args: ScanArgs) -> anyhow::Result<i32> {
    let format: Format = args.format.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let threshold = args
        .fail_on
        .as_deref()
        .map(str::parse::<Severity>)
        .transpose()?;
    let ignore = load_ignore_file(args.ignore_file.as_deref())?;
    let db = args.db.open()?;
    let results = ScanResults::open(db.dir())
        .with_context(|| format!("opening the layer inventories in {}", db.dir().display()))?;
    // The index loads on its own thread while the layers are read.
    let loader = {
        let db = db.clone();
        std::thread::spawn(move || Advisories::load(&db, ignore, MAX_DB_AGE))
    };
    let rt = runtime()?;
    let (source, image, inv) = rt.block_on(async {
        let (source, image) = open_image(&args.source).await?;
        let image = Arc::new(image);
        let inv = inventory(image.clone(), Some(results)).await?;
        Ok::<_, anyhow::Error>((source, image, inv))
    })?;
    let advisories = loader
        .join()
        .map_err(|_| anyhow::anyhow!("loading the vulnerability database panicked"))?
        .context("loading the vulnerability database")?;
    let info = ImageInfo::from_source(&source, image.meta());
    let findings = advisories.findings(&info.name, &inv);
    let warnings = advisories.warnings().to_vec();
    let report = render(
        format,
        &ReportInput {
            image: &info,
            inventory: &inv,
            findings: &findings,
            warnings: &warnings,
        },
        &sbom_options(),
    );
    print!("{report}");
    if !report.ends_with('\n') {
        println!();
    }
    if format != Format::Table {
        for w in &warnings {
            eprintln!("warning: {w}");
        }
    }
    Ok(match threshold {
        Some(t) if fail_on(t, &findings) => 1,
        _ => 0,
    })
}

fn sbom_options() -> SbomOptions {
    SbomOptions {
        tool: Some(("wharf".into(), env!("CARGO_PKG_VERSION").into())),
        ..SbomOptions::default()
    }
}

fn run_sbom(args: SbomArgs) -> anyhow::Result<()> {
    // Layer inventories are kept beside the database (no database is needed for an SBOM).
    let dir = args.db.dir()?;
    let results = ScanResults::open(&dir)
        .with_context(|| format!("opening the layer inventories in {}", dir.display()))?;
    let rt = runtime()?;
    let (source, image, inv) = rt.block_on(async {
        let (source, image) = open_image(&args.source).await?;
        let image = Arc::new(image);
        let inv = inventory(image.clone(), Some(results)).await?;
        Ok::<_, anyhow::Error>((source, image, inv))
    })?;
    let info = ImageInfo::from_source(&source, image.meta());
    let doc = match args.format.as_str() {
        "spdx" => scan::sbom::spdx(&info, &inv, &sbom_options()),
        _ => scan::sbom::cyclonedx(&info, &inv, &sbom_options()),
    };
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}

/// `wharf vulndb ...`
pub fn vulndb(cmd: VulndbCmd) -> anyhow::Result<()> {
    match cmd {
        VulndbCmd::Import { paths, db } => {
            let db = db.open()?;
            for p in &paths {
                let st = db
                    .import_path(p)
                    .with_context(|| format!("importing {}", p.display()))?;
                eprintln!(
                    "imported {} ({:?}): {} advisories, sha256 {}",
                    st.name,
                    st.kind,
                    st.records,
                    &st.sha256[..st.sha256.len().min(16)]
                );
            }
            Ok(())
        }
        VulndbCmd::Update { feeds, db } => {
            let db = db.open()?;
            let sources = if feeds.is_empty() {
                default_sources()
            } else {
                feeds
            };
            let rt = runtime()?;
            let outcomes = rt.block_on(db.update(&sources));
            let mut failed = 0;
            for (name, r) in outcomes {
                match r {
                    Ok(UpdateOutcome::Imported(st)) => {
                        eprintln!("{name}: imported {} advisories", st.records)
                    }
                    Ok(UpdateOutcome::Unchanged(st)) => {
                        eprintln!("{name}: unchanged ({} advisories)", st.records)
                    }
                    Err(e) => {
                        failed += 1;
                        eprintln!("{name}: FAILED: {e}");
                    }
                }
            }
            if failed > 0 {
                bail!(
                    "{failed} of {} feeds failed (their previous imports are kept)",
                    sources.len()
                );
            }
            Ok(())
        }
        VulndbCmd::Status { format, db } => {
            let db = db.open()?;
            let feeds = db.status()?;
            let stale = db.is_stale(MAX_DB_AGE)?;
            if format == "json" {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "dir": db.dir(),
                        "stale": stale,
                        "feeds": feeds,
                    }))?
                );
                return Ok(());
            }
            println!("database: {}", db.dir().display());
            if feeds.is_empty() {
                println!("no feeds imported: run `wharf vulndb update` or `wharf vulndb import`");
                return Ok(());
            }
            println!(
                "{:<28} {:<14} {:>9} {:<20} SHA256",
                "FEED", "KIND", "RECORDS", "IMPORTED"
            );
            for f in &feeds {
                println!(
                    "{:<28} {:<14} {:>9} {:<20} {}",
                    f.name,
                    format!("{:?}", f.kind),
                    f.records,
                    oci::time::rfc3339(f.imported_at),
                    &f.sha256[..f.sha256.len().min(16)]
                );
            }
            if stale {
                println!(
                    "warning: the database is stale (no import in the last {} hours)",
                    MAX_DB_AGE.as_secs() / 3600
                );
            }
            Ok(())
        }
    }
}

/// Scanning in `wharf serve`: the capability, its workers, and the database loaded (and
/// reloaded whenever another process imports into it) in the background. The server does not
/// hold the vulnerability database open, so `wharf vulndb import|update --data-dir` works
/// while it runs.
pub fn capability(
    config: &scan::capability::ScanConfig,
    svc: Arc<service::Service>,
    data: &Path,
) -> anyhow::Result<Arc<scan::capability::ScanCapability>> {
    let results = ScanResults::open(&data.join("scan")).with_context(|| {
        format!(
            "opening the scan results in {}",
            data.join("scan").display()
        )
    })?;
    let ignore = load_ignore_file(config.ignore_file.as_deref())?;
    let db_dir = config.db_dir.clone().unwrap_or_else(|| data.join("vulndb"));
    let cap = Arc::new(scan::capability::ScanCapability::new(
        svc,
        results,
        config.clone(),
    ));
    let max_age = Duration::from_secs(config.max_db_age_hours.max(1) * 3600);
    // While the server's own update holds the database open, the reloader waits for it.
    let updating = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if config.update_interval_seconds > 0 {
        let sources: Vec<FeedSource> = if config.feeds.is_empty() {
            default_sources()
        } else {
            config
                .feeds
                .iter()
                .map(|f| FeedSource {
                    name: f.name.clone(),
                    url: f.url.clone(),
                    sha256: f.sha256.clone(),
                })
                .collect()
        };
        let every = Duration::from_secs(config.update_interval_seconds);
        let (dir, flag) = (db_dir.clone(), updating.clone());
        tokio::spawn(async move {
            loop {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                let mut failed = false;
                match VulnDb::open(&dir) {
                    Ok(db) => {
                        for (name, r) in db.update(&sources).await {
                            match r {
                                Ok(UpdateOutcome::Imported(st)) => {
                                    tracing::info!(feed = %name, records = st.records, "vulnerability feed imported")
                                }
                                Ok(UpdateOutcome::Unchanged(_)) => {
                                    tracing::debug!(feed = %name, "vulnerability feed unchanged")
                                }
                                Err(e) => {
                                    failed = true;
                                    tracing::warn!(feed = %name, error = %e, "vulnerability feed update failed (the previous import is kept)")
                                }
                            }
                        }
                    }
                    Err(e) => {
                        failed = true;
                        tracing::warn!(error = %e, "opening the vulnerability database to update it")
                    }
                }
                flag.store(false, std::sync::atomic::Ordering::SeqCst);
                // A failed round is tried again within a minute, not a whole interval later.
                tokio::time::sleep(if failed {
                    every.min(RETRY_UPDATE)
                } else {
                    every
                })
                .await;
            }
        });
    }
    let reloader = cap.clone();
    tokio::spawn(async move {
        let mut seen: Option<std::time::SystemTime> = None;
        let mut loaded_at = std::time::Instant::now();
        loop {
            let modified = std::fs::metadata(db_dir.join(scan::db::DB_FILE))
                .and_then(|m| m.modified())
                .ok();
            // Reloaded when another process imported into it, and hourly (staleness warnings
            // grow with time).
            let due = modified != seen || loaded_at.elapsed() > Duration::from_secs(3600);
            let busy = updating.load(std::sync::atomic::Ordering::SeqCst);
            if modified.is_some() && due && !busy {
                let (dir, ignore) = (db_dir.clone(), ignore.clone());
                let loaded = tokio::task::spawn_blocking(move || {
                    let db = VulnDb::open(&dir)?;
                    let a = Advisories::load(&db, ignore, max_age)?;
                    Ok::<_, scan::db::DbError>(a)
                })
                .await;
                match loaded {
                    Ok(Ok(a)) => {
                        tracing::info!(
                            advisories = a.index().stats().advisories,
                            "vulnerability database loaded"
                        );
                        reloader.set_advisories(Arc::new(a));
                        // Opening the database writes to it: remember the time it has now.
                        seen = std::fs::metadata(db_dir.join(scan::db::DB_FILE))
                            .and_then(|m| m.modified())
                            .ok();
                        loaded_at = std::time::Instant::now();
                    }
                    // Another process holds it (an import in progress): try again next round.
                    Ok(Err(e)) => tracing::warn!(error = %e, "loading the vulnerability database"),
                    Err(e) => tracing::warn!(error = %e, "loading the vulnerability database"),
                }
            }
            tokio::time::sleep(Duration::from_secs(if busy { 1 } else { 10 })).await;
        }
    });
    cap.spawn_workers();
    Ok(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both front doors (CLI and server) read the ignore file through one function: no file
    /// is no rules; a missing or malformed file is an error naming it (and the bad line).
    #[test]
    fn ignore_file_errors_name_the_file() {
        assert!(load_ignore_file(None).unwrap().rules().is_empty());
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.toml");
        let e = format!("{:#}", load_ignore_file(Some(&missing)).unwrap_err());
        assert!(
            e.starts_with("reading the ignore file ") && e.contains("missing.toml"),
            "{e}"
        );
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[[ignore]]\nid = \"CVE-1\"\nreason = \n").unwrap();
        let e = format!("{:#}", load_ignore_file(Some(&bad)).unwrap_err());
        assert!(
            e.starts_with("in the ignore file ") && e.contains("line 3"),
            "{e}"
        );
        let good = dir.path().join("good.toml");
        std::fs::write(&good, "[[ignore]]\nid = \"CVE-1\"\nreason = \"accepted\"\n").unwrap();
        assert_eq!(load_ignore_file(Some(&good)).unwrap().rules().len(), 1);
    }
}
