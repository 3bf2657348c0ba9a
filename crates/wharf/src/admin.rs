//! Identity management from the command line: users, robots, groups, permission rules, the
//! audit log and token keys. Works on a data directory with the server stopped (the metadata
//! database admits one process at a time), or, with `--server URL`, through a running server's
//! management API as an administrator.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use api::audit::{AuditEvent, AuditQuery};
use api::robots::{CreateRobot, RobotSecret, RobotView};
use api::rules::{CreateRule, SetGroup};
use api::tags::{HistoryQuery, Rollback};
use api::users::{CreateUser, SetDisabled, SetPassword, UserView};
use api::{Group, Rule};

use crate::output::{Output, OutputArg};
use auth::{Actions, User};
use clap::{Args, Subcommand};
use service::identities::{Identities, IdentityError};

use crate::door::Door;
use crate::escape::{escape_controls as esc, escape_json_line};

/// Where the data lives: a data directory, or a running server.
#[derive(Args, Debug, Clone)]
pub struct DataDir {
    /// Data directory of the registry (stop the server first, or use --server).
    #[arg(long, env = "WHARF_DATA_DIR", default_value = "wharf-data")]
    pub data_dir: PathBuf,
    /// A running server (e.g. https://registry.example.com): use its management API instead
    /// of the data directory.
    #[arg(long, env = "WHARF_SERVER")]
    pub server: Option<String>,
    /// Administrator login for --server; the password comes from standard input with
    /// --as-password-stdin, else from WHARF_PASSWORD, else it is asked on the terminal.
    #[arg(long = "as", env = "WHARF_USER")]
    pub login_as: Option<String>,
    /// Read the password of --as from standard input's first line (not from WHARF_PASSWORD or
    /// the terminal); an empty line is an error.
    #[arg(long)]
    pub as_password_stdin: bool,
    /// Create the data directory if it does not exist (without it, a missing directory is an
    /// error: a mistyped path must not start an empty registry).
    #[arg(long)]
    pub create: bool,
}

impl DataDir {
    /// The data directory for a local command: it must exist, unless `--create`.
    pub fn local_dir(&self) -> anyhow::Result<&Path> {
        let d = &self.data_dir;
        if !d.exists() {
            if !self.create {
                anyhow::bail!(
                    "no data directory at {} (a mistyped --data-dir? give --create to make a new \
                     one, or --server to use a running server)",
                    d.display()
                );
            }
            store::private_dir(d).with_context(|| format!("creating {}", d.display()))?;
        } else if !d.is_dir() {
            anyhow::bail!("--data-dir {} is not a directory", d.display());
        }
        Ok(d)
    }

    /// Refuses `--server` for a command that only works on the data directory.
    pub fn local_only(&self, what: &str) -> anyhow::Result<&Path> {
        if let Some(s) = &self.server {
            anyhow::bail!(
                "{what} works on the data directory only (not through --server {s}): run it \
                 where the data directory is, with --data-dir"
            );
        }
        self.local_dir()
    }
}

/// `wharf user ...`
#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Add a user (the password is asked twice on a terminal, else read from standard
    /// input's first line).
    Add {
        /// Login name.
        name: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        /// Read the new user's password from standard input's first line even on a terminal
        /// (the --as login's is --as-password-stdin).
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        data: DataDir,
    },
    /// List users.
    List {
        #[command(flatten)]
        output: OutputArg,
        #[command(flatten)]
        data: DataDir,
    },
    /// Set a new password (asked twice on a terminal, else read from standard input's first
    /// line).
    Passwd {
        /// Login name.
        name: String,
        /// Read the new password from standard input's first line even on a terminal (the
        /// --as login's is --as-password-stdin).
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        data: DataDir,
    },
    /// Disable or enable a user.
    Disable {
        /// Login name.
        name: String,
        /// Enable instead.
        #[arg(long)]
        enable: bool,
        #[command(flatten)]
        data: DataDir,
    },
    /// Delete a user.
    Delete {
        /// Login name.
        name: String,
        #[command(flatten)]
        data: DataDir,
    },
}

