//! Records the source revision (`git rev-parse HEAD`) as `WHARF_REVISION` for
//! `wharf_build_info`; `unknown` outside a git checkout (a source tarball) or without git.
//! `WHARF_REVISION` in the environment wins (builds from an exported tree).
//!
//! Cheap by design: two `git rev-parse` calls, and it reruns only when HEAD moves (the HEAD file,
//! the branch it names, or packed refs), never on source edits.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=WHARF_REVISION");
    println!("cargo:rerun-if-changed=build.rs");
    if let Ok(r) = std::env::var("WHARF_REVISION")
        && !r.trim().is_empty()
    {
        println!("cargo:rustc-env=WHARF_REVISION={}", r.trim());
        return;
    }
    let revision = git(&["rev-parse", "HEAD"]).filter(|r| r.bytes().all(|b| b.is_ascii_hexdigit()));
    // The files whose change means HEAD moved: HEAD itself (a worktree has its own), the branch
    // it points to, and packed-refs (where a branch may live). Paths git prints are relative to
    // the manifest directory unless absolute. Only existing files are named: cargo reruns a
    // build script every time for a missing one.
    if revision.is_some() {
        let mut watch = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
        if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch.push(r);
        }
        for w in watch {
            if let Some(p) = git(&["rev-parse", "--git-path", &w]) {
                let mut path = PathBuf::from(&p);
                if path.is_relative() {
                    path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
                }
                if path.exists() {
                    println!("cargo:rerun-if-changed={}", path.display());
                }
            }
        }
    }
    println!(
        "cargo:rustc-env=WHARF_REVISION={}",
        revision.as_deref().unwrap_or("unknown")
    );
}
