//! End-to-end tests of access control failing closed and of the registry's other closed doors:
//! the registry stays closed in `auto` mode when the last identity goes (and after a restart),
//! the last administrator cannot be deleted or disabled (management API and CLI), an htpasswd
//! file that yields no users stops `wharf serve` before it listens, a tag rollback in a read-only
//! cached repository is refused like a push, the data directory is readable by its owner only,
//! and reserved or case-colliding names and groups of unknown members are refused.
//!
//! Each test runs its own `wharf serve` on a free loopback port with a temp data dir.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const ROOT: (&str, &str) = ("root", "root-password-1");
const ROOT2: (&str, &str) = ("root2", "root2-password-1");

fn add_user(s: &AuthWharf, (name, password): (&str, &str), admin: bool) {
    let mut args = vec!["user", "add", name];
    if admin {
        args.push("--admin");
    }
    s.must_cli(&args, &format!("{password}\n"));
}

/// The CLI's standard error, for a command that must fail.
fn cli_fails(s: &AuthWharf, args: &[&str], stdin: &str) -> String {
    let out = s.cli(args, stdin);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "`wharf {}` succeeded but must fail:\n{}{err}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    err
}

/// An anonymous upload start: 202 means anyone may push.
fn anonymous_push(s: &AuthWharf) -> Response {
    s.http()
        .must("POST", "/v2/anyone/app/blobs/uploads/", &[], &[])
}

fn api(s: &AuthWharf, method: &str, path: &str, login: (&str, &str), body: &Value) -> Response {
    let auth = basic(login.0, login.1);
    let body = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).unwrap()
    };
    s.http().must(
        method,
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &body,
    )
}

// -----------------------------------------------------------------------------------------------
// 3. Fail closed
// -----------------------------------------------------------------------------------------------

/// The only identity (a non-administrator user, made with the CLI) is deleted: `auto` mode used
/// to fall back to an open registry, where anonymous pushes succeed. It must stay closed, after
/// a restart too, until an administrator is added again.
#[test]
fn registry_stays_closed_when_the_last_identity_goes() {
    let mut s = AuthWharf::new("");
    add_user(&s, ("ci", "ci-password-1"), false);
    s.start();
    assert_eq!(anonymous_push(&s).status, 401, "closed with a user");
    s.stop();
    s.must_cli(&["user", "delete", "ci"], "");
    assert_eq!(s.must_cli(&["user", "list"], "").trim(), "", "nobody left");
    for start in 1..=2 {
        s.start();
        let r = anonymous_push(&s);
        assert_eq!(
            r.status,
            401,
            "start #{start} with no identity left: anonymous push must stay refused\n{}",
            r.dump()
        );
        assert!(
            r.header("www-authenticate").is_some(),
            "a challenge, as with users\n{}",
            r.dump()
        );
        s.stop();
    }
    // The way back: an administrator made on the data directory.
    add_user(&s, ROOT, true);
    s.start();
    assert_eq!(anonymous_push(&s).status, 401);
    let r = s.http().must(
        "POST",
        "/v2/anyone/app/blobs/uploads/",
        &[("Authorization", &basic(ROOT.0, ROOT.1))],
        &[],
    );
    assert_eq!(r.status, 202, "the new administrator pushes\n{}", r.dump());
}

/// Deleting the last administrator through the management API used to succeed (204), after
/// which `auto` mode answered anonymous pushes with 202. Refused now (409, naming the reason),
/// by the API and by the CLI on the data directory, for deletion and for disabling; with a
/// second administrator, the first can go.
#[test]
fn last_administrator_cannot_be_deleted_or_disabled() {
    let mut s = AuthWharf::new("");
    add_user(&s, ROOT, true);
    add_user(&s, ("dev", "dev-password-1"), false);
    s.start();

    let r = api(&s, "DELETE", "/api/v1/users/root", ROOT, &Value::Null);
    assert_eq!(r.status, 409, "last administrator deleted\n{}", r.dump());
    assert!(
        r.error_message().contains("last active administrator"),
        "{}",
        r.dump()
    );
    assert_eq!(anonymous_push(&s).status, 401);
    // The others may go; the last administrator still may not.
    api(&s, "DELETE", "/api/v1/users/dev", ROOT, &Value::Null).expect(204);
    let r = api(&s, "DELETE", "/api/v1/users/root", ROOT, &Value::Null);
    assert_eq!(r.status, 409, "{}", r.dump());
    let users = api(&s, "GET", "/api/v1/users", ROOT, &Value::Null)
        .expect(200)
        .json();
    assert_eq!(users.as_array().map(Vec::len), Some(1), "{users}");
    assert_eq!(anonymous_push(&s).status, 401);
    s.stop();

    // The CLI on the data directory: the same rule, for deletion and for disabling.
    let err = cli_fails(&s, &["user", "delete", "root"], "");
    assert!(err.contains("last active administrator"), "{err}");
    let err = cli_fails(&s, &["user", "disable", "root"], "");
    assert!(err.contains("last active administrator"), "{err}");
    let list = s.must_cli(&["user", "list"], "");
    assert!(
        list.lines()
            .any(|l| l.starts_with("root\tadmin") && !l.contains("disabled")),
        "{list}"
    );

    // With a second administrator, the first may be disabled and deleted.
    add_user(&s, ROOT2, true);
    s.must_cli(&["user", "disable", "root"], "");
    // root is disabled: root2 is now the last active administrator.
    let err = cli_fails(&s, &["user", "delete", "root2"], "");
    assert!(err.contains("last active administrator"), "{err}");
    s.must_cli(&["user", "delete", "root"], "");
    s.start();
    api(&s, "GET", "/api/v1/users", ROOT2, &Value::Null).expect(200);
    let r = api(&s, "DELETE", "/api/v1/users/root2", ROOT2, &Value::Null);
    assert_eq!(r.status, 409, "{}", r.dump());
}

