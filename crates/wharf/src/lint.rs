//! `wharf lint`: the admission policy engine (the `policy` crate) on Kubernetes manifests,
//! offline, with version drift across every file linted together (see docs/admission.md).
//!
//! YAML (and JSON) goes through the pin crate's parser ([`::pin::to_json`]), which keeps the
//! line of every node, so each finding is reported at `file:line`.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use ::pin::JsonDocument;
use anyhow::Context as _;
use policy::{Category, Finding, Level, Mode, Policy, Version};
use serde_json::{Value, json};

/// Exit code: nothing at enforce level.
pub const EXIT_OK: i32 = 0;
/// Exit code: a finding at enforce level.
pub const EXIT_ENFORCED: i32 = 1;
/// Exit code: unreadable input or a bad policy (or command line).
pub const EXIT_ERROR: i32 = 2;

/// Largest manifest read (a bound on memory; real manifests are far smaller).
const MAX_FILE: u64 = 16 << 20;

/// Output formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `file:line: [rule] container "x": reason (mode)`, one line each.
    Human,
    /// One JSON document (see docs/admission.md).
    Json,
    /// SARIF 2.1.0.
    Sarif,
}

/// The `--pss` levels.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PssLevel {
    /// The baseline profile.
    Baseline,
    /// The restricted profile.
    Restricted,
}

/// The `--only` rule families.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Only {
    /// Pod Security Standards.
    Pss,
    /// Image rules.
    Images,
    /// Version drift.
    Drift,
    /// Workload hygiene.
    Hygiene,
}

/// Flags of `wharf lint`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit codes: 0 nothing at enforce level; 1 a finding at enforce level; 2 an \
input could not be read or parsed, or the policy is bad. Without --policy: Pod Security at --pss \
(baseline) enforced, images.latest, images.untagged and drift warn. See docs/admission.md."
)]
pub struct LintArgs {
    /// Kubernetes YAML or JSON files, directories (every *.yaml, *.yml and *.json below them),
    /// or `-` for standard input.
    #[arg(required = true, value_name = "PATH|-")]
    pub paths: Vec<PathBuf>,
    /// The policy file (TOML, see docs/admission.md).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The Pod Security level for namespaces the policy does not name (overrides the policy's).
    #[arg(long, value_enum)]
    pub pss: Option<PssLevel>,
    /// The Pod Security version, `v1.N` or `latest` (overrides the policy's).
    #[arg(long, value_name = "v1.N|latest", value_parser = parse_version)]
    pub pss_version: Option<Version>,
    /// Run only these rule families (repeatable, or comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Only>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
}

fn parse_version(s: &str) -> Result<Version, String> {
    Version::parse(s).map_err(|e| e.to_string())
}

/// Runs `wharf lint` and exits with its code.
pub fn run(args: LintArgs) -> anyhow::Result<()> {
    let code = match execute(&args, &mut io::stdout().lock()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wharf lint: error: {e:#}");
            EXIT_ERROR
        }
    };
    let _ = io::stdout().flush();
    if code != EXIT_OK {
        std::process::exit(code);
    }
    Ok(())
}

/// A finding with its place.
struct Located {
    file: String,
    line: usize,
    finding: Finding,
    /// Drift only: every use, `(version, place)`.
    places: Vec<(String, Place)>,
}

/// Where an image is used, for drift.
#[derive(Clone, Debug)]
struct Place {
    file: String,
    line: usize,
    object: String,
    container: String,
    /// The container, and the pointer to its `image`, in its document.
    at: (policy::ContainerRef, String),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{} {} container {:?}",
            self.file, self.line, self.object, self.container
        )
    }
}

/// An input that could not be read or parsed.
struct InputError {
    file: String,
    line: Option<usize>,
    message: String,
}

