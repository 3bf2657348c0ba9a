//! `wharf key generate`: cosign-compatible signing key pairs; and the key loading shared by the
//! signing subcommands (passwords from standard input with `--password-stdin`, `COSIGN_PASSWORD`
//! or a terminal prompt, never logged).

use std::fs;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use trust::{KeyAlgorithm, KeyError, PrivateKey, PublicKey};
use zeroize::Zeroizing;

/// The environment variable cosign reads the key password from.
pub const PASSWORD_ENV: &str = "COSIGN_PASSWORD";

/// `wharf key ...`
#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Generate a key pair: PREFIX.key (encrypted, cosign's format) and PREFIX.pub (PKIX PEM).
    Generate(GenerateArgs),
    /// Print the public key (PKIX PEM) of a private key, as `cosign public-key`.
    Public(PublicArgs),
}

/// `wharf key public`
#[derive(Args, Debug)]
pub struct PublicArgs {
    /// Private key (cosign's encrypted PEM, or unencrypted PKCS#8 / SEC1).
    #[arg(long)]
    key: PathBuf,
    #[command(flatten)]
    password: PasswordArg,
}

/// `--password-stdin` of the commands that read an encrypted private key.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct PasswordArg {
    /// Read the key's password from standard input's first line (else COSIGN_PASSWORD, else
    /// the terminal); an empty line is an error.
    #[arg(long)]
    pub password_stdin: bool,
}

/// `wharf key generate`
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Write PREFIX.key and PREFIX.pub.
    #[arg(long, default_value = "cosign")]
    output_prefix: PathBuf,
    /// Key algorithm: ecdsa-p256 (cosign's default), ecdsa-p384 or ed25519.
    #[arg(long, default_value = "ecdsa-p256", value_parser = parse_algorithm)]
    algorithm: KeyAlgorithm,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    password: PasswordArg,
}

fn parse_algorithm(s: &str) -> Result<KeyAlgorithm, String> {
    KeyAlgorithm::parse(s).ok_or_else(|| format!("unknown algorithm {s:?}"))
}

/// Runs `wharf key ...`.
pub fn run(cmd: KeyCmd) -> anyhow::Result<()> {
    match cmd {
        KeyCmd::Generate(args) => generate(args),
        KeyCmd::Public(args) => {
            print!(
                "{}",
                load_private(&args.key, args.password)?
                    .public_key()
                    .to_pem()
            );
            Ok(())
        }
    }
}

fn with_ext(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let key_path = with_ext(&args.output_prefix, "key");
    let pub_path = with_ext(&args.output_prefix, "pub");
    if !args.force {
        for p in [&key_path, &pub_path] {
            if p.exists() {
                bail!("{} already exists (use --force to overwrite)", p.display());
            }
        }
    }
    let password = password(true, args.password)?;
    let key = PrivateKey::generate(args.algorithm).context("generating the key")?;
    let pem = key
        .to_encrypted_pem(password.as_bytes())
        .context("encrypting the private key")?;
    write_private(&key_path, pem.as_bytes())?;
    fs::write(&pub_path, key.public_key().to_pem())
        .with_context(|| format!("writing {}", pub_path.display()))?;
    eprintln!("Private key written to {}", key_path.display());
    eprintln!("Public key written to {}", pub_path.display());
    Ok(())
}

/// Writes a private key file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let _ = fs::remove_file(path);
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// The key password: standard input's first line with `--password-stdin` (not empty, not
/// confirmed), else `COSIGN_PASSWORD` when set (even empty, as cosign), else a prompt on the
/// terminal (twice when `confirm`). Without a terminal, an error: never a silent empty password.
pub fn password(confirm: bool, arg: PasswordArg) -> anyhow::Result<Zeroizing<String>> {
    if arg.password_stdin {
        return crate::admin::read_secret_line().context("--password-stdin");
    }
    if let Some(p) = std::env::var_os(PASSWORD_ENV) {
        let p = p
            .into_string()
            .map_err(|_| anyhow::anyhow!("{PASSWORD_ENV} is not valid UTF-8"))?;
        return Ok(Zeroizing::new(p));
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "a key password is needed: give it on standard input with --password-stdin, or set \
             {PASSWORD_ENV} (there is no terminal to prompt on)"
        );
    }
    let first = Zeroizing::new(
        rpassword::prompt_password("Enter password for private key: ")
            .context("reading the password from the terminal")?,
    );
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password("Enter password for private key again: ")
                .context("reading the password from the terminal")?,
        );
        if *first != *again {
            bail!("the passwords do not match");
        }
    }
    Ok(first)
}

/// Loads a private key file: cosign's encrypted format (password from [`password`], asked only
/// then), or an unencrypted PKCS#8 / SEC1 PEM.
pub fn load_private(path: &Path, arg: PasswordArg) -> anyhow::Result<PrivateKey> {
    let pem = Zeroizing::new(
        fs::read(path).with_context(|| format!("reading the key {}", path.display()))?,
    );
    match PrivateKey::from_pem(&pem, None) {
        Err(KeyError::PasswordRequired) => {
            let pw = password(false, arg)?;
            PrivateKey::from_pem(&pem, Some(pw.as_bytes()))
                .with_context(|| format!("loading the key {}", path.display()))
        }
        other => other.with_context(|| format!("loading the key {}", path.display())),
    }
}

/// Loads a PKIX `PUBLIC KEY` PEM file.
pub fn load_public(path: &Path) -> anyhow::Result<PublicKey> {
    let pem = fs::read_to_string(path)
        .with_context(|| format!("reading the public key {}", path.display()))?;
    PublicKey::from_pem(&pem).with_context(|| format!("loading the public key {}", path.display()))
}