/// `wharf robot ...`
#[derive(Subcommand, Debug)]
pub enum RobotCmd {
    /// Create a robot account; its secret is printed once and only its hash is kept.
    Create {
        /// Name (the login is `robot$NAME`).
        name: String,
        /// Repository pattern it may act on (repeatable), e.g. 'team-a/*'.
        #[arg(long = "repo", required = true)]
        repos: Vec<String>,
        /// Actions, e.g. pull,push.
        #[arg(long, default_value = "pull")]
        actions: String,
        /// Lifetime such as 90d, 12h or 30m; never expires when absent.
        #[arg(long)]
        expires: Option<String>,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// List robots.
    List {
        #[command(flatten)]
        output: OutputArg,
        #[command(flatten)]
        data: DataDir,
    },
    /// Revoke a robot: it can no longer log in and its tokens stop working.
    Revoke {
        /// Name.
        name: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// Replace a robot's secret; the new one is printed once.
    Rotate {
        /// Name.
        name: String,
        #[command(flatten)]
        data: DataDir,
    },
}

/// `wharf group ...`
#[derive(Subcommand, Debug)]
pub enum GroupCmd {
    /// Create or replace a group with these members.
    Set {
        /// Group name.
        name: String,
        /// Member login names (repeatable; robots as robot$NAME).
        #[arg(long = "member")]
        members: Vec<String>,
        #[command(flatten)]
        data: DataDir,
    },
    /// List groups.
    List {
        #[command(flatten)]
        output: OutputArg,
        #[command(flatten)]
        data: DataDir,
    },
    /// Delete a group.
    Delete {
        /// Group name.
        name: String,
        #[command(flatten)]
        data: DataDir,
    },
}

/// `wharf rule ...`
#[derive(Subcommand, Debug)]
pub enum RuleCmd {
    /// Grant SUBJECT (user:NAME, group:NAME, robot:NAME or anonymous) actions on a pattern.
    Add {
        /// Who.
        subject: String,
        /// Repository pattern, e.g. 'team-a/*'.
        #[arg(long)]
        repo: String,
        /// Actions, e.g. pull,push,delete (or admin).
        #[arg(long)]
        actions: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// List rules.
    List {
        #[command(flatten)]
        output: OutputArg,
        #[command(flatten)]
        data: DataDir,
    },
    /// Delete a rule by id.
    Delete {
        /// Rule id.
        id: String,
        #[command(flatten)]
        data: DataDir,
    },
}

/// `wharf audit`
#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Only this actor.
    #[arg(long)]
    actor: Option<String>,
    /// Only this repository.
    #[arg(long)]
    repo: Option<String>,
    /// Only this action (push, delete, mount, auth.failed, identity.change).
    #[arg(long)]
    action: Option<String>,
    /// Only events newer than this (e.g. 24h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// At most this many events, newest first.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[command(flatten)]
    output: OutputArg,
    /// One JSON object per line (older form of `--output json`, which prints one array).
    #[arg(long, hide = true)]
    json: bool,
    #[command(flatten)]
    data: DataDir,
}

/// `wharf token-key ...`
#[derive(Subcommand, Debug)]
pub enum TokenKeyCmd {
    /// Make a new signing key; tokens signed by the previous one stay valid until pruned.
    Rotate {
        #[command(flatten)]
        data: DataDir,
    },
    /// Forget previous keys: tokens they signed stop working.
    Prune {
        #[command(flatten)]
        data: DataDir,
    },
}

/// Parses `90d`, `12h`, `30m` or `45s` into seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .with_context(|| format!("invalid duration {s:?}"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" | "" => 86_400,
        "w" => 7 * 86_400,
        _ => bail!("invalid duration unit in {s:?}: use s, m, h, d or w"),
    };
    n.checked_mul(mult).context("duration too large")
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// A password from standard input: its first line without the line ending. An empty one
/// (an empty line, or nothing at all) is an error, never a password.
pub(crate) fn read_secret_line() -> anyhow::Result<zeroize::Zeroizing<String>> {
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let p = line.trim_end_matches(['\n', '\r']);
    if p.is_empty() {
        bail!("standard input gave an empty password (the first line is read)");
    }
    Ok(zeroize::Zeroizing::new(p.to_owned()))
}

/// `user add` and `user passwd` through `--server` with `--as-password-stdin`: standard input
/// carries the login, so the new password cannot come from it too.
fn one_password_on_stdin(password_stdin: bool, data: &DataDir) -> anyhow::Result<()> {
    if data.server.is_some() && data.as_password_stdin {
        if password_stdin {
            bail!(
                "--password-stdin and --as-password-stdin both read standard input: give the \
                 --as password in WHARF_PASSWORD instead"
            );
        }
        if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            bail!(
                "standard input carries the --as password (--as-password-stdin), and there is no \
                 terminal to ask the new password on: give the --as password in WHARF_PASSWORD \
                 and the new one with --password-stdin"
            );
        }
    }
    Ok(())
}

