//! End to end: how the CLI talks to a server and reports mistakes. `--server` without a scheme
//! works for a loopback server and is refused (asking for the scheme) for another; a server
//! that is not there gets a hint instead of a bare error chain; user errors never print a
//! backtrace, even with RUST_BACKTRACE=1.

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

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn server_urls_connection_hints_and_no_backtraces() {
    let mut s = AuthWharf::new("[auth]\n");
    s.must_cli(
        &["user", "add", ROOT.0, "--admin"],
        &format!("{}\n", ROOT.1),
    );
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