fn execute(args: &LintArgs, out: &mut impl io::Write) -> anyhow::Result<i32> {
    let mut policy = match &args.policy {
        Some(p) => {
            let text = fs::read_to_string(p)
                .with_context(|| format!("cannot read the policy {}", p.display()))?;
            Policy::from_toml(&text).with_context(|| format!("{}", p.display()))?
        }
        None => Policy::default(),
    };
    if let Some(l) = args.pss {
        policy.pss.level = match l {
            PssLevel::Baseline => Level::Baseline,
            PssLevel::Restricted => Level::Restricted,
        };
    }
    if let Some(v) = args.pss_version {
        policy.pss.version = v;
    }
    let wanted = |c: Category| {
        args.only.is_empty()
            || args.only.iter().any(|o| {
                matches!(
                    (o, c),
                    (Only::Pss, Category::Pss)
                        | (Only::Images, Category::Images)
                        | (Only::Drift, Category::Drift)
                        | (Only::Hygiene, Category::Hygiene)
                )
            })
    };

    let mut errors = Vec::new();
    let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut stdin_used = false;
    for p in &args.paths {
        if p.as_os_str() == "-" {
            if stdin_used {
                continue;
            }
            stdin_used = true;
            let mut buf = Vec::new();
            match io::stdin().take(MAX_FILE + 1).read_to_end(&mut buf) {
                Ok(_) if buf.len() as u64 > MAX_FILE => errors.push(InputError {
                    file: "<stdin>".into(),
                    line: None,
                    message: format!("larger than {} MiB", MAX_FILE >> 20),
                }),
                Ok(_) => inputs.push(("<stdin>".into(), buf)),
                Err(e) => errors.push(InputError {
                    file: "<stdin>".into(),
                    line: None,
                    message: e.to_string(),
                }),
            }
            continue;
        }
        let mut files = Vec::new();
        if let Err(e) = collect(p, true, &mut files) {
            errors.push(InputError {
                file: p.display().to_string(),
                line: None,
                message: e.to_string(),
            });
        }
        for f in files {
            let name = f.display().to_string();
            match read_capped(&f) {
                Ok(b) => inputs.push((name, b)),
                Err(e) => errors.push(InputError {
                    file: name,
                    line: None,
                    message: e.to_string(),
                }),
            }
        }
    }

    let mut found: Vec<Located> = Vec::new();
    let mut uses = Vec::new();
    let mut documents = 0usize;
    for (file, bytes) in &inputs {
        let docs = match parse(file, bytes) {
            Ok(d) => d,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        for doc in &docs {
            documents += 1;
            for f in policy.evaluate(&doc.value) {
                if wanted(f.category) {
                    found.push(Located {
                        file: file.clone(),
                        line: doc.line_of(&f.pointer),
                        finding: f,
                        places: Vec::new(),
                    });
                }
            }
            if wanted(Category::Drift) {
                for u in policy::image_uses(&doc.value) {
                    let place = Place {
                        file: file.clone(),
                        line: doc.line_of(&u.pointer),
                        object: u.object.clone(),
                        container: u.container.name.clone(),
                        at: (u.container.clone(), u.pointer.clone()),
                    };
                    uses.push((u, place));
                }
            }
        }
    }
    if wanted(Category::Drift) {
        for d in policy.drift(&uses) {
            let first = d.versions[0].1[0].clone();
            found.push(Located {
                file: first.file.clone(),
                line: first.line,
                finding: Finding {
                    rule: "drift".into(),
                    category: Category::Drift,
                    mode: d.mode,
                    object: first.object.clone(),
                    namespace: None,
                    container: Some(first.at.0.clone()),
                    pointer: first.at.1.clone(),
                    reason: d.reason(),
                },
                places: d
                    .versions
                    .iter()
                    .flat_map(|(v, ps)| ps.iter().map(move |p| (v.clone(), p.clone())))
                    .collect(),
            });
        }
    }

    // By file (in the order read), then line; a drift sits at its first use.
    let order: Vec<&str> = inputs.iter().map(|(f, _)| f.as_str()).collect();
    found.sort_by_key(|l| (order.iter().position(|f| *f == l.file), l.line));
    let enforced = found
        .iter()
        .filter(|l| l.finding.mode == Mode::Enforce)
        .count();
    match args.format {
        Format::Human => human(out, &found, &errors)?,
        Format::Json => {
            serde_json::to_writer_pretty(
                &mut *out,
                &json_doc(&found, &errors, inputs.len(), documents),
            )?;
            writeln!(out)?;
        }
        Format::Sarif => {
            serde_json::to_writer_pretty(&mut *out, &sarif(&found, &errors))?;
            writeln!(out)?;
        }
    }
    let count = |m: Mode| found.iter().filter(|l| l.finding.mode == m).count();
    eprintln!(
        "wharf lint: {} file(s), {documents} document(s): {enforced} enforce, {} warn, {} audit{}",
        inputs.len(),
        count(Mode::Warn),
        count(Mode::Audit),
        if errors.is_empty() {
            String::new()
        } else {
            format!(", {} input error(s)", errors.len())
        }
    );
    Ok(if !errors.is_empty() {
        EXIT_ERROR
    } else if enforced > 0 {
        EXIT_ENFORCED
    } else {
        EXIT_OK
    })
}

/// The files of `path`: itself, or every *.yaml, *.yml and *.json below a directory (sorted,
/// symbolic links to directories not followed).
fn collect(path: &Path, top: bool, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let meta = if top {
        fs::metadata(path)?
    } else {
        fs::symlink_metadata(path)?
    };
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for e in entries {
            let m = fs::symlink_metadata(&e)?;
            let manifest = e
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x, "yaml" | "yml" | "json"));
            if m.is_dir() || (manifest && !m.is_dir()) {
                collect(&e, false, out)?;
            }
        }
    } else {
        out.push(path.to_owned());
    }
    Ok(())
}

