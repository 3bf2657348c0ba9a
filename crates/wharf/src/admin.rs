//! Identity management from the command line: users, robots, groups, permission rules, the
//! audit log and token keys. Works on a data directory with the server stopped (the metadata
//! database admits one process at a time), or, with `--server URL`, through a running server's
//! management API as an administrator.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use auth::{Actions, Group, Robot, Rule, Subject, User};
use clap::{Args, Subcommand};
use service::identities::{AuditQuery, Identities, IdentityError};

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
    /// Administrator login for --server; the password comes from WHARF_PASSWORD.
    #[arg(long = "as", env = "WHARF_USER")]
    pub login_as: Option<String>,
}

/// Percent-encodes a query value for [`Remote`] calls (`?repo=...&tag=...`).
pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A running server's management API.
pub(crate) struct Remote {
    http: reqwest::Client,
    base: String,
    auth: Option<(String, String)>,
}

impl Remote {
    pub(crate) fn of(d: &DataDir) -> anyhow::Result<Option<Remote>> {
        let Some(server) = &d.server else {
            return Ok(None);
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        let auth = match &d.login_as {
            Some(u) => Some((
                u.clone(),
                std::env::var("WHARF_PASSWORD")
                    .context("--as needs the password in WHARF_PASSWORD")?,
            )),
            None => None,
        };
        Ok(Some(Remote {
            http: reqwest::Client::builder()
                .build()
                .context("setting up the HTTP client")?,
            base: server.trim_end_matches('/').to_owned(),
            auth,
        }))
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some((u, p)) = &self.auth {
            req = req.basic_auth(u, Some(p));
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(&b)?);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {}{path}", self.base))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let msg = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_owned))
                .unwrap_or(text);
            bail!("{method} {path}: {status}: {msg}");
        }
        if text.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {path}: answer is not JSON"))
    }
}

