//! Data-directory permissions: blobs, uploads and the metadata database (password hashes, the
//! audit log) are readable by their owner only, whatever the process umask.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Mode of every directory the store creates.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of every file the store creates.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Creates `dir` and its missing parents readable only by the owner (0700), and takes group and
/// other permissions away from it if it already existed (see [`restrict`]).
pub fn private_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    restrict(dir);
    Ok(())
}

/// Takes group and other permissions away from an existing file or directory (data created
/// before Wharf made it private, or under a lax umask). A failure (a mount point owned by
/// another user) is logged, not fatal: the data stays usable, only less protected.
pub fn restrict(path: &Path) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode();
    if mode & 0o077 == 0 {
        return;
    }
    let private = if meta.is_dir() { DIR_MODE } else { FILE_MODE };
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(private)) {
        Ok(()) => tracing::info!(
            path = %path.display(),
            from = format_args!("{:o}", mode & 0o777),
            to = format_args!("{private:o}"),
            "made private"
        ),
        Err(e) => tracing::warn!(
            path = %path.display(),
            mode = format_args!("{:o}", mode & 0o777),
            error = %e,
            "cannot make this readable by its owner only; other local users may read it"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_and_tightens() {
        let tmp = tempfile::tempdir().unwrap();
        let deep = tmp.path().join("a/b");
        private_dir(&deep).unwrap();
        assert_eq!(mode(&deep), 0o700);
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&open).unwrap();
        assert_eq!(mode(&open), 0o700);
        let f = open.join("f");
        std::fs::write(&f, b"x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        restrict(&f);
        assert_eq!(mode(&f), 0o600);
    }
}
