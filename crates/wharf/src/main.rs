//! The `wharf` binary: command-line interface and wiring of the library crates.
//!
//! Each subcommand lives in its own module with its own `Args` and `run`.

mod admin;
mod admission;
mod backup;
mod blob;
mod cache;
mod config;
mod door;
mod escape;
mod gc;
mod key;
mod keys;
mod lint;
mod logging;
mod output;
mod pin;
mod retention;
mod scan;
mod serve;
mod sign;
mod verify;
mod versions;

use clap::{Parser, Subcommand};

/// Wharf, a Kubernetes-native container image registry.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the registry server.
    Serve(serve::ServeArgs),
    /// Node configuration for the pull-through cache (containerd hosts.toml, CRI-O).
    #[command(subcommand)]
    Mirror(cache::MirrorCmd),
    /// The pull-through cache: list, warm, pin, evict (through the running server).
    #[command(subcommand)]
    Cache(cache::CacheCmd),
    /// Manage users (passwords are argon2id hashes in the data directory).
    #[command(subcommand)]
    User(admin::UserCmd),
    /// Manage robot accounts for CI and clusters.
    #[command(subcommand)]
    Robot(admin::RobotCmd),
    /// Manage groups.
    #[command(subcommand)]
    Group(admin::GroupCmd),
    /// Manage permission rules.
    #[command(subcommand)]
    Rule(admin::RuleCmd),
    /// Read the audit log.
    Audit(admin::AuditArgs),
    /// Tag history and rollback.
    #[command(subcommand)]
    Tag(admin::TagCmd),
    /// A repository's tags in version order, with digest, size, push and last-pull time.
    Versions(versions::VersionsArgs),
    /// Retention policies: plan (what would go and why) or apply (see docs/retention.md).
    #[command(subcommand)]
    Retention(retention::RetentionCmd),
    /// Rotate or prune the registry token signing keys.
    #[command(subcommand)]
    TokenKey(admin::TokenKeyCmd),
    /// Pin the images of Kubernetes YAML to digests (see docs/pin.md).
    Pin(pin::PinArgs),
    /// Check Kubernetes manifests against Pod Security, image, drift and hygiene rules offline.
    Lint(lint::LintArgs),
    /// The validating admission webhook: Kubernetes AdmissionReviews against a policy file.
    Admission(admission::AdmissionArgs),
    /// Generate signing keys (cosign-compatible, see docs/signing.md).
    #[command(subcommand)]
    Key(key::KeyCmd),
    /// Sign a file with a key (as cosign sign-blob).
    SignBlob(blob::SignBlobArgs),
    /// Verify a file's signature or Sigstore bundle (as cosign verify-blob).
    VerifyBlob(blob::VerifyBlobArgs),
    /// Sign an image in a registry (as cosign sign --key).
    Sign(sign::SignArgs),
    /// Verify an image's signatures (as cosign verify --key); exit 0 only when verified.
    Verify(verify::VerifyArgs),
    /// Reclaim unreferenced blobs and expired uploads (see docs/gc.md).
    Gc(gc::GcArgs),
    /// Scans an image for vulnerabilities: exit 0 clean, 1 findings at or above --fail-on,
    /// 2 errors.
    Scan(scan::ScanArgs),
    /// Writes an image's SBOM (CycloneDX 1.6 or SPDX 2.3 JSON) to stdout.
    Sbom(scan::SbomArgs),
    /// Back up the registry while it serves: metadata snapshot plus its blobs, verified.
    Backup(backup::BackupArgs),
    /// Write a new data directory from a backup, verifying every checksum.
    Restore(backup::RestoreArgs),
    /// The vulnerability database: import, update, status.
    #[command(subcommand)]
    Vulndb(scan::VulndbCmd),
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The message and its causes on one line; never a backtrace (RUST_BACKTRACE is
            // for panics): these are the user's errors, not the program's.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve::run(args),
        Command::Mirror(c) => cache::mirror(c),
        Command::Cache(c) => cache::cache(c),
        Command::User(c) => admin::user(c),
        Command::Robot(c) => admin::robot(c),
        Command::Group(c) => admin::group(c),
        Command::Rule(c) => admin::rule(c),
        Command::Audit(a) => admin::audit(a),
        Command::Tag(c) => admin::tag(c),
        Command::Versions(a) => versions::run(a),
        Command::Retention(c) => retention::run(c),
        Command::TokenKey(c) => admin::token_key(c),
        Command::Pin(args) => pin::run(args),
        Command::Lint(args) => lint::run(args),
        Command::Admission(args) => admission::run(args),
        Command::Key(c) => key::run(c),
        Command::SignBlob(args) => blob::sign(args),
        Command::VerifyBlob(args) => blob::verify(args),
        Command::Sign(args) => sign::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Gc(args) => gc::run(args),
        Command::Scan(args) => std::process::exit(scan::scan(args)),
        Command::Sbom(args) => std::process::exit(scan::sbom(args)),
        Command::Vulndb(c) => scan::vulndb(c),
        Command::Backup(a) => backup::backup(a),
        Command::Restore(a) => backup::restore(a),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Catches clashing flag names and other CLI definition mistakes in every subcommand.
    #[test]
    fn cli_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
