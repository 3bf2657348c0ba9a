//! `wharf pin`: pins the images of Kubernetes YAML to digests (see docs/pin.md).
//!
//! The YAML work is the `pin` crate's; this module walks files and directories, resolves images
//! through the registry client with the docker `config.json` credentials, writes files
//! atomically, and turns the outcome into messages and an exit code.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;

use ::pin::{Digest, ImageRef, Mode, ResolveError, Resolver, Status};
use anyhow::{Context, bail};

/// Exit code: every image is pinned (and every pinned digest exists).
pub const EXIT_OK: i32 = 0;
/// Exit code: some image is not pinned (`--check`), could not be resolved, or is pinned to a
/// digest the registry no longer has.
pub const EXIT_PROBLEMS: i32 = 1;
/// Exit code: a file could not be read, parsed or written, or the command line is wrong.
pub const EXIT_ERROR: i32 = 2;

/// Flags of `wharf pin`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit codes: 0 all images pinned and verified; 1 an image is not pinned \
(--check), cannot be resolved, or is pinned to a digest that no longer exists; 2 a file could \
not be read, parsed or written. See docs/pin.md."
)]
pub struct PinArgs {
    /// Kubernetes YAML files, directories (every *.yaml and *.yml below them), or `-` to read
    /// standard input and write the result to standard output.
    #[arg(required = true, value_name = "FILE|DIR|-")]
    pub paths: Vec<PathBuf>,
    /// Change nothing; exit 1 if any image is not pinned or is pinned to a digest that no
    /// longer exists. Unpinned images are not looked up.
    #[arg(long)]
    pub check: bool,
    /// Print what would change as a unified diff on standard output; write nothing.
    #[arg(long, conflicts_with = "check")]
    pub dry_run: bool,
    /// Resolve the images of REGISTRY through another registry that serves the same content
    /// (a pull-through cache or mirror), e.g. `docker.io=wharf.example.com/hub`. The files keep
    /// naming REGISTRY. Repeatable.
    #[arg(long, value_name = "REGISTRY=HOST[:PORT][/PREFIX]")]
    pub mirror: Vec<Mirror>,
    /// Reach this registry over plain HTTP (loopback registries always are). Repeatable.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Read registry credentials from this file (docker `config.json` format) instead of
    /// `$REGISTRY_AUTH_FILE`, `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Also report images that were already pinned and verified.
    #[arg(long, short)]
    pub verbose: bool,
}

/// `REGISTRY=HOST[:PORT][/PREFIX]`: resolve REGISTRY's images at HOST, under PREFIX.
#[derive(Clone, Debug)]
pub struct Mirror {
    from: String,
    to_registry: String,
    to_prefix: Option<String>,
}

impl FromStr for Mirror {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (from, to) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not REGISTRY=HOST[:PORT][/PREFIX]"))?;
        let (host, prefix) = match to.split_once('/') {
            Some((h, p)) => (h, Some(p.trim_end_matches('/').to_owned())),
            None => (to, None),
        };
        if from.is_empty() || host.is_empty() || prefix.as_deref() == Some("") {
            return Err(format!("{s:?} is not REGISTRY=HOST[:PORT][/PREFIX]"));
        }
        Ok(Mirror {
            from: client::normalize_registry(from),
            to_registry: host.to_owned(),
            to_prefix: prefix,
        })
    }
}

/// Runs `wharf pin`, exiting with [`EXIT_PROBLEMS`] or [`EXIT_ERROR`] when it does not succeed.
pub fn run(args: PinArgs) -> anyhow::Result<()> {
    let code = match execute(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wharf pin: error: {e:#}");
            EXIT_ERROR
        }
    };
    if code != EXIT_OK {
        let _ = io::stdout().flush();
        std::process::exit(code);
    }
    Ok(())
}

/// Counts for the closing summary.
#[derive(Default)]
struct Tally {
    files: usize,
    changed_files: usize,
    pinned: usize,
    verified: usize,
    problems: usize,
    errors: usize,
}