/// Reads a new password for `name`: on a terminal (unless `from_stdin`), asked twice without
/// echo; otherwise the first line of standard input. The password rule is the service's, the
/// same for every front door.
fn read_password(name: &str, from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin || !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Ok(read_secret_line()?.to_string());
    }
    let first = rpassword::prompt_password(format!("New password for {name}: "))
        .context("reading the password")?;
    let again = rpassword::prompt_password(format!("Repeat the password for {name}: "))
        .context("reading the password")?;
    if first != again {
        anyhow::bail!("the two passwords differ; nothing changed");
    }
    Ok(first)
}

/// Imports bcrypt users from an htpasswd file: new users are added, changed hashes updated,
/// and users imported earlier who are no longer in the file are removed. A file that yields no
/// user at all (empty, only comments, or every line unusable: a mounted secret that came up
/// empty) is an error, reported before anything changes: the registry refuses to start rather
/// than run without the users it is meant to have.
pub async fn import_htpasswd(ids: &Identities, path: &Path) -> anyhow::Result<()> {
    const SOURCE: &str = "htpasswd";
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading htpasswd file {}", path.display()))?;
    let (users, mut skipped) = auth::secret::parse_htpasswd(&text);
    let mut entries = Vec::with_capacity(users.len());
    for (name, hash) in users {
        match auth::identity::validate_user_name(&name) {
            Ok(()) => entries.push((name, hash)),
            Err(e) => skipped.push(e),
        }
    }
    for s in &skipped {
        tracing::warn!(file = %path.display(), "htpasswd entry skipped: {s}");
    }
    if entries.is_empty() {
        let why = if skipped.is_empty() {
            "it is empty or holds only comments".to_owned()
        } else {
            format!("no line is usable: {}", skipped.join("; "))
        };
        bail!(
            "htpasswd file {} yields no users ({why}); refusing to start with [auth] htpasswd \
             configured but no users from it: fix the file (bcrypt entries, htpasswd -B) or \
             remove the htpasswd setting",
            path.display()
        );
    }
    let mut listed = std::collections::HashSet::new();
    for (name, hash) in entries {
        listed.insert(name.clone());
        let existing = ids.user(&name).await?;
        if let Some(u) = &existing
            && u.source.as_deref() != Some(SOURCE)
        {
            tracing::warn!(user = %name, "htpasswd entry ignored: a local user of that name exists");
            continue;
        }
        if existing.as_ref().is_some_and(|u| u.password_hash == hash) {
            continue;
        }
        let user = User {
            name: name.clone(),
            password_hash: hash,
            admin: existing.as_ref().is_some_and(|u| u.admin),
            disabled: existing.as_ref().is_some_and(|u| u.disabled),
            created: existing.map_or_else(auth::now, |u| u.created),
            source: Some(SOURCE.into()),
        };
        match ids.put_user(&user).await {
            Ok(()) => tracing::info!(user = %name, "imported user from htpasswd"),
            Err(IdentityError::Store(e)) => return Err(e.into()),
            // A name that clashes with another user's (`Alice` beside `alice`).
            Err(e) => tracing::warn!(user = %name, "htpasswd entry ignored: {e}"),
        }
    }
    for u in ids.users().await? {
        if u.source.as_deref() == Some(SOURCE) && !listed.contains(&u.name) {
            ids.delete_user(&u.name).await?;
            tracing::info!(user = %u.name, "removed user no longer in the htpasswd file");
        }
    }
    Ok(())
}

