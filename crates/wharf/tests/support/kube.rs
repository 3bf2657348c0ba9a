//! Tools of the Kubernetes manifest tests (deploy_manifests, deploy_registry): programs found
//! on PATH (a missing one fails the test: never a skip), the kubernetes-validate venv that
//! scripts/install-test-deps.sh makes, and running a command with optional input.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// `name` from PATH, or a failure naming the install script.
pub fn tool(name: &str) -> Command {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not on PATH: run scripts/install-test-deps.sh"));
    Command::new(found)
}

/// The kubernetes-validate executable in the venv scripts/install-test-deps.sh makes
/// (`$WHARF_KUBE_VALIDATE_VENV`, default `~/.cache/wharf-test-deps/kubernetes-validate`).
pub fn kubernetes_validate() -> PathBuf {
    let venv = super::test_venv("WHARF_KUBE_VALIDATE_VENV", "kubernetes-validate");
    let exe = venv.join("bin/kubernetes-validate");
    assert!(
        exe.is_file(),
        "{} missing: run scripts/install-test-deps.sh",
        exe.display()
    );
    exe
}

/// Runs `cmd` with `stdin` (or none) and collects its output.
pub fn output(cmd: &mut Command, stdin: Option<&[u8]>) -> Output {
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    if let Some(input) = stdin {
        // A child that stops before reading all its input (an early error) closes the pipe:
        // its status and output say why, so the broken pipe is not the failure to report (CI
        // once saw only "Broken pipe" here, with the child's own words lost).
        if let Err(e) = child.stdin.take().unwrap().write_all(input) {
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe,
                "writing the input of {cmd:?}: {e}"
            );
        }
    }
    child.wait_with_output().unwrap()
}

/// Status, stdout and stderr, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
