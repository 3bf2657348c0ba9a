//! `wharf versions REPO`: a repository's tags in version order (semantic versions highest
//! first, then other tags newest first) with digest, size, push and last-pull time; on a data
//! directory (server stopped) or through a running server's management API.

use anyhow::Context;
use clap::Args;
use service::retention::VersionRow;

use crate::admin::DataDir;
use crate::door::Door;

pub use crate::output::Output;

/// `wharf versions`
#[derive(Args, Debug)]
pub struct VersionsArgs {
    /// Repository, e.g. prod/app.
    repo: String,
    /// Output format: table (text is the same) or json.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(flatten)]
    data: DataDir,
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of unix seconds.
pub(crate) fn utc(secs: u64) -> String {
    let t = oci::time::UtcDateTime::from_unix(secs);
    format!("{} {}", t.date(), t.clock())
}

/// `1.5 MiB`-style sizes.
pub(crate) fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn print_rows(rows: &[VersionRow], output: Output) -> anyhow::Result<()> {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(rows)?);
        return Ok(());
    }
    let width = rows.iter().map(|r| r.tag.len()).max().unwrap_or(3).max(3);
    println!(
        "{:width$}  {:<19}  {:>10}  {:<19}  LAST PULL",
        "TAG", "DIGEST", "SIZE", "PUSHED"
    );
    for r in rows {
        let short: String = r.digest.chars().take(19).collect();
        println!(
            "{:width$}  {short:<19}  {:>10}  {:<19}  {}",
            r.tag,
            human_size(r.size),
            r.pushed.map_or_else(|| "-".into(), utc),
            r.last_pull.map_or_else(|| "never".into(), utc)
        );
    }
    Ok(())
}

/// Runs `wharf versions`.
pub fn run(a: VersionsArgs) -> anyhow::Result<()> {
    oci::validate_repository(&a.repo).map_err(|e| anyhow::anyhow!("{}: {e}", a.repo))?;
    runtime()?.block_on(async move {
        // The same service function on the data directory and behind the server's route.
        let rows = Door::open(&a.data)?.versions(&a.repo).await?;
        print_rows(&rows, a.output)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 * 1024 * 1024), "3.0 MiB");
    }
}