/// `wharf user ...`
#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Add a user (password read from standard input's first line).
    Add {
        /// Login name.
        name: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        data: DataDir,
    },
    /// List users.
    List {
        #[command(flatten)]
        data: DataDir,
    },
    /// Set a new password (read from standard input's first line).
    Passwd {
        /// Login name.
        name: String,
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
    /// One JSON object per line.
    #[arg(long)]
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

fn open(data: &Path) -> anyhow::Result<Identities> {
    store::private_dir(data).with_context(|| format!("creating {}", data.display()))?;
    Ok(Identities::new(Arc::new(open_meta(data)?)))
}

fn read_secret_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Reads a new user password (one line of stdin) and applies the rule the management API applies
/// ([`auth::identity::validate_password`]), so no front door accepts what another refuses.
fn read_password() -> anyhow::Result<String> {
    let pw = read_secret_line()?;
    auth::identity::validate_password(&pw)
        .map_err(|e| anyhow::anyhow!("{e} (read from standard input)"))?;
    Ok(pw)
}

async fn audit_change(ids: &Identities, detail: String) {
    let _ = ids
        .audit(&service::identities::AuditEvent {
            time: auth::now(),
            action: "identity.change".into(),
            actor: format!(
                "cli:{}",
                std::env::var("USER").unwrap_or_else(|_| "unknown".into())
            ),
            repo: None,
            target: None,
            source: None,
            detail,
        })
        .await;
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

fn print_json_lines(v: &serde_json::Value) {
    for item in v.as_array().into_iter().flatten() {
        println!("{}", escape_json_line(&item.to_string()));
    }
}

/// Runs a command through the management API; `None` when the command works locally.
async fn user_remote(cmd: &UserCmd) -> anyhow::Result<Option<()>> {
    use reqwest::Method;
    let data = match cmd {
        UserCmd::Add { data, .. }
        | UserCmd::List { data }
        | UserCmd::Passwd { data, .. }
        | UserCmd::Disable { data, .. }
        | UserCmd::Delete { data, .. } => data,
    };
    let Some(r) = Remote::of(data)? else {
        return Ok(None);
    };
    match cmd {
        UserCmd::Add { name, admin, .. } => {
            let pw = read_password()?;
            r.call(
                Method::POST,
                "/api/v1/users",
                Some(serde_json::json!({"name": name, "password": pw, "admin": admin})),
            )
            .await?;
            println!(
                "user {name} added{}",
                if *admin { " as administrator" } else { "" }
            );
        }
        UserCmd::List { .. } => {
            print_json_lines(&r.call(Method::GET, "/api/v1/users", None).await?)
        }
        UserCmd::Passwd { name, .. } => {
            let pw = read_password()?;
            r.call(
                Method::PUT,
                &format!("/api/v1/users/{name}/password"),
                Some(serde_json::json!({"password": pw})),
            )
            .await?;
            println!("password of {name} changed");
        }
        UserCmd::Disable { name, enable, .. } => {
            r.call(
                Method::PUT,
                &format!("/api/v1/users/{name}/disabled"),
                Some(serde_json::json!({"disabled": !enable})),
            )
            .await?;
            println!(
                "user {name} {}",
                if *enable { "enabled" } else { "disabled" }
            );
        }
        UserCmd::Delete { name, .. } => {
            r.call(Method::DELETE, &format!("/api/v1/users/{name}"), None)
                .await?;
        }
    }
    Ok(Some(()))
}

async fn robot_remote(cmd: &RobotCmd) -> anyhow::Result<Option<()>> {
    use reqwest::Method;
    let data = match cmd {
        RobotCmd::Create { data, .. }
        | RobotCmd::List { data }
        | RobotCmd::Revoke { data, .. }
        | RobotCmd::Rotate { data, .. } => data,
    };
    let Some(r) = Remote::of(data)? else {
        return Ok(None);
    };
    let show = |v: serde_json::Value| {
        print_secret(
            v["login"].as_str().unwrap_or(""),
            v["secret"].as_str().unwrap_or(""),
        );
    };
    match cmd {
        RobotCmd::Create {
            name,
            repos,
            actions,
            expires,
            description,
            ..
        } => {
            let actions = Actions::parse_list(actions).map_err(anyhow::Error::msg)?;
            let expires = expires.as_deref().map(parse_duration).transpose()?;
            let body = serde_json::json!({"name": name, "repos": repos, "actions": actions,
                "expires_in_seconds": expires, "description": description});
            show(r.call(Method::POST, "/api/v1/robots", Some(body)).await?);
        }
        RobotCmd::List { .. } => {
            print_json_lines(&r.call(Method::GET, "/api/v1/robots", None).await?)
        }
        RobotCmd::Revoke { name, .. } => {
            r.call(Method::POST, &format!("/api/v1/robots/{name}/revoke"), None)
                .await?;
            println!("robot {name} revoked");
        }
        RobotCmd::Rotate { name, .. } => {
            show(
                r.call(Method::POST, &format!("/api/v1/robots/{name}/rotate"), None)
                    .await?,
            );
        }
    }
    Ok(Some(()))
}

async fn group_remote(cmd: &GroupCmd) -> anyhow::Result<Option<()>> {
    use reqwest::Method;
    let data = match cmd {
        GroupCmd::Set { data, .. } | GroupCmd::List { data } | GroupCmd::Delete { data, .. } => {
            data
        }
    };
    let Some(r) = Remote::of(data)? else {
        return Ok(None);
    };
    match cmd {
        GroupCmd::Set { name, members, .. } => {
            r.call(
                Method::PUT,
                &format!("/api/v1/groups/{name}"),
                Some(serde_json::json!({"members": members})),
            )
            .await?;
        }
        GroupCmd::List { .. } => {
            print_json_lines(&r.call(Method::GET, "/api/v1/groups", None).await?)
        }
        GroupCmd::Delete { name, .. } => {
            r.call(Method::DELETE, &format!("/api/v1/groups/{name}"), None)
                .await?;
        }
    }
    Ok(Some(()))
}

async fn rule_remote(cmd: &RuleCmd) -> anyhow::Result<Option<()>> {
    use reqwest::Method;
    let data = match cmd {
        RuleCmd::Add { data, .. } | RuleCmd::List { data } | RuleCmd::Delete { data, .. } => data,
    };
    let Some(r) = Remote::of(data)? else {
        return Ok(None);
    };
    match cmd {
        RuleCmd::Add {
            subject,
            repo,
            actions,
            ..
        } => {
            let actions = Actions::parse_list(actions).map_err(anyhow::Error::msg)?;
            let v = r
                .call(
                    Method::POST,
                    "/api/v1/rules",
                    Some(
                        serde_json::json!({"subject": subject, "repos": repo, "actions": actions}),
                    ),
                )
                .await?;
            println!("rule {} added", v["id"].as_str().unwrap_or("?"));
        }
        RuleCmd::List { .. } => {
            print_json_lines(&r.call(Method::GET, "/api/v1/rules", None).await?)
        }
        RuleCmd::Delete { id, .. } => {
            r.call(Method::DELETE, &format!("/api/v1/rules/{id}"), None)
                .await?;
        }
    }
    Ok(Some(()))
}

/// Runs `wharf user ...`.
pub fn user(cmd: UserCmd) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        if user_remote(&cmd).await?.is_some() {
            return Ok(());
        }
        match cmd {
            UserCmd::Add { name, admin, data } => {
                auth::identity::validate_user_name(&name).map_err(anyhow::Error::msg)?;
                let ids = open(&data.data_dir)?;
                if ids.user(&name).await?.is_some() {
                    bail!("user {name} already exists (use `wharf user passwd`)");
                }
                let pw = read_password()?;
                let hash = auth::secret::hash_password(&pw)?;
                ids.put_user(&User {
                    name: name.clone(),
                    password_hash: hash,
                    admin,
                    disabled: false,
                    created: auth::now(),
                    source: None,
                })
                .await?;
                audit_change(&ids, format!("user {name} added (admin: {admin})")).await;
                println!(
                    "user {name} added{}",
                    if admin { " as administrator" } else { "" }
                );
            }
            UserCmd::List { data } => {
                for u in open(&data.data_dir)?.users().await? {
                    println!(
                        "{}\t{}{}",
                        esc(&u.name),
                        if u.admin { "admin" } else { "user" },
                        if u.disabled { "\tdisabled" } else { "" }
                    );
                }
            }
            UserCmd::Passwd { name, data } => {
                let ids = open(&data.data_dir)?;
                let mut u = ids
                    .user(&name)
                    .await?
                    .with_context(|| format!("no user {name}"))?;
                u.password_hash = auth::secret::hash_password(&read_password()?)?;
                ids.put_user(&u).await?;
                audit_change(&ids, format!("user {name} password changed")).await;
                println!("password of {name} changed");
            }
            UserCmd::Disable { name, enable, data } => {
                let ids = open(&data.data_dir)?;
                let mut u = ids
                    .user(&name)
                    .await?
                    .with_context(|| format!("no user {name}"))?;
                u.disabled = !enable;
                ids.put_user(&u).await?;
                audit_change(
                    &ids,
                    format!(
                        "user {name} {}",
                        if enable { "enabled" } else { "disabled" }
                    ),
                )
                .await;
                println!(
                    "user {name} {}",
                    if enable { "enabled" } else { "disabled" }
                );
            }
            UserCmd::Delete { name, data } => {
                let ids = open(&data.data_dir)?;
                if !ids.delete_user(&name).await? {
                    bail!("no user {name}");
                }
                audit_change(&ids, format!("user {name} deleted")).await;
            }
        }
        Ok(())
    })
}

