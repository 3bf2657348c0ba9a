//! Shared by the SBOM and report tests: an inventory of real packages (names, versions,
//! source packages and licences as Debian bookworm, Alpine 3.20 and PyPI/npm/Go/crates.io/Maven
//! publish them) and the validators installed by scripts/install-test-deps.sh.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use scan::{ImageInventory, OsRelease, Package, PackageKind};

/// The venv scripts/install-test-deps.sh puts the validators in.
pub fn venv() -> PathBuf {
    if let Some(v) = std::env::var_os("WHARF_SBOM_VENV") {
        return PathBuf::from(v);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"));
    cache.join("wharf-test-deps/sbom-validators")
}

/// Runs the venv's Python with a script and arguments; (success, stdout+stderr).
pub fn python(script: &str, args: &[&Path]) -> (bool, String) {
    let py = venv().join("bin/python");
    assert!(
        py.is_file(),
        "{} missing: run scripts/install-test-deps.sh",
        py.display()
    );
    let out = Command::new(py)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// CycloneDX 1.6 strict JSON schema validation (cyclonedx-python-lib).
pub fn validate_cyclonedx(file: &Path) -> (bool, String) {
    python(
        "import sys\n\
         from cyclonedx.validation.json import JsonStrictValidator\n\
         from cyclonedx.schema import SchemaVersion\n\
         err = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())\n\
         if err is not None:\n    print(err); sys.exit(1)\n\
         print('valid')\n",
        &[file],
    )
}

pub fn pkg(kind: PackageKind, name: &str, version: &str, path: &str, layer: &str) -> Package {
    Package {
        kind,
        name: name.into(),
        version: version.into(),
        source_name: None,
        source_version: None,
        arch: None,
        licenses: vec![],
        path: path.into(),
        layer: layer.into(),
    }
}

pub const L1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
pub const L2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

/// An image inventory spanning every package kind, with the awkward cases: source packages
/// and versions with epochs and `+`, scoped npm names, Maven coordinates, licences that are
/// SPDX expressions and ones that are not, the same purl listed twice by one lockfile.
pub fn inventory() -> ImageInventory {
    let status = "/var/lib/dpkg/status";
    let mut libc = pkg(PackageKind::Deb, "libc6", "2.36-9+deb12u2", status, L1);
    libc.source_name = Some("glibc".into());
    libc.arch = Some("amd64".into());
    libc.licenses = vec!["GPL-2+".into(), "LGPL-2.1+".into()];
    let mut libssl = pkg(PackageKind::Deb, "libssl3", "3.0.11-1~deb12u2", status, L1);
    libssl.source_name = Some("openssl".into());
    libssl.arch = Some("amd64".into());
    let mut bsdutils = pkg(PackageKind::Deb, "bsdutils", "1:2.38.1-5+b1", status, L1);
    bsdutils.source_name = Some("util-linux".into());
    bsdutils.source_version = Some("2.38.1-5".into());
    bsdutils.arch = Some("amd64".into());
    let mut musl = pkg(
        PackageKind::Apk,
        "musl",
        "1.2.5-r0",
        "/lib/apk/db/installed",
        L1,
    );
    musl.licenses = vec!["MIT".into()];
    let mut rpm = pkg(
        PackageKind::Rpm,
        "openssl-libs",
        "1:3.0.7-25.el9_3",
        "/var/lib/rpm/rpmdb.sqlite",
        L1,
    );
    rpm.arch = Some("x86_64".into());
    rpm.source_name = Some("openssl".into());
    let site = "/usr/lib/python3.11/site-packages";
    let mut requests = pkg(
        PackageKind::Python,
        "requests",
        "2.19.0",
        &format!("{site}/requests-2.19.0.dist-info/METADATA"),
        L2,
    );
    requests.licenses = vec!["Apache 2.0".into()];
    let mut urllib3 = pkg(
        PackageKind::Python,
        "urllib3",
        "1.23",
        &format!("{site}/urllib3-1.23.dist-info/METADATA"),
        L2,
    );
    urllib3.licenses = vec!["MIT".into()];
    let lock = "/app/package-lock.json";
    let mut babel = pkg(PackageKind::Npm, "@babel/traverse", "7.22.5", lock, L2);
    babel.licenses = vec!["MIT".into()];
    let lodash = pkg(PackageKind::Npm, "lodash", "4.17.20", lock, L2);
    let lodash_again = pkg(PackageKind::Npm, "lodash", "4.17.20", lock, L2);
    let mut semver = pkg(
        PackageKind::Npm,
        "semver",
        "5.7.1",
        "/app/node_modules/semver/package.json",
        L2,
    );
    semver.licenses = vec!["ISC".into()];
    let net = pkg(
        PackageKind::Go,
        "golang.org/x/net",
        "v0.17.0",
        "/usr/local/bin/app",
        L2,
    );
    let stdlib = pkg(
        PackageKind::Go,
        "stdlib",
        "1.21.3",
        "/usr/local/bin/app",
        L2,
    );
    let mut rustls = pkg(
        PackageKind::Cargo,
        "rustls",
        "0.21.0",
        "/usr/local/bin/rs-app",
        L2,
    );
    rustls.licenses = vec!["Apache-2.0 OR ISC OR MIT".into()];
    let log4j = pkg(
        PackageKind::Maven,
        "org.apache.logging.log4j:log4j-core",
        "2.14.1",
        "/opt/app/lib/log4j-core-2.14.1.jar",
        L2,
    );
    let mut packages = vec![
        libc,
        libssl,
        bsdutils,
        musl,
        rpm,
        requests,
        urllib3,
        babel,
        lodash,
        lodash_again,
        semver,
        net,
        stdlib,
        rustls,
        log4j,
    ];
    packages.sort_by(|a, b| {
        (a.kind, &a.name, &a.version, &a.path).cmp(&(b.kind, &b.name, &b.version, &b.path))
    });
    ImageInventory {
        os: Some(OsRelease {
            id: "debian".into(),
            version_id: Some("12".into()),
            codename: Some("bookworm".into()),
            pretty_name: Some("Debian GNU/Linux 12 (bookworm)".into()),
        }),
        packages,
    }
}
