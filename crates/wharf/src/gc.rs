//! `wharf gc`: reclaims unreferenced blobs, unreferenced blob links and expired uploads, on a
//! data directory (server stopped: the metadata database admits one process) or through a running
//! server's management API (`--server URL --as ADMIN`). See docs/gc.md.

use anyhow::{Context, bail};
use api::gc::{GcReport, GcRequest};

use crate::admin::{DataDir, parse_duration};
use crate::door::Door;
use crate::versions::human_size;

/// Flags of `wharf gc`.
#[derive(clap::Args, Debug)]
pub struct GcArgs {
    /// Report what would be reclaimed; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep blob links, blob files and touched blobs younger than this (e.g. 1h, 30m, 0s).
    #[arg(long, default_value = "1h", value_parser = parse_seconds)]
    pub grace: u64,
    /// Delete uploads idle for longer than this (e.g. 24h).
    #[arg(long, default_value = "24h", value_parser = parse_seconds)]
    pub upload_expiry: u64,
    #[command(flatten)]
    pub output: crate::output::OutputArg,
    /// No progress bar (the phases of the work, done/total; it shows only on a terminal anyway).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Print the report as JSON (the same as `--output json`).
    #[arg(long, hide = true)]
    pub json: bool,
    #[command(flatten)]
    pub data: DataDir,
}

fn parse_seconds(s: &str) -> Result<u64, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// Runs `wharf gc`.
pub fn run(args: GcArgs) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(async move {
            let data = &args.data.data_dir;
            if args.data.server.is_none() && !data.join("meta.redb").exists() {
                bail!("{} holds no Wharf data (no meta.redb)", data.display());
            }
            let door = Door::open(&args.data)?;
            let req = GcRequest {
                dry_run: args.dry_run,
                grace_seconds: Some(args.grace),
                upload_expiry_seconds: Some(args.upload_expiry),
            };
            // A bar of the collection's phases on a terminal (from the collector itself on a
            // data directory, from the server's streamed answer through it); the plain call
            // otherwise (scripts, --quiet).
            let report = if crate::output::shows_progress(args.quiet) {
                gc_with_bar(&door, &req).await
            } else {
                door.gc(&req).await
            };
            let report = report?;
            let output = if args.json {
                crate::output::Output::Json
            } else {
                args.output.output
            };
            print(&report, output)
        })
}

/// What the bar calls a collection's phase.
fn phase_label(phase: &str, dry_run: bool) -> String {
    let what = match phase {
        "mark" => "marking manifests",
        "sweep" => "sweeping unreferenced blobs and links",
        "files" => "checking blob files",
        "uploads" => "expiring uploads",
        other => other,
    };
    if dry_run {
        format!("gc (dry run): {what}")
    } else {
        format!("gc: {what}")
    }
}

/// Runs the collection `req` asks for with a bar of its phases.
async fn gc_with_bar(door: &Door, req: &GcRequest) -> anyhow::Result<GcReport> {
    const PATH: &str = "/api/v1/gc";
    let mut bar = crate::output::PhaseBar::new(false, &phase_label("starting", req.dry_run));
    let r = match door {
        Door::Local(s, a) => s
            .manage()
            .gc_with_progress(a, req.clone(), &mut |p| {
                bar.update(&phase_label(p.phase.as_str(), req.dry_run), p.done, p.total)
            })
            .await
            .map_err(anyhow::Error::from),
        Door::Remote(remote) => {
            remote
                .post_with_progress(PATH, req, |phase, done, total| {
                    bar.update(&phase_label(phase, req.dry_run), done, total)
                })
                .await
        }
    };
    bar.finish();
    r
}

fn print(r: &GcReport, output: crate::output::Output) -> anyhow::Result<()> {
    crate::output::record(r, output, print_table)
}

fn print_table(r: &GcReport) -> anyhow::Result<()> {
    let verb = if r.dry_run { "would free" } else { "freed" };
    println!(
        "{verb} {} in {} blobs ({} without metadata), {} links, {} uploads ({} bytes); scanned {} manifests in {} repositories in {:.2}s",
        human_size(r.bytes_freed),
        r.blobs_deleted + r.orphan_files_deleted,
        r.orphan_files_deleted,
        r.links_deleted,
        r.uploads_expired + r.orphan_uploads_deleted,
        r.upload_bytes_freed,
        r.manifests,
        r.repositories,
        r.duration_seconds
    );
    if r.kept_recent > 0 {
        println!(
            "kept {} unreferenced items younger than the grace period ({}s) or in use",
            r.kept_recent, r.grace_seconds
        );
    }
    if r.links_stamped > 0 {
        println!(
            "{} links had no creation time (older data): collectable after the grace period",
            r.links_stamped
        );
    }
    if r.unparsable_manifests > 0 {
        println!(
            "warning: {} stored manifests did not parse; their repositories' blobs were kept",
            r.unparsable_manifests
        );
    }
    if r.incomplete {
        println!("more remains: run again");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_seconds("0s"), Ok(0));
        assert_eq!(parse_seconds("90m"), Ok(5400));
        assert!(parse_seconds("soon").is_err());
    }
}