fn print_secret(login: &str, secret: &str) {
    println!("login:  {login}");
    println!("secret: {secret}");
    eprintln!("(the secret is shown only now; store it in your CI or cluster secret store)");
}

/// `user list`, the same table through either door: name, role, and `disabled` when so.
fn print_users(users: &[UserView], output: Output) -> anyhow::Result<()> {
    crate::output::list(users, output, "users", |u| {
        format!(
            "{}\t{}{}",
            esc(&u.name),
            if u.admin { "admin" } else { "user" },
            if u.disabled { "\tdisabled" } else { "" }
        )
    })
}

/// `robot list`: login, repository patterns, actions, state.
fn print_robots(robots: &[RobotView], output: Output) -> anyhow::Result<()> {
    let now = auth::now();
    crate::output::list(robots, output, "robots", |r| {
        let state = if r.revoked {
            "revoked".to_owned()
        } else if !r.active(now) {
            "expired".to_owned()
        } else {
            r.expires_at.map_or("active".to_owned(), |e| {
                format!("active, expires in {}d", (e - now) / 86_400)
            })
        };
        format!(
            "{}\t{}\t{}\t{state}",
            esc(&r.login),
            esc(&r.repos.join(",")),
            r.actions
        )
    })
}

/// `group list`: name and members.
fn print_groups(groups: &[Group], output: Output) -> anyhow::Result<()> {
    crate::output::list(groups, output, "groups", |g| {
        format!("{}\t{}", esc(&g.name), esc(&g.members.join(",")))
    })
}

/// `rule list`: id, subject, repository pattern, actions.
fn print_rules(rules: &[Rule], output: Output) -> anyhow::Result<()> {
    crate::output::list(rules, output, "rules", |r| {
        format!(
            "{}\t{}\t{}\t{}",
            r.id,
            esc(&r.subject.to_string()),
            esc(&r.repos),
            r.actions
        )
    })
}

/// `audit`: one event a line, as a table or as JSON. Failed logins record the name as given:
/// what the caller controls is escaped.
fn print_audit(events: &[AuditEvent], output: Output, json_lines: bool) -> anyhow::Result<()> {
    if json_lines {
        for e in events {
            println!("{}", escape_json_line(&serde_json::to_string(e)?));
        }
        return Ok(());
    }
    crate::output::list(events, output, "audit events", |e| {
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            e.time,
            esc(&e.action),
            esc(&e.actor),
            esc(e.repo.as_deref().unwrap_or("-")),
            esc(e.target.as_deref().unwrap_or("-")),
            esc(e.source.as_deref().unwrap_or("-")),
            esc(&e.detail)
        )
    })
}

fn show_secret(s: &RobotSecret) {
    print_secret(&s.login, &s.secret);
}

/// Runs `wharf user ...`.
pub fn user(cmd: UserCmd) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            UserCmd::Add {
                name,
                admin,
                password_stdin,
                data,
            } => {
                one_password_on_stdin(password_stdin, &data)?;
                let door = Door::open(&data)?;
                let password = read_password(&name, password_stdin)?;
                door.create_user(&CreateUser {
                    name: name.clone(),
                    password,
                    admin,
                })
                .await?;
                println!(
                    "user {name} added{}",
                    if admin { " as administrator" } else { "" }
                );
            }
            UserCmd::List { output, data } => {
                print_users(&Door::open(&data)?.users().await?, output.output)?
            }
            UserCmd::Passwd {
                name,
                password_stdin,
                data,
            } => {
                one_password_on_stdin(password_stdin, &data)?;
                let door = Door::open(&data)?;
                let password = read_password(&name, password_stdin)?;
                door.set_password(&name, &SetPassword { password }).await?;
                println!("password of {name} changed");
            }
            UserCmd::Disable { name, enable, data } => {
                Door::open(&data)?
                    .set_disabled(&name, SetDisabled { disabled: !enable })
                    .await?;
                println!(
                    "user {name} {}",
                    if enable { "enabled" } else { "disabled" }
                );
            }
            UserCmd::Delete { name, data } => {
                Door::open(&data)?.delete_user(&name).await?;
            }
        }
        Ok(())
    })
}