/// `[auth] htpasswd` names a file that yields no users (empty, only comments, or no usable
/// line): `wharf serve` used to start with no identities, an open registry. It must exit
/// non-zero with a message naming the file and the problem, without ever listening.
#[test]
fn htpasswd_without_users_stops_the_start() {
    let s = AuthWharf::new("");
    let path = s.scratch().join("htpasswd");
    let cases = [
        ("", "empty"),
        ("# users\n\n", "empty or holds only comments"),
        (
            "legacy:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\nanonymous:$2b$05$abc\nnocolon\n",
            "line 1",
        ),
    ];
    for (content, want) in cases {
        fs::write(&path, content).unwrap();
        let cfg = s.scratch().join("wharf.toml");
        fs::write(&cfg, format!("[auth]\nhtpasswd = \"{}\"\n", path.display())).unwrap();
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(s.data_dir())
            .arg("--config")
            .arg(&cfg)
            .env_remove("WHARF_CONFIG")
            .env_remove("WHARF_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Until it exits (at most 20 s), the port must never answer.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut listened = false;
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break Some(st);
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                listened = true;
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if status.is_none() {
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let status = status.unwrap_or_else(|| {
            panic!("{content:?}: wharf serve kept running (listened: {listened})\n{err}")
        });
        assert!(!status.success(), "{content:?}: exit {status}\n{err}");
        assert!(!listened, "{content:?}: the port answered\n{err}");
        assert!(
            err.contains("yields no users") && err.contains(&*path.to_string_lossy()),
            "{content:?}: message\n{err}"
        );
        assert!(err.contains(want), "{content:?}: wants {want:?}\n{err}");
        if want == "line 1" {
            // Every unusable line is reported: the {SHA} entry, the reserved name, the garbage.
            assert!(
                err.contains("bcrypt") && err.contains("reserved") && err.contains("line 3"),
                "{err}"
            );
        }
    }
}

// -----------------------------------------------------------------------------------------------
// 10. One write check: tag rollback in a cached repository
// -----------------------------------------------------------------------------------------------

const UPSTREAM: &str = "upstream.test";

/// A tiny image (config + one layer + manifest) made from `seed`: (blobs, manifest, digest).
fn tiny_image(seed: &str) -> (Vec<Vec<u8>>, Vec<u8>, String) {
    let mut layer = format!("layer of {seed}\n").into_bytes();
    layer.extend(pattern(seed.len() as u64 + 7, 2000));
    let layer_digest = sha256_digest(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "config": {"Labels": {"seed": seed}}
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(&config), "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_digest, "size": layer.len()}]
    }))
    .unwrap();
    let digest = sha256_digest(&manifest);
    (vec![layer, config], manifest, digest)
}

fn push_image(http: &Http, repo: &str, tag: &str, seed: &str) -> String {
    let (blobs, manifest, digest) = tiny_image(seed);
    for b in &blobs {
        http.must_push_blob(repo, b);
    }
    http.push_manifest(repo, tag, OCI_MANIFEST, &manifest)
        .unwrap()
        .expect(201);
    digest
}

/// The digest `tag` resolves to through the cache (a local read: the tag TTL is long).
fn cached_digest(w: &AuthWharf, repo: &str, tag: &str) -> String {
    let r = w.http().must(
        "GET",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[
            ("Accept", ACCEPT_ALL),
            ("Authorization", &basic(ROOT.0, ROOT.1)),
        ],
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.dump());
    r.must_header("Docker-Content-Digest").to_owned()
}