fn read_capped(path: &Path) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    fs::File::open(path)?
        .take(MAX_FILE + 1)
        .read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_FILE {
        return Err(io::Error::other(format!(
            "larger than {} MiB",
            MAX_FILE >> 20
        )));
    }
    Ok(buf)
}

/// The documents of a file. JSON is YAML, so the YAML parser reads both (with lines); a JSON
/// file it refuses (tabs for indentation, say) is read as JSON, every finding at line 1.
fn parse(file: &str, bytes: &[u8]) -> Result<Vec<JsonDocument>, InputError> {
    match ::pin::to_json(bytes) {
        Ok(d) => Ok(d),
        Err(e) => {
            if file.ends_with(".json")
                && let Ok(value) = serde_json::from_slice::<Value>(bytes)
            {
                return Ok(vec![JsonDocument {
                    value,
                    line: 1,
                    lines: Default::default(),
                }]);
            }
            Err(InputError {
                file: file.to_owned(),
                line: Some(e.line()),
                message: e.to_string(),
            })
        }
    }
}

fn who(f: &Finding) -> String {
    match &f.container {
        Some(c) => format!("container {:?}", c.name),
        None => f.object.clone(),
    }
}

fn human(out: &mut impl io::Write, found: &[Located], errors: &[InputError]) -> io::Result<()> {
    for e in errors {
        match e.line {
            Some(l) => writeln!(out, "{}:{l}: error: {}", e.file, e.message)?,
            None => writeln!(out, "{}: error: {}", e.file, e.message)?,
        }
    }
    for l in found {
        let f = &l.finding;
        writeln!(
            out,
            "{}:{}: [{}] {}: {} ({})",
            l.file,
            l.line,
            f.rule,
            who(f),
            f.reason,
            f.mode
        )?;
    }
    Ok(())
}

fn json_doc(found: &[Located], errors: &[InputError], files: usize, documents: usize) -> Value {
    let count = |m: Mode| found.iter().filter(|l| l.finding.mode == m).count();
    json!({
        "findings": found.iter().map(|l| {
            let f = &l.finding;
            let mut v = json!({
                "file": l.file,
                "line": l.line,
                "rule": f.rule,
                "category": f.category,
                "mode": f.mode,
                "object": f.object,
                "namespace": f.namespace,
                "container": f.container,
                "pointer": f.pointer,
                "reason": f.reason,
            });
            if !l.places.is_empty() {
                v["places"] = l.places.iter().map(|(ver, p)| json!({
                    "version": ver, "file": p.file, "line": p.line,
                    "object": p.object, "container": p.container,
                })).collect();
            }
            v
        }).collect::<Vec<_>>(),
        "errors": errors.iter().map(|e| json!({
            "file": e.file, "line": e.line, "message": e.message,
        })).collect::<Vec<_>>(),
        "summary": {
            "files": files,
            "documents": documents,
            "enforce": count(Mode::Enforce),
            "warn": count(Mode::Warn),
            "audit": count(Mode::Audit),
            "errors": errors.len(),
        },
    })
}

