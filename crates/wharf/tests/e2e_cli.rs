//! End to end: how the CLI talks to a server and reports mistakes. `--server` without a scheme
//! works for a loopback server and is refused (asking for the scheme) for another; a server
//! that is not there gets a hint instead of a bare error chain; user errors never print a
//! backtrace, even with RUST_BACKTRACE=1. `serve` refuses a missing data directory unless
//! `--init`; passwords come from standard input with `--password-stdin` (new passwords, key
//! passwords) and `--as-password-stdin` (the `--as` login), never empty.

mod support;

use std::process::{Command, Output};

use support::*;

const ROOT: (&str, &str) = ("root", "root-password-cli");

fn wharf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .env("WHARF_PASSWORD", ROOT.1)
        .env("RUST_BACKTRACE", "1")
        .env_remove("WHARF_CONFIG")
        .env_remove("WHARF_DATA_DIR")
        .output()
        .unwrap()
}

/// A server-to-be with access control on and the admin `ROOT` created, not started yet.
fn with_root() -> AuthWharf {
    let s = AuthWharf::new("[auth]\n");
    s.must_cli(
        &["user", "add", ROOT.0, "--admin"],
        &format!("{}\n", ROOT.1),
    );
    s
}

/// Asserts that a command failed with status 1 and said `needle` on standard error.
fn fails_saying(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(1), "{}", stderr(o));
    assert!(stderr(o).contains(needle), "{}", stderr(o));
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn server_urls_connection_hints_and_no_backtraces() {
    let mut s = with_root();
    s.start();
    let bare = s.addr.to_string();

    // Loopback without a scheme: http:// is assumed.
    let out = wharf(&["user", "list", "--server", &bare, "--as", ROOT.0]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(ROOT.0));

    // Another host without a scheme: refused before anything is sent.
    let out = wharf(&[
        "user",
        "list",
        "--server",
        "registry.example.com",
        "--as",
        ROOT.0,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.starts_with(
            "error: --server registry.example.com: give the scheme, https://registry.example.com"
        ),
        "{e}"
    );
    assert!(
        !e.contains("stack backtrace") && !e.contains("Stack backtrace"),
        "{e}"
    );

    // Nothing listening: a hint, on one line, no backtrace.
    let port = free_port();
    let out = wharf(&[
        "user",
        "list",
        "--server",
        &format!("127.0.0.1:{port}"),
        "--as",
        ROOT.0,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.starts_with(&format!(
            "error: cannot reach the server at http://127.0.0.1:{port} (is it running there, and is --server right?"
        )),
        "{e}"
    );
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(!e.contains("backtrace"), "{e}");
}

/// Runs `wharf ARGS` on a pseudo-terminal (python's pty), typing `lines`; returns what the
/// terminal showed and the exit status.
fn on_terminal(args: &[&str], lines: &[&str]) -> (String, i32) {
    let script = r#"
import os, pty, sys, time
args = sys.argv[1:sys.argv.index("--")]
lines = sys.argv[sys.argv.index("--") + 1:]
pid, fd = pty.fork()
if pid == 0:
    os.execv(args[0], args)
out = b""
def read_until(needle, limit=20):
    global out
    end = time.time() + limit
    while needle not in out and time.time() < end:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
import termios
def echo_off(limit=5):
    # Type only once the program has turned echo off (as a person types after the prompt):
    # the prompt is written before echo goes off. Never turning it off is the bug under test:
    # then type anyway, and the echo shows.
    end = time.time() + limit
    while time.time() < end:
        if not termios.tcgetattr(fd)[3] & termios.ECHO:
            return
        time.sleep(0.01)
for l in lines:
    read_until(b": ")
    echo_off()
    os.write(fd, l.encode() + b"\r")
    time.sleep(0.2)
read_until(b"\n\n", 3)
try:
    while True:
        c = os.read(fd, 1024)
        if not c:
            break
        out += c
except OSError:
    pass
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .arg("--")
        .args(lines)
        .env_remove("WHARF_PASSWORD")
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

#[test]
fn new_passwords_are_asked_twice_without_echo_or_read_from_stdin() {
    let s = AuthWharf::new("[auth]\n");
    let dir = s.data_dir();
    let dir = dir.to_str().unwrap();
    // On a terminal: asked twice, never shown.
    let (shown, code) = on_terminal(
        &["user", "add", "alice", "--data-dir", dir],
        &["s3cret-Passw0rd", "s3cret-Passw0rd"],
    );
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("New password for alice: "), "{shown}");
    assert!(shown.contains("Repeat the password for alice: "), "{shown}");
    assert!(
        !shown.contains("s3cret"),
        "the password was echoed: {shown}"
    );
    assert!(shown.contains("user alice added"), "{shown}");
    // Two different answers: nothing changes.
    let (shown, code) = on_terminal(
        &["user", "add", "bob", "--data-dir", dir],
        &["first-Passw0rd-1", "second-Passw0rd-2"],
    );
    assert_eq!(code, 1, "{shown}");
    assert!(shown.contains("the two passwords differ"), "{shown}");
    // --password-stdin (and any piped stdin): the first line.
    s.must_cli(
        &["user", "add", "carol", "--password-stdin"],
        "carol-Passw0rd-1\n",
    );
    let list = s.must_cli(&["user", "list"], "");
    assert!(list.contains("alice") && list.contains("carol"), "{list}");
    assert!(!list.contains("bob"), "{list}");
}

#[test]
fn a_missing_data_dir_is_an_error_unless_created_and_local_only_commands_refuse_server() {
    let tmp = tempfile::tempdir().unwrap();
    let typo = tmp.path().join("wharf-dat");
    let out = wharf(&["user", "list", "--data-dir", typo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains(&format!("no data directory at {}", typo.display())) && e.contains("--create"),
        "{e}"
    );
    assert!(!typo.exists(), "a mistyped --data-dir was created");
    let out = wharf(&[
        "user",
        "list",
        "--data-dir",
        typo.to_str().unwrap(),
        "--create",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(typo.join("meta.redb").exists());

    // token-key works on files of the data directory: --server is refused, nothing written.
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args([
            "token-key",
            "rotate",
            "--server",
            "http://127.0.0.1:1",
            "--as",
            "root",
        ])
        .current_dir(cwd.path())
        .env("WHARF_PASSWORD", "x")
        .env_remove("WHARF_DATA_DIR")
        .output()
        .unwrap();
    fails_saying(
        &out,
        "wharf token-key rotate works on the data directory only",
    );
    assert_eq!(
        std::fs::read_dir(cwd.path()).unwrap().count(),
        0,
        "it wrote files"
    );
}

#[test]
fn rules_and_groups_may_name_only_identities_that_exist() {
    let s = AuthWharf::new("[auth]\n");
    s.must_cli(&["user", "add", "dev"], "dev-Passw0rd-1\n");
    for (subject, want) in [
        ("user:ghost", "no such user:ghost"),
        ("group:nobody", "no such group:nobody"),
        ("robot:r2", "no such robot:r2"),
    ] {
        let out = s.cli(
            &[
                "rule",
                "add",
                subject,
                "--repo",
                "team/*",
                "--actions",
                "pull",
            ],
            "",
        );
        assert_eq!(out.status.code(), Some(1), "{subject}");
        assert!(stderr(&out).contains(want), "{subject}: {}", stderr(&out));
    }
    let out = s.cli(
        &[
            "group", "set", "devs", "--member", "dev", "--member", "ghost",
        ],
        "",
    );
    fails_saying(&out, "no such user or robot: ghost");
    s.must_cli(&["group", "set", "devs", "--member", "dev"], "");
    for subject in ["user:dev", "group:devs", "anonymous"] {
        s.must_cli(
            &[
                "rule",
                "add",
                subject,
                "--repo",
                "team/*",
                "--actions",
                "pull",
            ],
            "",
        );
    }
    let rules = s.must_cli(&["rule", "list"], "");
    assert_eq!(
        rules.lines().filter(|l| l.contains("team/*")).count(),
        3,
        "{rules}"
    );
}

#[test]
fn lists_print_the_same_records_both_ways_and_say_when_empty() {
    let mut s = with_root();
    // Locally.
    let local_json = s.must_cli(&["user", "list", "-o", "json"], "");
    let users: serde_json::Value = serde_json::from_str(&local_json).unwrap();
    assert_eq!(users[0]["name"], ROOT.0, "{users}");
    let out = s.cli(&["robot", "list"], "");
    assert!(out.status.success());
    assert!(out.stdout.is_empty(), "an empty table prints no record");
    assert!(stderr(&out).contains("no robots"), "{}", stderr(&out));
    assert_eq!(
        s.must_cli(&["robot", "list", "--output", "json"], "")
            .trim(),
        "[]"
    );
    let local_table = s.must_cli(&["user", "list"], "");
    // Through the server: the same records.
    s.start();
    let server = s.addr.to_string();
    let remote = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--server", &server, "--as", ROOT.0]);
        wharf(&a)
    };
    let out = remote(&["user", "list", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let remote_users: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(remote_users, users);
    let out = remote(&["user", "list"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), local_table);
    let out = remote(&["rule", "list", "-o", "json"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    let out = remote(&["rule", "list"]);
    assert!(
        out.stdout.is_empty() && stderr(&out).contains("no rules"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn serve_on_a_busy_port_creates_nothing() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["serve", "--init", "--listen"])
        .arg(busy.local_addr().unwrap().to_string())
        .arg("--data-dir")
        .arg(&data)
        .env_remove("WHARF_CONFIG")
        .env_remove("WHARF_DATA_DIR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.starts_with("error: binding 127.0.0.1:"), "{e}");
    assert!(
        !data.exists(),
        "the data directory was created before the bind failed"
    );
}

/// `wharf serve --listen 127.0.0.1:PORT --data-dir DATA EXTRA`: the exit status and standard
/// error when it stops by itself within 20 s, or `None` once `/readyz` answered 200 (then it is
/// killed).
fn serve_until_ready(data: &std::path::Path, extra: &[&str]) -> Option<(Option<i32>, String)> {
    let port = free_port();
    let log = data.with_extension("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .env_remove("WHARF_CONFIG")
        .env_remove("WHARF_DATA_DIR")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let http = Http::new(([127, 0, 0, 1], port).into());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return Some((st.code(), std::fs::read_to_string(&log).unwrap()));
        }
        if http.get("/readyz").is_ok_and(|r| r.status == 200) {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "neither ready nor stopped in 20 s:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn serve_needs_an_existing_data_dir_or_init() {
    let tmp = tempfile::tempdir().unwrap();
    // Missing: refused on one line naming --init; nothing is created.
    let data = tmp.path().join("wharf-dat");
    let (code, err) = serve_until_ready(&data, &[]).expect("serve started on a missing dir");
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "error: no data directory at {} (a mistyped --data-dir or storage.data_dir? give \
             `wharf serve --init` to create a new registry there)",
            data.display()
        )
    );
    assert!(!data.exists(), "a missing --data-dir was created");
    // The same through the environment (as a container or a unit file gives it).
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("WHARF_DATA_DIR", &data)
        .env_remove("WHARF_CONFIG")
        .output()
        .unwrap();
    fails_saying(&out, "give `wharf serve --init`");
    assert!(!data.exists());
    // A file where the directory should be: refused, even with --init.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let (code, err) = serve_until_ready(&file, &["--init"]).expect("serve started on a file");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is not a directory"), "{err}");

    // --init: created (owner only), and the registry starts in it.
    assert_eq!(serve_until_ready(&data, &["--init"]), None);
    assert!(data.join("meta.redb").exists());
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&data).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    }
    // Existing now: it starts without --init, and --init again changes nothing.
    assert_eq!(serve_until_ready(&data, &[]), None);
    assert_eq!(serve_until_ready(&data, &["--init"]), None);

    // An existing empty directory (a freshly mounted volume) is accepted without --init.
    let volume = tmp.path().join("volume");
    std::fs::create_dir(&volume).unwrap();
    assert_eq!(serve_until_ready(&volume, &[]), None);
    assert!(volume.join("meta.redb").exists());
}

/// `wharf ARGS` with `stdin` as standard input, and neither WHARF_PASSWORD nor COSIGN_PASSWORD
/// set: a password can come only from standard input.
fn wharf_stdin(args: &[&str], stdin: &str) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(args)
        .env_remove("WHARF_PASSWORD")
        .env_remove("COSIGN_PASSWORD")
        .env_remove("WHARF_CONFIG")
        .env_remove("WHARF_DATA_DIR")
        .env_remove("WHARF_USER")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The command may exit without reading (a usage error): ignore a broken pipe.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

#[test]
fn login_passwords_come_from_stdin_with_as_password_stdin() {
    let mut s = with_root();
    // An empty new password on standard input is refused, not stored.
    let out = s.cli(&["user", "add", "empty", "--password-stdin"], "\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: standard input gave an empty password"),
        "{}",
        stderr(&out)
    );
    s.start();
    let server = s.addr.to_string();
    let remote = |args: &[&str], stdin: &str| {
        let mut a = args.to_vec();
        a.extend(["--server", &server, "--as", ROOT.0]);
        wharf_stdin(&a, stdin)
    };
    // The login from standard input (one line, its line ending stripped; CRLF too).
    for input in [
        format!("{}\n", ROOT.1),
        format!("{}\r\n", ROOT.1),
        ROOT.1.to_owned(),
    ] {
        let out = remote(&["user", "list", "--as-password-stdin"], &input);
        assert!(out.status.success(), "{input:?}: {}", stderr(&out));
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("root\tadmin"));
    }
    // The same flag on the other command families that take --as (gc, retention, backup
    // share the flag; the cache's own --as has it too).
    let out = remote(
        &["gc", "--dry-run", "-o", "json", "--as-password-stdin"],
        &format!("{}\n", ROOT.1),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["dry_run"], true, "{report}");
    // A wrong password is the server's refusal.
    let out = remote(&["user", "list", "--as-password-stdin"], "wrong-password\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
    // Empty standard input (or an empty first line): refused before anything is sent.
    for input in ["", "\n"] {
        let out = remote(&["user", "list", "--as-password-stdin"], input);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            stderr(&out).trim_end(),
            "error: --as-password-stdin: standard input gave an empty password (the first line is read)"
        );
    }
    // Without the flag and without a terminal: the error names both ways.
    let out = remote(&["user", "list"], "");
    fails_saying(&out, "--as-password-stdin, or set WHARF_PASSWORD");
    // --as-password-stdin needs --as.
    let out = wharf_stdin(
        &["user", "list", "--server", &server, "--as-password-stdin"],
        "x\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("give --as"), "{}", stderr(&out));
    // Two passwords cannot both come from standard input.
    let out = remote(
        &[
            "user",
            "add",
            "bob",
            "--password-stdin",
            "--as-password-stdin",
        ],
        &format!("{}\nbob-Passw0rd-1\n", ROOT.1),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with(
            "error: --password-stdin and --as-password-stdin both read standard input"
        ),
        "{}",
        stderr(&out)
    );
    let out = remote(
        &["user", "passwd", ROOT.0, "--as-password-stdin"],
        &format!("{}\nnew-Passw0rd-1\n", ROOT.1),
    );
    fails_saying(&out, "no terminal to ask the new password on");
    let out = wharf(&["user", "list", "--server", &server, "--as", ROOT.0]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("bob"));
    // With the login in WHARF_PASSWORD, the new password comes from standard input.
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args([
            "user",
            "add",
            "bob",
            "--password-stdin",
            "--server",
            &server,
        ])
        .args(["--as", ROOT.0])
        .env("WHARF_PASSWORD", ROOT.1)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"bob-Passw0rd-1\n")
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // And bob logs in with it, his password from standard input.
    let out = wharf_stdin(
        &[
            "user",
            "list",
            "--server",
            &server,
            "--as",
            "bob",
            "--as-password-stdin",
        ],
        "bob-Passw0rd-1\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));
    s.stop();
}

#[test]
fn key_passwords_come_from_stdin_with_password_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("k");
    let prefix = prefix.to_str().unwrap();
    let key = format!("{prefix}.key");
    let public = format!("{prefix}.pub");
    const PW: &str = "key-pass-phrase";
    let generate = |input: &str| {
        wharf_stdin(
            &[
                "key",
                "generate",
                "--output-prefix",
                prefix,
                "--password-stdin",
            ],
            input,
        )
    };
    // Empty: refused, no key written.
    for input in ["", "\n"] {
        let out = generate(input);
        assert_eq!(out.status.code(), Some(1), "{input:?}");
        assert_eq!(
            stderr(&out).trim_end(),
            "error: --password-stdin: standard input gave an empty password (the first line is read)"
        );
        assert!(!std::path::Path::new(&key).exists());
    }
    // Without the flag and without a terminal: the error names both ways.
    let out = wharf_stdin(&["key", "generate", "--output-prefix", prefix], "x\n");
    fails_saying(&out, "--password-stdin, or set COSIGN_PASSWORD");
    let out = generate(&format!("{PW}\n"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .contains("ENCRYPTED SIGSTORE PRIVATE KEY")
    );

    // key public: the password from standard input decrypts it.
    let out = wharf_stdin(
        &["key", "public", "--key", &key, "--password-stdin"],
        &format!("{PW}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        std::fs::read_to_string(&public).unwrap()
    );
    let out = wharf_stdin(
        &["key", "public", "--key", &key, "--password-stdin"],
        "wrong\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let out = wharf_stdin(&["key", "public", "--key", &key, "--password-stdin"], "\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("empty password"), "{}", stderr(&out));

    // sign-blob, then verify-blob with the public key.
    let file = tmp.path().join("file.txt");
    std::fs::write(&file, "signed content\n").unwrap();
    let file = file.to_str().unwrap();
    let sig = tmp.path().join("file.sig");
    let sig = sig.to_str().unwrap();
    let out = wharf_stdin(
        &[
            "sign-blob",
            "--key",
            &key,
            "--password-stdin",
            "--output-signature",
            sig,
            file,
        ],
        &format!("{PW}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = wharf_stdin(
        &["verify-blob", "--key", &public, "--signature", sig, file],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = wharf_stdin(&["sign-blob", "--key", &key, "--password-stdin", file], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("empty password"), "{}", stderr(&out));

    // sign an image in a registry, then verify it.
    let server = Server::start();
    let http = server.http();
    push_image(&http, "team/app", "v1", 7);
    let image = format!("{}/team/app:v1", server.host());
    let out = wharf_stdin(&["sign", &image, "--key", &key, "--password-stdin"], "\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("empty password"), "{}", stderr(&out));
    let out = wharf_stdin(
        &["sign", &image, "--key", &key, "--password-stdin"],
        &format!("{PW}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = wharf_stdin(&["verify", &image, "--key", &public], "");
    assert!(out.status.success(), "{}", stderr(&out));
}