/// A direct manifest PUT into a cached repository is DENIED; the tag rollback API used to move
/// the cached tag anyway (200). Both go through one write check now: 403 DENIED naming the
/// upstream, and the tag and its history stay as they were.
#[test]
fn rollback_in_a_cached_repository_is_denied() {
    // The upstream: a second Wharf, open (auto mode with no identity).
    let mut up = AuthWharf::new("");
    up.start();
    let v1 = push_image(&up.http(), "team/app", "v1", "one");
    let v2 = push_image(&up.http(), "team/app", "v2", "two");

    let mut w = AuthWharf::new(&format!(
        "[[cache.upstream]]\nhost = \"{UPSTREAM}\"\nurl = \"http://{}\"\ntag_ttl_seconds = 3600\n",
        up.host()
    ));
    add_user(&w, ROOT, true);
    w.start();
    let repo = format!("{UPSTREAM}/team/app");
    assert_eq!(cached_digest(&w, &repo, "v1"), v1);
    assert_eq!(cached_digest(&w, &repo, "v2"), v2);

    // The manifest PUT: refused (the reference behaviour).
    let (_, manifest, _) = tiny_image("two");
    let r = w.http().must(
        "PUT",
        &format!("/v2/{repo}/manifests/v1"),
        &[
            ("Content-Type", OCI_MANIFEST),
            ("Authorization", &basic(ROOT.0, ROOT.1)),
        ],
        &manifest,
    );
    assert_eq!(r.status, 403, "{}", r.dump());

    // The rollback: refused the same way.
    let history = |w: &AuthWharf| {
        api(
            w,
            "GET",
            &format!("/api/v1/tags/history?repo={repo}&tag=v1"),
            ROOT,
            &Value::Null,
        )
        .expect(200)
        .json()
    };
    let before = history(&w);
    let r = api(
        &w,
        "POST",
        "/api/v1/tags/rollback",
        ROOT,
        &json!({"repo": repo, "tag": "v1", "to": v2}),
    );
    assert_eq!(
        r.status,
        403,
        "rollback in a cached repository\n{}",
        r.dump()
    );
    assert_eq!(r.json()["errors"][0]["code"], "DENIED", "{}", r.dump());
    let msg = r.error_message();
    assert!(
        msg.contains("read-only") && msg.contains(UPSTREAM),
        "names the upstream: {msg}"
    );
    assert_eq!(cached_digest(&w, &repo, "v1"), v1, "the cached tag moved");
    assert_eq!(history(&w), before, "tag history changed");
    // Local repositories still roll back.
    let l1 = push_image_as_root(&w, "local/app", "t", "local-one");
    push_image_as_root(&w, "local/app", "t", "local-two");
    let r = api(
        &w,
        "POST",
        "/api/v1/tags/rollback",
        ROOT,
        &json!({"repo": "local/app", "tag": "t", "steps": 1}),
    )
    .expect(200);
    assert_eq!(r.json()["digest"], l1.as_str(), "{}", r.dump());
    w.stop();
    up.stop();
}

fn push_image_as_root(w: &AuthWharf, repo: &str, tag: &str, seed: &str) -> String {
    let (blobs, manifest, digest) = tiny_image(seed);
    let http = w.http();
    let auth = basic(ROOT.0, ROOT.1);
    for b in &blobs {
        let r = http.must(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &[("Authorization", &auth)],
            &[],
        );
        assert_eq!(r.status, 202, "{}", r.dump());
        let loc = with_query(&r.location(), &format!("digest={}", sha256_digest(b)));
        http.must(
            "PUT",
            &loc,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/octet-stream"),
            ],
            b,
        )
        .expect(201);
    }
    http.must(
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Authorization", &auth), ("Content-Type", OCI_MANIFEST)],
        &manifest,
    )
    .expect(201);
    digest
}

// -----------------------------------------------------------------------------------------------
// 11. File modes
// -----------------------------------------------------------------------------------------------

/// Every entry under `dir`, with its permission bits.
fn modes(dir: &Path, out: &mut Vec<(String, u32, bool)>) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let m = e.metadata().unwrap();
        out.push((
            e.path().display().to_string(),
            m.permissions().mode() & 0o777,
            m.is_dir(),
        ));
        if m.is_dir() {
            modes(&e.path(), out);
        }
    }
}