/// Runs `wharf robot ...`.
pub fn robot(cmd: RobotCmd) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            RobotCmd::Create {
                name,
                repos,
                actions,
                expires,
                description,
                data,
            } => {
                let actions = Actions::parse_list(&actions).map_err(anyhow::Error::msg)?;
                let expires_in_seconds = expires.as_deref().map(parse_duration).transpose()?;
                let secret = Door::open(&data)?
                    .create_robot(&CreateRobot {
                        name,
                        repos,
                        actions,
                        expires_in_seconds,
                        description,
                    })
                    .await?;
                show_secret(&secret);
            }
            RobotCmd::List { output, data } => {
                print_robots(&Door::open(&data)?.robots().await?, output.output)?
            }
            RobotCmd::Revoke { name, data } => {
                Door::open(&data)?.revoke_robot(&name).await?;
                println!("robot {name} revoked");
            }
            RobotCmd::Rotate { name, data } => {
                show_secret(&Door::open(&data)?.rotate_robot(&name).await?);
            }
        }
        Ok(())
    })
}

/// Runs `wharf group ...`.
pub fn group(cmd: GroupCmd) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            GroupCmd::Set {
                name,
                members,
                data,
            } => {
                Door::open(&data)?
                    .set_group(&name, &SetGroup { members })
                    .await?;
            }
            GroupCmd::List { output, data } => {
                print_groups(&Door::open(&data)?.groups().await?, output.output)?
            }
            GroupCmd::Delete { name, data } => {
                Door::open(&data)?.delete_group(&name).await?;
            }
        }
        Ok(())
    })
}

/// Runs `wharf rule ...`.
pub fn rule(cmd: RuleCmd) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            RuleCmd::Add {
                subject,
                repo,
                actions,
                data,
            } => {
                let actions = Actions::parse_list(&actions).map_err(anyhow::Error::msg)?;
                let rule = Door::open(&data)?
                    .create_rule(&CreateRule {
                        subject,
                        repos: repo,
                        actions,
                    })
                    .await?;
                println!("rule {} added", rule.id);
            }
            RuleCmd::List { output, data } => {
                print_rules(&Door::open(&data)?.rules().await?, output.output)?
            }
            RuleCmd::Delete { id, data } => {
                Door::open(&data)?.delete_rule(&id).await?;
            }
        }
        Ok(())
    })
}

/// Runs `wharf audit`.
pub fn audit(a: AuditArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        let since = a
            .since
            .map(|s| parse_duration(&s))
            .transpose()?
            .map(|d| auth::now().saturating_sub(d));
        let events = Door::open(&a.data)?
            .audit(&AuditQuery {
                actor: a.actor,
                repo: a.repo,
                action: a.action,
                since,
                limit: Some(a.limit),
            })
            .await?;
        print_audit(&events, a.output.output, a.json)
    })
}

/// Runs `wharf token-key ...`.
pub fn token_key(cmd: TokenKeyCmd) -> anyhow::Result<()> {
    match cmd {
        TokenKeyCmd::Rotate { data } => {
            crate::keys::rotate(data.local_only("wharf token-key rotate")?)?;
            println!("new token signing key in place; restart the server to use it");
        }
        TokenKeyCmd::Prune { data } => {
            let n = crate::keys::prune(data.local_only("wharf token-key prune")?)?;
            println!("{n} previous key(s) removed");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90d").unwrap(), 90 * 86_400);
        assert_eq!(parse_duration("12h").unwrap(), 43_200);
        assert_eq!(parse_duration("30m").unwrap(), 1_800);
        assert_eq!(parse_duration("7").unwrap(), 7 * 86_400);
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("5y").is_err());
    }
}