/// The SARIF `level` of a mode: enforce `error`, warn `warning`, audit `note`.
fn level(m: Mode) -> &'static str {
    match m {
        Mode::Enforce => "error",
        Mode::Warn => "warning",
        Mode::Audit => "note",
    }
}

/// A file path as a URI reference: bytes outside RFC 3986's unreserved set and `/` are
/// percent-encoded (as the scan report's SARIF does).
fn path_uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn location(file: &str, line: usize) -> Value {
    json!({"physicalLocation": {
        "artifactLocation": {"uri": path_uri(file)},
        "region": {"startLine": line.max(1)},
    }})
}

/// The SARIF 2.1.0 log: one run whose driver is Wharf, one rule per rule id that fired, one
/// result per finding (level from its mode, the file and line, drift's other uses as
/// `relatedLocations`), input errors as tool execution notifications.
fn sarif(found: &[Located], errors: &[InputError]) -> Value {
    let mut ids: Vec<&str> = found.iter().map(|l| l.finding.rule.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let rules: Vec<Value> = ids
        .iter()
        .map(|id| {
            let cat = found
                .iter()
                .find(|l| l.finding.rule == *id)
                .map_or("", |l| l.finding.category.as_str());
            let mut r = json!({
                "id": id,
                "name": id,
                "shortDescription": {"text": rule_text(id)},
                "properties": {"tags": ["kubernetes", "security", cat]},
            });
            if id.starts_with("pss.") {
                r["helpUri"] =
                    json!("https://kubernetes.io/docs/concepts/security/pod-security-standards/");
            }
            r
        })
        .collect();
    let results: Vec<Value> = found
        .iter()
        .map(|l| {
            let f = &l.finding;
            let mut r = json!({
                "ruleId": f.rule,
                "ruleIndex": ids.iter().position(|i| *i == f.rule),
                "level": level(f.mode),
                "message": {"text": format!("{}: {}", who(f), f.reason)},
                "locations": [location(&l.file, l.line)],
                "properties": {
                    "mode": f.mode,
                    "object": f.object,
                    "container": f.container.as_ref().map(|c| c.name.clone()),
                    "pointer": f.pointer,
                },
            });
            if l.places.len() > 1 {
                r["relatedLocations"] = l
                    .places
                    .iter()
                    .enumerate()
                    .map(|(i, (v, p))| {
                        let mut loc = location(&p.file, p.line);
                        loc["id"] = json!(i);
                        loc["message"] = json!({"text": format!("{v}: {} container {:?}", p.object, p.container)});
                        loc
                    })
                    .collect();
            }
            r
        })
        .collect();
    let mut run = json!({
        "tool": {"driver": {
            "name": "wharf",
            "version": env!("CARGO_PKG_VERSION"),
            "informationUri": "https://kubernetes.io/docs/concepts/security/pod-security-standards/",
            "rules": rules,
        }},
        "results": results,
    });
    if !errors.is_empty() {
        run["invocations"] = json!([{
            "executionSuccessful": false,
            "toolExecutionNotifications": errors.iter().map(|e| {
                let mut n = json!({"level": "error", "message": {"text": e.message}});
                n["locations"] = json!([location(&e.file, e.line.unwrap_or(1))]);
                n
            }).collect::<Vec<_>>(),
        }]);
    }
    json!({
        "$schema": "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json",
        "version": "2.1.0",
        "runs": [run],
    })
}

fn rule_text(id: &str) -> String {
    match id {
        "drift" => "The same image repository at different tags or digests".into(),
        "images.registry" => "Image from a registry the policy does not allow".into(),
        "images.latest" => "Image on the moving tag latest".into(),
        "images.untagged" => "Image without tag or digest".into(),
        "images.digest" => "Image not pinned to a digest".into(),
        "images.invalid" => "Not a valid image reference".into(),
        "hygiene.probes" => "Container without liveness and readiness probes".into(),
        "hygiene.resources" => "Container without resource requests and limits".into(),
        "hygiene.runAsNonRoot" => "Container not required to run as non-root".into(),
        pss => {
            let check = pss.strip_prefix("pss.").unwrap_or(pss);
            policy::checks().find(|c| c.id == check).map_or_else(
                || format!("Pod Security check {check}"),
                |c| format!("Pod Security: {}", c.summary),
            )
        }
    }
}
