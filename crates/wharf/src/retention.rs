//! `wharf retention plan|apply`: the configured retention policies, on a data directory (server
//! stopped; `--config` gives the policies and immutable-tag rules) or through a running server.
//! Also turns the `[[retention]]` configuration into the registry's rules.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use api::retention::RetentionRequest;
use clap::Subcommand;
use service::retention::{Applied, RepoPlan, RetentionRule, RetentionRules};

use crate::admin::DataDir;
use crate::config::{Config, DurationValue};
use crate::door::Door;
use crate::versions::{Output, runtime};

/// `wharf retention ...`
#[derive(Subcommand, Debug)]
pub enum RetentionCmd {
    /// Print what the policies would delete, and why (and what they keep).
    Plan(RetentionArgs),
    /// Delete what the policies say (blobs are reclaimed later by `wharf gc`).
    Apply(RetentionArgs),
}

/// Flags of `wharf retention plan|apply`.
#[derive(clap::Args, Debug)]
pub struct RetentionArgs {
    /// Only this repository.
    #[arg(long)]
    repo: Option<String>,
    /// Output format: table (text is the same) or json.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    output: Output,
    /// No progress bar (the phases of the work, done/total; it shows only on a terminal anyway).
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Server configuration file with the `[[retention]]` policies and immutable-tag rules
    /// (data-directory mode).
    #[arg(long, env = "WHARF_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    data: DataDir,
}

fn seconds(v: &DurationValue) -> anyhow::Result<u64> {
    match v {
        DurationValue::Seconds(s) => Ok(*s),
        DurationValue::Text(t) => crate::admin::parse_duration(t),
    }
}

/// The registry's retention rules from the configuration.
pub fn rules(cfg: &Config) -> anyhow::Result<RetentionRules> {
    let mut out = Vec::new();
    for r in &cfg.retention {
        let repos = auth::Pattern::new(&r.repos).map_err(anyhow::Error::msg)?;
        let ctx = || format!("retention policy for {}", r.repos);
        let policy = service::retention::Policy {
            keep_last: r.keep_last,
            keep_semver: r.keep_semver,
            per_major: r.per_major,
            keep_tags: r.keep_tags.clone(),
            untagged_older_than: r
                .untagged_older_than
                .as_ref()
                .map(seconds)
                .transpose()
                .with_context(ctx)?,
            unpulled_for: r
                .unpulled_for
                .as_ref()
                .map(seconds)
                .transpose()
                .with_context(ctx)?,
        };
        anyhow::ensure!(
            !r.per_major || r.keep_semver.is_some(),
            "{}: per_major needs keep_semver",
            ctx()
        );
        anyhow::ensure!(
            !policy.is_empty(),
            "{}: set at least one of keep_last, keep_semver, unpulled_for or untagged_older_than",
            ctx()
        );
        out.push(RetentionRule { repos, policy });
    }
    let s = &cfg.retention_schedule;
    anyhow::ensure!(
        !s.enabled || s.interval_seconds >= 1,
        "retention_schedule.interval_seconds must be at least 1"
    );
    let interval = s.enabled.then(|| Duration::from_secs(s.interval_seconds));
    Ok(RetentionRules::new(out, interval))
}

fn print_plans(plans: &[RepoPlan]) {
    for p in plans {
        println!("repository {}", p.repo);
        for t in &p.plan.tags {
            println!("  delete tag       {}  ({})  {}", t.tag, t.digest, t.reason);
        }
        for m in &p.plan.manifests {
            println!("  delete manifest  {}  {}", m.digest, m.reason);
        }
        for k in &p.plan.kept {
            let what = match &k.tag {
                Some(t) => format!("tag       {t}"),
                None => format!("manifest  {}", k.digest),
            };
            println!("  keep {what}  {}", k.reason);
        }
    }
}

fn print_applied(applied: &[Applied]) {
    for a in applied {
        println!(
            "repository {}: {} tag(s) and {} manifest(s) deleted",
            a.repo,
            a.tags_deleted.len(),
            a.manifests_deleted.len()
        );
        for t in &a.tags_deleted {
            println!("  deleted tag       {t}");
        }
        for m in &a.manifests_deleted {
            println!("  deleted manifest  {m}");
        }
        for s in &a.skipped {
            println!("  skipped           {s}");
        }
    }
}

/// What the bar calls a phase of applying retention.
fn phase_label(phase: &str) -> &str {
    match phase {
        "plan" => "retention: planning repositories",
        "delete" => "retention: deleting tags and manifests",
        other => other,
    }
}

/// Applies the retention policies as `req` asks with a bar of planning and deleting.
async fn apply_with_bar(door: &Door, req: &RetentionRequest) -> anyhow::Result<Vec<Applied>> {
    const PATH: &str = "/api/v1/retention/apply";
    let mut bar = crate::output::PhaseBar::new(false, "retention: starting");
    let r = match door {
        Door::Local(s, actor) => s
            .manage()
            .retention_apply_with_progress(actor, req, &mut |p| {
                bar.update(phase_label(p.phase.as_str()), p.done, Some(p.total))
            })
            .await
            .map_err(anyhow::Error::from),
        Door::Remote(remote) => {
            remote
                .post_with_progress(PATH, req, |phase, done, total| {
                    bar.update(phase_label(phase), done, total)
                })
                .await
        }
    };
    bar.finish();
    r
}

/// Runs `wharf retention ...`.
pub fn run(cmd: RetentionCmd) -> anyhow::Result<()> {
    let (apply, a) = match cmd {
        RetentionCmd::Plan(a) => (false, a),
        RetentionCmd::Apply(a) => (true, a),
    };
    if let Some(r) = &a.repo {
        oci::validate_repository(r).map_err(|e| anyhow::anyhow!("{r}: {e}"))?;
    }
    runtime()?.block_on(async move {
        // On a data directory the policies come from the server's configuration file.
        let door = if a.data.server.is_some() {
            Door::open(&a.data)?
        } else {
            let cfg = match &a.config {
                Some(p) => Config::load(p)?,
                None => anyhow::bail!(
                    "give the server's configuration file (--config or WHARF_CONFIG): it holds the retention policies"
                ),
            };
            let rules = rules(&cfg)?;
            let tag_rules = cfg.tags.rules()?;
            let data = &a.data.data_dir;
            if !data.join("meta.redb").exists() {
                anyhow::bail!("no registry data in {} (no meta.redb)", data.display());
            }
            Door::local(a.data.local_dir()?, |b| {
                b.tag_rules(tag_rules).retention(rules)
            })?
        };
        let req = RetentionRequest { repo: a.repo };
        if apply {
            // A bar of planning and deleting on a terminal (from the service itself on a data
            // directory, from the server's streamed answer through it); the plain call
            // otherwise (scripts, --quiet).
            let applied = if crate::output::shows_progress(a.quiet) {
                apply_with_bar(&door, &req).await?
            } else {
                door.retention_apply(&req).await?
            };
            match a.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&applied)?),
                Output::Table => print_applied(&applied),
            }
        } else {
            let plans = door.retention_plan(&req).await?;
            match a.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&plans)?),
                Output::Table => print_plans(&plans),
            }
        }
        Ok(())
    })
}