/// Runs `wharf robot ...`.
pub fn robot(cmd: RobotCmd) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        if robot_remote(&cmd).await?.is_some() {
            return Ok(());
        }
        match cmd {
            RobotCmd::Create {
                name,
                repos,
                actions,
                expires,
                description,
                data,
            } => {
                auth::identity::validate_name(&name).map_err(anyhow::Error::msg)?;
                for r in &repos {
                    auth::Pattern::new(r).map_err(anyhow::Error::msg)?;
                }
                let actions = Actions::parse_list(&actions).map_err(anyhow::Error::msg)?;
                let expires_at = expires
                    .map(|e| parse_duration(&e))
                    .transpose()?
                    .map(|d| auth::now() + d);
                let ids = open(&data.data_dir)?;
                if ids.robot(&name).await?.is_some() {
                    bail!("robot {name} already exists (use `wharf robot rotate`)");
                }
                let secret = auth::secret::generate_secret()?;
                ids.put_robot(&Robot {
                    name: name.clone(),
                    secret_hash: auth::secret::hash_secret(&secret),
                    repos: repos.clone(),
                    actions,
                    expires_at,
                    revoked: false,
                    created: auth::now(),
                    description,
                })
                .await?;
                audit_change(
                    &ids,
                    format!("robot {name} created for {} ({actions})", repos.join(" ")),
                )
                .await;
                print_secret(&format!("robot${name}"), &secret);
            }
            RobotCmd::List { data } => {
                let now = auth::now();
                for r in open(&data.data_dir)?.robots().await? {
                    let state = if r.revoked {
                        "revoked".to_owned()
                    } else if !r.active(now) {
                        "expired".to_owned()
                    } else {
                        r.expires_at.map_or("active".to_owned(), |e| {
                            format!("active, expires in {}d", (e - now) / 86_400)
                        })
                    };
                    println!(
                        "robot${}\t{}\t{}\t{state}",
                        esc(&r.name),
                        esc(&r.repos.join(",")),
                        r.actions
                    );
                }
            }
            RobotCmd::Revoke { name, data } => {
                let ids = open(&data.data_dir)?;
                let mut r = ids
                    .robot(&name)
                    .await?
                    .with_context(|| format!("no robot {name}"))?;
                r.revoked = true;
                ids.put_robot(&r).await?;
                audit_change(&ids, format!("robot {name} revoked")).await;
                println!("robot {name} revoked");
            }
            RobotCmd::Rotate { name, data } => {
                let ids = open(&data.data_dir)?;
                let mut r = ids
                    .robot(&name)
                    .await?
                    .with_context(|| format!("no robot {name}"))?;
                let secret = auth::secret::generate_secret()?;
                r.secret_hash = auth::secret::hash_secret(&secret);
                r.revoked = false;
                ids.put_robot(&r).await?;
                audit_change(&ids, format!("robot {name} secret rotated")).await;
                print_secret(&format!("robot${name}"), &secret);
            }
        }
        Ok(())
    })
}

