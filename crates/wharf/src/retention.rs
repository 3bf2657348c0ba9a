//! `wharf retention plan|apply`: the configured retention policies, on a data directory (server
//! stopped; `--config` gives the policies and immutable-tag rules) or through a running server.
//! Also turns the `[[retention]]` configuration into the registry's rules.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use service::retention::{Applied, RetentionRule, RetentionRules};

use crate::admin::DataDir;
use crate::config::{Config, DurationValue};
use crate::versions::{Output, Remote, open_meta, runtime};

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
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
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

fn print_plans(plans: &serde_json::Value) {
    for p in plans.as_array().into_iter().flatten() {
        println!("repository {}", p["repo"].as_str().unwrap_or("?"));
        for t in p["tags"].as_array().into_iter().flatten() {
            println!(
                "  delete tag       {}  ({})  {}",
                t["tag"].as_str().unwrap_or("?"),
                t["digest"].as_str().unwrap_or("?"),
                reason(&t["reason"])
            );
        }
        for m in p["manifests"].as_array().into_iter().flatten() {
            println!(
                "  delete manifest  {}  {}",
                m["digest"].as_str().unwrap_or("?"),
                reason(&m["reason"])
            );
        }
        for k in p["kept"].as_array().into_iter().flatten() {
            let what = match k["tag"].as_str() {
                Some(t) => format!("tag       {t}"),
                None => format!("manifest  {}", k["digest"].as_str().unwrap_or("?")),
            };
            println!("  keep {what}  {}", kept(&k["reason"]));
        }
    }
}

/// Human text of a JSON-encoded `versions::retention::Reason`.
fn reason(v: &serde_json::Value) -> String {
    serde_json::from_value::<service::retention::versions::retention::Reason>(v.clone())
        .map(|r| r.to_string())
        .unwrap_or_else(|_| v.to_string())
}

fn kept(v: &serde_json::Value) -> String {
    serde_json::from_value::<service::retention::versions::retention::KeptReason>(v.clone())
        .map(|r| r.to_string())
        .unwrap_or_else(|_| v.to_string())
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
        if let Some(remote) = Remote::of(&a.data)? {
            let path = if apply {
                "/api/v1/retention/apply"
            } else {
                "/api/v1/retention/plan"
            };
            let v = remote
                .call(
                    reqwest::Method::POST,
                    path,
                    Some(serde_json::json!({ "repo": a.repo })),
                )
                .await?;
            match (a.output, apply) {
                (Output::Json, _) => println!("{}", serde_json::to_string_pretty(&v)?),
                (Output::Text, false) => print_plans(&v),
                (Output::Text, true) => print_applied(&serde_json::from_value::<Vec<Applied>>(v)?),
            }
            return Ok(());
        }
        let cfg = match &a.config {
            Some(p) => Config::load(p)?,
            None => anyhow::bail!(
                "give the server's configuration file (--config or WHARF_CONFIG): it holds the retention policies"
            ),
        };
        let rules = rules(&cfg)?;
        let tag_rules = cfg.tags.rules()?;
        let meta = open_meta(&a.data.data_dir)?;
        let plans =
            service::retention::plan_all(meta.as_ref(), &tag_rules, &rules, a.repo.as_deref())
                .await?;
        if !apply {
            let v = serde_json::to_value(&plans)?;
            match a.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Output::Text => print_plans(&v),
            }
            return Ok(());
        }
        let meta_dyn: std::sync::Arc<dyn store::MetaStore> = meta.clone();
        let ids = service::identities::Identities::new(meta_dyn);
        let who = format!(
            "cli:{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".into())
        );
        let mut applied = Vec::new();
        for p in &plans {
            applied.push(
                service::retention::apply_plan(meta.as_ref(), &tag_rules, p, Some(&ids), &who)
                    .await?,
            );
        }
        match a.output {
            Output::Json => println!("{}", serde_json::to_string_pretty(&applied)?),
            Output::Text => print_applied(&applied),
        }
        Ok(())
    })
}
