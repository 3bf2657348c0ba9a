//! The registry token signing keys in the data directory: generated on first start, rotated on
//! request, older keys kept for verification until they are pruned.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use auth::token::KeyRing;

fn auth_dir(data: &Path) -> PathBuf {
    data.join("auth")
}

fn current_path(data: &Path) -> PathBuf {
    auth_dir(data).join("token-signing-key.pem")
}

fn old_dir(data: &Path) -> PathBuf {
    auth_dir(data).join("previous-keys")
}

/// Writes a secret file readable only by its owner, atomically.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().context("key path has a parent")?;
    store::private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Loads the key ring, generating the signing key on first use.
pub fn load_or_create(data: &Path) -> anyhow::Result<KeyRing> {
    let cur = current_path(data);
    store::restrict(&auth_dir(data));
    if !cur.exists() {
        let pem = KeyRing::generate_pem().map_err(|e| anyhow::anyhow!("{e}"))?;
        write_private(&cur, &pem)?;
        tracing::info!(path = %cur.display(), "generated a token signing key");
    }
    let current =
        std::fs::read_to_string(&cur).with_context(|| format!("reading {}", cur.display()))?;
    let mut older = Vec::new();
    if let Ok(rd) = std::fs::read_dir(old_dir(data)) {
        for e in rd.flatten() {
            if e.path().extension().is_some_and(|x| x == "pem") {
                older.push(std::fs::read_to_string(e.path())?);
            }
        }
    }
    KeyRing::from_pems(&current, &older).map_err(|e| anyhow::anyhow!("loading token keys: {e}"))
}

/// Makes a new signing key; the previous one stays valid for verification.
pub fn rotate(data: &Path) -> anyhow::Result<()> {
    let cur = current_path(data);
    if cur.exists() {
        let old = std::fs::read_to_string(&cur)?;
        write_private(&old_dir(data).join(format!("{}.pem", auth::now())), &old)?;
    }
    let pem = KeyRing::generate_pem().map_err(|e| anyhow::anyhow!("{e}"))?;
    write_private(&cur, &pem)
}

/// Forgets previous keys (tokens they signed stop working).
pub fn prune(data: &Path) -> anyhow::Result<usize> {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(old_dir(data)) {
        for e in rd.flatten() {
            std::fs::remove_file(e.path())?;
            n += 1;
        }
    }
    Ok(n)
}