/// `wharf tag ...`
#[derive(Subcommand, Debug)]
pub enum TagCmd {
    /// Every change of a tag (created, moved, deleted), newest first.
    History {
        /// REPOSITORY:TAG
        image: String,
        /// At most this many changes.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        output: OutputArg,
        /// One JSON object per line (older form of `--output json`, which prints one array).
        #[arg(long, hide = true)]
        json: bool,
        #[command(flatten)]
        data: DataDir,
    },
    /// Move a tag back to an earlier manifest (the move is recorded too).
    Rollback {
        /// REPOSITORY:TAG
        image: String,
        /// The digest to move the tag to.
        #[arg(long, conflicts_with = "steps", required_unless_present = "steps")]
        to: Option<String>,
        /// Move the tag to where it pointed this many changes ago.
        #[arg(long)]
        steps: Option<usize>,
        /// Server configuration file, for its immutable-tag rules (data-directory mode).
        #[arg(long, env = "WHARF_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        data: DataDir,
    },
}

/// The registry name given to references of this server's own repositories; only the
/// repository and tag are used.
const THIS_REGISTRY: &str = "localhost";

/// Splits `repo:tag`, a repository of this registry and a tag, with `oci`'s reference parser
/// (relative to this registry, so `app:v1` is the repository `app`, not Docker Hub's).
fn split_image(image: &str) -> anyhow::Result<(String, String)> {
    let r = oci::ImageRef::parse_in(THIS_REGISTRY, image)
        .map_err(|e| anyhow::anyhow!("{image:?}: {e}"))?;
    match (r.tag(), r.digest()) {
        (Some(tag), None) => Ok((r.repository().to_owned(), tag.to_owned())),
        _ => anyhow::bail!("expected REPOSITORY:TAG, got {image:?}"),
    }
}

#[cfg(test)]
mod split_image_tests {
    use super::split_image;

    #[test]
    fn repository_and_tag_of_this_registry() {
        assert_eq!(
            split_image("team/app:v1").unwrap(),
            ("team/app".to_owned(), "v1".to_owned())
        );
        assert_eq!(
            split_image("app:v1").unwrap(),
            ("app".to_owned(), "v1".to_owned())
        );
        for bad in ["app", "team/App:v1", "app:bad tag", "app:", "app@sha256:00"] {
            assert!(split_image(bad).is_err(), "{bad}");
        }
    }
}

/// `tag history`: time, actor, the move.
fn print_tag_events(
    events: &[store::TagEvent],
    output: Output,
    json_lines: bool,
) -> anyhow::Result<()> {
    if json_lines {
        for e in events {
            println!("{}", escape_json_line(&serde_json::to_string(e)?));
        }
        return Ok(());
    }
    crate::output::list(events, output, "tag changes", |e| {
        format!(
            "{}\t{}\t{} -> {}",
            e.time,
            esc(&e.actor),
            e.previous.as_deref().unwrap_or("(none)"),
            e.new.as_deref().unwrap_or("(deleted)")
        )
    })
}

/// Runs `wharf tag ...`.
pub fn tag(cmd: TagCmd) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            TagCmd::History {
                image,
                limit,
                output,
                json,
                data,
            } => {
                let (repo, tag) = split_image(&image)?;
                let events = Door::open(&data)?
                    .tag_history(&HistoryQuery {
                        repo,
                        tag,
                        limit: Some(limit.max(1)),
                    })
                    .await?;
                print_tag_events(&events, output.output, json)?;
            }
            TagCmd::Rollback {
                image,
                to,
                steps,
                config,
                data,
            } => {
                let (repo, tag) = split_image(&image)?;
                if to.is_none() && steps.is_none_or(|n| n < 1) {
                    bail!("give --to DIGEST or --steps N (1 or more)");
                }
                let door = match (&data.server, &config) {
                    (None, Some(p)) => {
                        let rules = crate::config::Config::load(p)?.tags.rules()?;
                        Door::local(data.local_dir()?, |b| b.tag_rules(rules))?
                    }
                    _ => Door::open(&data)?,
                };
                let done = door
                    .rollback(&Rollback {
                        repo,
                        tag,
                        to,
                        steps,
                    })
                    .await?;
                println!("{}:{} -> {}", done.repo, done.tag, done.digest);
            }
        }
        Ok(())
    })
}