/// Runs `wharf group ...`.
pub fn group(cmd: GroupCmd) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        if group_remote(&cmd).await?.is_some() {
            return Ok(());
        }
        match cmd {
            GroupCmd::Set {
                name,
                members,
                data,
            } => {
                auth::identity::validate_name(&name).map_err(anyhow::Error::msg)?;
                let ids = open(&data.data_dir)?;
                ids.put_group(&Group {
                    name: name.clone(),
                    members: members.clone(),
                })
                .await?;
                audit_change(
                    &ids,
                    format!("group {name} set to [{}]", members.join(", ")),
                )
                .await;
            }
            GroupCmd::List { data } => {
                for g in open(&data.data_dir)?.groups().await? {
                    println!("{}\t{}", esc(&g.name), esc(&g.members.join(",")));
                }
            }
            GroupCmd::Delete { name, data } => {
                let ids = open(&data.data_dir)?;
                if !ids.delete_group(&name).await? {
                    bail!("no group {name}");
                }
                audit_change(&ids, format!("group {name} deleted")).await;
            }
        }
        Ok(())
    })
}

/// Runs `wharf rule ...`.
pub fn rule(cmd: RuleCmd) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        if rule_remote(&cmd).await?.is_some() {
            return Ok(());
        }
        match cmd {
            RuleCmd::Add { subject, repo, actions, data } => {
                let subject = Subject::parse(&subject)
                    .with_context(|| format!("invalid subject {subject:?}: use user:NAME, group:NAME, robot:NAME or anonymous"))?;
                auth::Pattern::new(&repo).map_err(anyhow::Error::msg)?;
                let actions = Actions::parse_list(&actions).map_err(anyhow::Error::msg)?;
                let id = hex::encode(auth::secret::random_bytes::<6>()?);
                let ids = open(&data.data_dir)?;
                let rule = Rule { id: id.clone(), subject, repos: repo, actions };
                ids.put_rule(&rule).await?;
                audit_change(&ids, format!("rule {id}: {} may {} {}", rule.subject, rule.actions, rule.repos)).await;
                println!("rule {id} added");
            }
            RuleCmd::List { data } => {
                for r in open(&data.data_dir)?.rules().await? {
                    let subject = r.subject.to_string();
                    println!("{}\t{}\t{}\t{}", r.id, esc(&subject), esc(&r.repos), r.actions);
                }
            }
            RuleCmd::Delete { id, data } => {
                let ids = open(&data.data_dir)?;
                if !ids.delete_rule(&id).await? {
                    bail!("no rule {id}");
                }
                audit_change(&ids, format!("rule {id} deleted")).await;
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
        if let Some(r) = Remote::of(&a.data)? {
            let mut q = vec![format!("limit={}", a.limit)];
            for (k, v) in [
                ("actor", &a.actor),
                ("repo", &a.repo),
                ("action", &a.action),
            ] {
                if let Some(v) = v {
                    q.push(format!("{k}={}", urlencode(v)));
                }
            }
            if let Some(s) = since {
                q.push(format!("since={s}"));
            }
            let v = r
                .call(
                    reqwest::Method::GET,
                    &format!("/api/v1/audit?{}", q.join("&")),
                    None,
                )
                .await?;
            print_json_lines(&v);
            return Ok(());
        }
        let events = open(&a.data.data_dir)?
            .audit_query(&AuditQuery {
                actor: a.actor,
                repo: a.repo,
                action: a.action,
                since,
                limit: a.limit,
            })
            .await?;
        for e in events {
            // Failed logins record the name as given: escape what the caller controls.
            if a.json {
                println!("{}", escape_json_line(&serde_json::to_string(&e)?));
            } else {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    e.time,
                    esc(&e.action),
                    esc(&e.actor),
                    esc(e.repo.as_deref().unwrap_or("-")),
                    esc(e.target.as_deref().unwrap_or("-")),
                    esc(e.source.as_deref().unwrap_or("-")),
                    esc(&e.detail)
                );
            }
        }
        Ok(())
    })
}