/// After a push (and with an upload in progress), the data directory, every directory under it
/// and every file in it (blobs, the upload, meta.redb with its password hashes and audit log,
/// the token keys) are the owner's only: 0700 and 0600. They used to be 0755/0644. The data
/// directory existed before the first start with 0755 (as a mounted volume would): it is made
/// private too.
#[test]
fn data_directory_is_private() {
    let mut s = AuthWharf::new("");
    fs::set_permissions(s.data_dir(), fs::Permissions::from_mode(0o755)).unwrap();
    add_user(&s, ROOT, true);
    s.start();
    push_image_as_root(&s, "team/app", "v1", "modes");
    // An upload in progress: started, one chunk, not finished.
    let auth = basic(ROOT.0, ROOT.1);
    let r = s.http().must(
        "POST",
        "/v2/team/app/blobs/uploads/",
        &[("Authorization", &auth)],
        &[],
    );
    assert_eq!(r.status, 202, "{}", r.dump());
    s.http()
        .must(
            "PATCH",
            &r.location(),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/octet-stream"),
            ],
            b"half a blob",
        )
        .expect(202);

    let data = s.data_dir();
    let mut all = vec![(
        data.display().to_string(),
        fs::metadata(&data).unwrap().permissions().mode() & 0o777,
        true,
    )];
    modes(&data, &mut all);
    let blobs = all
        .iter()
        .filter(|(p, _, dir)| p.contains("/blobs/sha256/") && !dir)
        .count();
    assert!(blobs >= 2, "the pushed blobs are there: {all:?}");
    assert!(
        all.iter()
            .any(|(p, _, dir)| p.contains("/uploads/") && !dir),
        "the upload in progress is there: {all:?}"
    );
    assert!(all.iter().any(|(p, _, _)| p.ends_with("meta.redb")));
    let open: Vec<_> = all
        .iter()
        .filter(|(_, mode, dir)| *mode != if *dir { 0o700 } else { 0o600 })
        .map(|(p, mode, _)| format!("{mode:o} {p}"))
        .collect();
    assert!(
        open.is_empty(),
        "not owner-only (want 0700 directories, 0600 files):\n{}",
        open.join("\n")
    );
}

// -----------------------------------------------------------------------------------------------
// 12. Names
// -----------------------------------------------------------------------------------------------

/// `anonymous` (how unauthenticated callers appear in rules and records) and the other names the
/// registry records actions under are refused as user names, `Alice` beside `alice` is refused,
/// and a group's members must exist: by the management API and by the CLI.
#[test]
fn reserved_and_colliding_names_and_unknown_members_are_refused() {
    let mut s = AuthWharf::new("");
    add_user(&s, ROOT, true);
    add_user(&s, ("alice", "alice-password-1"), false);
    s.start();
    let new_user = |name: &str| {
        api(
            &s,
            "POST",
            "/api/v1/users",
            ROOT,
            &json!({"name": name, "password": "some-password-1"}),
        )
    };
    for name in ["anonymous", "Anonymous", "retention", "pull-through-cache"] {
        let r = new_user(name);
        assert_eq!(r.status, 400, "user {name}\n{}", r.dump());
        assert!(r.error_message().contains("reserved"), "{}", r.dump());
    }
    for name in ["Alice", "ALICE"] {
        let r = new_user(name);
        assert_eq!(r.status, 409, "user {name} beside alice\n{}", r.dump());
        assert!(r.error_message().contains("alice"), "{}", r.dump());
    }
    let r = api(
        &s,
        "PUT",
        "/api/v1/groups/team",
        ROOT,
        &json!({"members": ["alice", "ghost", "robot$nobody"]}),
    );
    assert_eq!(r.status, 400, "group with unknown members\n{}", r.dump());
    let msg = r.error_message();
    assert!(
        msg.contains("ghost") && msg.contains("robot$nobody") && !msg.contains("alice,"),
        "{msg}"
    );
    api(
        &s,
        "PUT",
        "/api/v1/groups/team",
        ROOT,
        &json!({"members": ["alice"]}),
    )
    .expect(200);
    let users = api(&s, "GET", "/api/v1/users", ROOT, &Value::Null)
        .expect(200)
        .json();
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    s.stop();

    // The CLI on the data directory: the same rules.
    let err = cli_fails(&s, &["user", "add", "anonymous"], "some-password-1\n");
    assert!(err.contains("reserved"), "{err}");
    let err = cli_fails(&s, &["user", "add", "Alice"], "some-password-1\n");
    assert!(err.contains("alice"), "{err}");
    let err = cli_fails(&s, &["group", "set", "ops", "--member", "ghost"], "");
    assert!(err.contains("ghost"), "{err}");
    let groups = s.must_cli(&["group", "list"], "");
    assert!(!groups.contains("ops"), "{groups}");
}