fn execute(args: &PinArgs) -> anyhow::Result<i32> {
    // Warnings from the registry client (a credential helper it does not run, ...) on stderr;
    // `WHARF_LOG=debug` shows every request.
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .without_time()
        .with_target(false)
        .fmt_fields(crate::escape::EscapedFields::default())
        .try_init();
    let inputs = collect_inputs(&args.paths)?;
    let resolver = RegistryResolver::new(args)?;
    let mode = if args.check { Mode::Check } else { Mode::Pin };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut tally = Tally::default();
    for input in &inputs {
        tally.files += 1;
        if let Err(e) = rt.block_on(process(input, &resolver, mode, args, &mut tally)) {
            tally.errors += 1;
            eprintln!("{}: error: {e:#}", input.display_name());
        }
    }
    let what = if args.check {
        format!(
            "{} pinned and verified, {} problem{}",
            tally.verified,
            tally.problems,
            plural(tally.problems)
        )
    } else {
        let verb = if args.dry_run { "would pin" } else { "pinned" };
        format!(
            "{verb} {} image{} in {} file{}, {} already pinned, {} problem{}",
            tally.pinned,
            plural(tally.pinned),
            tally.changed_files,
            plural(tally.changed_files),
            tally.verified,
            tally.problems,
            plural(tally.problems)
        )
    };
    let errors = if tally.errors > 0 {
        format!(
            ", {} file{} with errors",
            tally.errors,
            plural(tally.errors)
        )
    } else {
        String::new()
    };
    eprintln!(
        "wharf pin: {} file{}: {what}{errors}",
        tally.files,
        plural(tally.files)
    );
    Ok(if tally.errors > 0 {
        EXIT_ERROR
    } else if tally.problems > 0 {
        EXIT_PROBLEMS
    } else {
        EXIT_OK
    })
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A file to pin, or standard input.
enum Input {
    Stdin,
    File(PathBuf),
}

impl Input {
    fn display_name(&self) -> String {
        match self {
            Input::Stdin => "<stdin>".to_owned(),
            Input::File(p) => p.display().to_string(),
        }
    }
}

/// Expands the command-line paths: `-`, files as given, directories walked for `*.yaml` and
/// `*.yml` (sorted; hidden directories and symbolic links to directories skipped).
fn collect_inputs(paths: &[PathBuf]) -> anyhow::Result<Vec<Input>> {
    let mut out = Vec::new();
    let stdin_count = paths.iter().filter(|p| p.as_os_str() == "-").count();
    if stdin_count > 1 {
        bail!("`-` (standard input) may be given only once");
    }
    for p in paths {
        if p.as_os_str() == "-" {
            out.push(Input::Stdin);
            continue;
        }
        let meta = fs::metadata(p).with_context(|| format!("{}", p.display()))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found).with_context(|| format!("reading directory {}", p.display()))?;
            found.sort();
            out.extend(found.into_iter().map(Input::File));
        } else {
            out.push(Input::File(p.clone()));
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let ty = entry.file_type()?;
        if ty.is_dir() {
            if !name.to_string_lossy().starts_with('.') {
                walk(&path, out)?;
            }
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml")
            && fs::metadata(&path).is_ok_and(|m| m.is_file())
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Pins (or checks) one input and reports on it.
async fn process(
    input: &Input,
    resolver: &RegistryResolver,
    mode: Mode,
    args: &PinArgs,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let name = input.display_name();
    let source = match input {
        Input::Stdin => {
            let mut buf = Vec::new();
            io::stdin()
                .read_to_end(&mut buf)
                .context("reading standard input")?;
            buf
        }
        Input::File(p) => fs::read(p).context("reading")?,
    };
    let outcome = match ::pin::pin(&source, resolver, mode).await {
        Ok(o) => o,
        Err(e) => bail!("{e}"),
    };
    for r in &outcome.images {
        let img = &r.image;
        let at = format!("{name}:{}:{}", img.line, img.column);
        let what = format!("{} ({})", img.text, img.location());
        match &r.status {
            Status::Pinned { digest, .. } => {
                tally.pinned += 1;
                eprintln!("{at}: {what}: pinned to {digest}");
            }
            Status::Verified { .. } => {
                tally.verified += 1;
                if args.verbose {
                    eprintln!("{at}: {what}: {}", r.status);
                }
            }
            Status::Unpinned => {
                tally.problems += 1;
                eprintln!("{at}: {what}: {}", r.status);
            }
            Status::Missing { .. } | Status::Failed(_) => {
                tally.problems += 1;
                eprintln!("{at}: error: {what}: {}", r.status);
            }
        }
    }
    if mode == Mode::Check {
        return Ok(());
    }
    if args.dry_run {
        if outcome.changed() {
            tally.changed_files += 1;
            // Both headers name the file itself, so `patch -p0` applies the diff from where
            // `wharf pin` was run.
            let diff = outcome.unified_diff(&name, &name);
            io::stdout()
                .write_all(diff.as_bytes())
                .context("writing the diff")?;
        }
        return Ok(());
    }
    match input {
        Input::Stdin => {
            let mut out = io::stdout().lock();
            out.write_all(&outcome.output)
                .and_then(|()| out.flush())
                .context("writing standard output")?;
            if outcome.changed() {
                tally.changed_files += 1;
            }
        }
        Input::File(p) if outcome.changed() => {
            write_atomically(p, &outcome.output).context("writing")?;
            tally.changed_files += 1;
        }
        Input::File(_) => {}
    }
    Ok(())
}

/// Replaces the file's content by writing a temporary file beside it (same permissions and,
/// where allowed, owner), syncing it and renaming it over the original. A symbolic link is
/// followed: its target is replaced and the link stays.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let target = fs::canonicalize(path)?;
    let dir = target
        .parent()
        .ok_or_else(|| io::Error::other("the file has no parent directory"))?;
    let meta = fs::metadata(&target)?;
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".wharf-pin")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().set_permissions(meta.permissions())?;
    // Keep the owner when running as root (or as the owner); a failure to change it is not an
    // error for an ordinary user, whose files are theirs anyway.
    let _ = std::os::unix::fs::fchown(tmp.as_file(), Some(meta.uid()), Some(meta.gid()));
    tmp.as_file().sync_all()?;
    tmp.persist(&target).map_err(|e| e.error)?;
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Resolving through the registry client
// ---------------------------------------------------------------------------------------------

/// Resolves images with the registry client, through mirrors, caching answers for the run.
struct RegistryResolver {
    client: client::Client,
    mirrors: Vec<Mirror>,
    resolved: Mutex<HashMap<String, Result<Digest, ResolveError>>>,
    exists: Mutex<HashMap<String, Result<bool, ResolveError>>>,
}

impl RegistryResolver {
    fn new(args: &PinArgs) -> anyhow::Result<Self> {
        let credentials = match &args.authfile {
            Some(path) => {
                let mut store = client::CredentialStore::new();
                store
                    .load_file(path)
                    .with_context(|| format!("reading credentials from {}", path.display()))?;
                store
            }
            None => client::CredentialStore::from_env().context("reading registry credentials")?,
        };
        for w in credentials.warnings() {
            eprintln!("wharf pin: warning: {w}");
        }
        let mut config = client::ClientConfig::default().with_credentials(credentials);
        for r in &args.insecure_registry {
            config = config.insecure_registry(r.clone());
        }
        Ok(RegistryResolver {
            client: client::Client::new(config).context("setting up the registry client")?,
            mirrors: args.mirror.clone(),
            resolved: Mutex::new(HashMap::new()),
            exists: Mutex::new(HashMap::new()),
        })
    }

    /// The repository to ask, after mirrors.
    fn target(&self, image: &ImageRef) -> Result<client::ImageRef, ResolveError> {
        let (registry, repository) = match self.mirrors.iter().find(|m| m.from == image.registry())
        {
            Some(m) => (
                m.to_registry.clone(),
                match &m.to_prefix {
                    Some(p) => format!("{p}/{}", image.repository()),
                    None => image.repository().to_owned(),
                },
            ),
            None => (image.registry().to_owned(), image.repository().to_owned()),
        };
        client::ImageRef::new(&registry, &repository).map_err(|e| ResolveError::Other(chain(&e)))
    }

    async fn lookup(
        &self,
        image: &ImageRef,
        digest: Option<&Digest>,
    ) -> Result<Digest, ResolveError> {
        let repo = self.target(image)?;
        let target = match digest {
            Some(d) => repo.with_digest(d.clone()),
            None => repo
                .with_tag(image.effective_tag())
                .map_err(|e| ResolveError::Other(chain(&e)))?,
        };
        match self.client.resolve(&target).await {
            Ok(r) => Ok(r.digest),
            Err(e) => Err(classify(&e, &target)),
        }
    }
}

impl Resolver for RegistryResolver {
    async fn resolve(&self, image: &ImageRef) -> Result<Digest, ResolveError> {
        let key = image.canonical();
        if let Some(hit) = self.resolved.lock().unwrap().get(&key) {
            return hit.clone();
        }
        let answer = self.lookup(image, None).await;
        self.resolved.lock().unwrap().insert(key, answer.clone());
        answer
    }

    async fn exists(&self, image: &ImageRef, digest: &Digest) -> Result<bool, ResolveError> {
        let key = format!("{}/{}@{digest}", image.registry(), image.repository());
        if let Some(hit) = self.exists.lock().unwrap().get(&key) {
            return hit.clone();
        }
        let answer = match self.lookup(image, Some(digest)).await {
            Ok(_) => Ok(true),
            Err(ResolveError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        };
        self.exists.lock().unwrap().insert(key, answer.clone());
        answer
    }
}

/// Sorts a client error into the engine's kinds, with the whole cause chain as the message.
fn classify(e: &client::Error, target: &client::ImageRef) -> ResolveError {
    let msg = format!("{target}: {}", chain(e));
    if e.is_not_found() {
        ResolveError::NotFound(msg)
    } else if matches!(e, client::Error::Auth { .. }) || matches!(e.status(), Some(401 | 403)) {
        ResolveError::Unauthorized(msg)
    } else {
        ResolveError::Other(msg)
    }
}

/// An error and its sources, joined with `: `.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_parse() {
        let m: Mirror = "docker.io=127.0.0.1:5000".parse().unwrap();
        assert_eq!(
            (m.from.as_str(), m.to_registry.as_str(), m.to_prefix),
            ("docker.io", "127.0.0.1:5000", None)
        );
        let m: Mirror = "index.docker.io=wharf.example.com/hub/".parse().unwrap();
        assert_eq!(m.from, "docker.io");
        assert_eq!(m.to_prefix.as_deref(), Some("hub"));
        for bad in ["docker.io", "=x", "x=", "x=/p", "x=h/"] {
            assert!(bad.parse::<Mirror>().is_err(), "{bad}");
        }
    }
}