/// Runs `wharf token-key ...`.
pub fn token_key(cmd: TokenKeyCmd) -> anyhow::Result<()> {
    match cmd {
        TokenKeyCmd::Rotate { data } => {
            crate::keys::rotate(&data.data_dir)?;
            println!("new token signing key in place; restart the server to use it");
        }
        TokenKeyCmd::Prune { data } => {
            let n = crate::keys::prune(&data.data_dir)?;
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
        /// One JSON object per line.
        #[arg(long)]
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

fn print_tag_event(e: &store::TagEvent, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", escape_json_line(&serde_json::to_string(e)?));
    } else {
        println!(
            "{}\t{}\t{} -> {}",
            e.time,
            esc(&e.actor),
            e.previous.as_deref().unwrap_or("(none)"),
            e.new.as_deref().unwrap_or("(deleted)")
        );
    }
    Ok(())
}

/// Runs `wharf tag ...`.
pub fn tag(cmd: TagCmd) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match cmd {
            TagCmd::History { image, limit, json, data } => {
                let (repo, tag) = split_image(&image)?;
                if let Some(r) = Remote::of(&data)? {
                    let v = r
                        .call(
                            reqwest::Method::GET,
                            &format!("/api/v1/tags/history?repo={}&tag={}&limit={limit}", urlencode(&repo), urlencode(&tag)),
                            None,
                        )
                        .await?;
                    for e in serde_json::from_value::<Vec<store::TagEvent>>(v)? {
                        print_tag_event(&e, json)?;
                    }
                    return Ok(());
                }
                let meta = open_meta(&data.data_dir)?;
                for e in store::MetaStore::tag_history(&meta, &repo, &tag, limit.max(1)).await? {
                    print_tag_event(&e, json)?;
                }
            }
            TagCmd::Rollback { image, to, steps, config, data } => {
                let (repo, tag) = split_image(&image)?;
                if let Some(r) = Remote::of(&data)? {
                    let v = r
                        .call(
                            reqwest::Method::POST,
                            "/api/v1/tags/rollback",
                            Some(serde_json::json!({"repo": repo, "tag": tag, "to": to, "steps": steps})),
                        )
                        .await?;
                    println!("{repo}:{tag} -> {}", v["digest"].as_str().unwrap_or("?"));
                    return Ok(());
                }
                let rules = match &config {
                    Some(p) => crate::config::Config::load(p)?.tags.rules()?,
                    None => service::tagrules::TagRules::default(),
                };
                let meta = open_meta(&data.data_dir)?;
                let target = match (to, steps) {
                    (Some(d), _) => oci::Digest::parse(&d).map_err(|e| anyhow::anyhow!("{d}: {e}"))?,
                    (None, Some(n)) if n >= 1 => {
                        let h = store::MetaStore::tag_history(&meta, &repo, &tag, n + 1).await?;
                        let prev = h
                            .get(n - 1)
                            .and_then(|e| e.previous.clone())
                            .with_context(|| format!("{repo}:{tag} has fewer than {n} earlier positions"))?;
                        oci::Digest::parse(&prev).map_err(|e| anyhow::anyhow!("{prev}: {e}"))?
                    }
                    _ => bail!("give --to DIGEST or --steps N (1 or more)"),
                };
                let actor = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()));
                let frozen = rules.immutable(&repo, &tag).is_some();
                store::MetaStore::set_tag(&meta, &repo, &tag, &target, &actor, frozen)
                    .await
                    .map_err(|e| match e {
                        store::StoreError::TagImmutable { tag, current } => anyhow::anyhow!(
                            "tag {tag} is immutable and points at {current}; it cannot be rolled back"
                        ),
                        e => e.into(),
                    })?;
                println!("{repo}:{tag} -> {target}");
            }
        }
        Ok(())
    })
}

fn open_meta(data: &Path) -> anyhow::Result<store::RedbMetaStore> {
    store::RedbMetaStore::open(&data.join("meta.redb")).with_context(|| {
        format!(
            "opening the metadata database in {} (is a server running on it? stop it first, or use --server)",
            data.display()
        )
    })
}
