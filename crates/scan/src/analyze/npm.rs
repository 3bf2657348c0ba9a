//! npm packages: installed ones and lockfiles.
//!
//! - **Installed packages**: the `package.json` at the root of a package directory inside a
//!   `node_modules` tree (`…/node_modules/NAME/package.json`,
//!   `…/node_modules/@SCOPE/NAME/package.json`, at any depth of nesting). Other
//!   `package.json` files are not packages: an application's own manifest lists version
//!   *ranges* of what it wants, and files deeper inside a package
//!   (`node_modules/x/lib/package.json`, often just `{"type": "module"}`) describe nothing
//!   installed. A package.json without a name or a version is skipped (`Ok(None)`).
//! - **Lockfiles** outside `node_modules`: `package-lock.json` and `npm-shrinkwrap.json`
//!   (lockfile versions 1, 2 and 3) and `yarn.lock` (yarn 1's format and yarn 2+'s YAML).
//!   npm's hidden lockfile (`node_modules/.package-lock.json`) and lockfiles shipped inside
//!   packages are ignored: the installed tree is read from the packages themselves.
//!
//! **Double counting.** An image that holds an application's lockfile *and* its installed
//! `node_modules` lists a package twice, once per file: each finding keeps the file that
//! listed it as its `path`, so a report says where each came from, and the matcher's findings
//! (keyed by package name and version) are the same either way. Reporting the lockfile's
//! packages only when no `node_modules` exists cannot be decided per file (the tree may sit in
//! another layer), and dropping lockfiles altogether would miss an image that ships a lockfile
//! and installs at start-up. Within one lockfile a name and version is reported once, however
//! many places in the tree it is installed at. npm lockfile entries marked `dev` (not installed
//! by `npm ci --omit=dev`, the usual production image) and `link` (workspace symlinks, the
//! application's own code) are skipped; so are yarn's `workspace:`/`link:`/`portal:`/`file:`
//! entries. yarn.lock does not say which entries are development dependencies: all are
//! reported.

use std::collections::BTreeSet;
use std::io::Read;

use serde_json::Value;

use super::{AnalyzeError, Analyzer, FileInfo, Found, lang_package};
use crate::inventory::{Package, PackageKind};

/// The largest `package.json` read.
pub const MAX_PACKAGE_JSON: u64 = 4 << 20;
/// The largest lockfile read (big monorepos' lockfiles reach tens of megabytes).
pub const MAX_LOCKFILE: u64 = 64 << 20;

/// Reads npm packages from `node_modules` and from lockfiles.
#[derive(Debug, Default, Clone, Copy)]
pub struct NpmAnalyzer;

/// Which npm file a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NpmFile {
    /// An installed package's manifest.
    Installed,
    /// `package-lock.json` or `npm-shrinkwrap.json`.
    NpmLock,
    /// `yarn.lock`.
    YarnLock,
}

fn classify(path: &str) -> Option<NpmFile> {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (file, dirs) = parts.split_last()?;
    let in_node_modules = dirs.contains(&"node_modules");
    match *file {
        "package.json" => {
            let n = dirs.len();
            let direct = n >= 2 && dirs[n - 2] == "node_modules" && !dirs[n - 1].starts_with('@');
            let scoped = n >= 3 && dirs[n - 3] == "node_modules" && dirs[n - 2].starts_with('@');
            (direct || scoped).then_some(NpmFile::Installed)
        }
        "package-lock.json" | "npm-shrinkwrap.json" if !in_node_modules => Some(NpmFile::NpmLock),
        "yarn.lock" if !in_node_modules => Some(NpmFile::YarnLock),
        _ => None,
    }
}

impl Analyzer for NpmAnalyzer {
    fn name(&self) -> &'static str {
        "npm"
    }

    fn wants(&self, file: &FileInfo<'_>) -> bool {
        classify(file.path).is_some()
    }

    fn analyze(
        &self,
        file: &FileInfo<'_>,
        content: &mut dyn Read,
    ) -> Result<Option<Found>, AnalyzeError> {
        let Some(kind) = classify(file.path) else {
            return Ok(None);
        };
        let cap = match kind {
            NpmFile::Installed => MAX_PACKAGE_JSON,
            _ => MAX_LOCKFILE,
        };
        let bytes = read_capped(file.path, content, cap)?;
        let packages = match kind {
            NpmFile::Installed => {
                let v = parse_json(file.path, &bytes)?;
                match installed(&v, file.path) {
                    Some(p) => vec![p],
                    None => return Ok(None),
                }
            }
            NpmFile::NpmLock => npm_lock(&parse_json(file.path, &bytes)?, file.path)?,
            NpmFile::YarnLock => yarn_lock(&String::from_utf8_lossy(&bytes), file.path)?,
        };
        Ok(Some(Found { packages, os: None }))
    }
}

/// Reads all of `content`, failing (as malformed) past `cap` bytes.
pub(crate) fn read_capped(
    path: &str,
    content: &mut dyn Read,
    cap: u64,
) -> Result<Vec<u8>, AnalyzeError> {
    let mut bytes = Vec::new();
    content
        .take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| AnalyzeError::Io {
            path: path.to_string(),
            source,
        })?;
    if bytes.len() as u64 > cap {
        return Err(AnalyzeError::Malformed {
            path: path.to_string(),
            reason: format!("larger than the {cap}-byte limit for this kind of file"),
        });
    }
    Ok(bytes)
}

fn parse_json(path: &str, bytes: &[u8]) -> Result<Value, AnalyzeError> {
    // npm writes a UTF-8 BOM on some platforms; serde_json refuses it.
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    serde_json::from_slice(bytes).map_err(|e| AnalyzeError::Malformed {
        path: path.to_string(),
        reason: format!("not JSON: {e}"),
    })
}

/// The licences a package.json or a lockfile entry declares: `license` (a string, or the
/// old `{"type": …}` object) or the older `licenses` array.
fn licenses(v: &Value) -> Vec<String> {
    let one = |l: &Value| match l {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Object(o) => o
            .get("type")
            .and_then(Value::as_str)
            .map(|s| s.trim().to_string()),
        _ => None,
    };
    if let Some(l) = v.get("license").and_then(one) {
        return vec![l];
    }
    match v.get("licenses") {
        Some(Value::Array(a)) => a.iter().filter_map(one).collect(),
        Some(other) => one(other).into_iter().collect(),
        None => vec![],
    }
}

fn installed(v: &Value, path: &str) -> Option<Package> {
    let name = v.get("name")?.as_str()?.trim();
    let version = v.get("version")?.as_str()?.trim();
    if name.is_empty() || version.is_empty() {
        return None;
    }
    Some(lang_package(
        PackageKind::Npm,
        name,
        version,
        licenses(v),
        path,
    ))
}

/// A lockfile's version is a registry version unless it is a URL, a path or a git reference
/// (`file:…`, `git+https://…`, `github:…`): those are not in any advisory's ranges.
fn registry_version(v: &str) -> bool {
    !v.is_empty() && !v.contains(':') && !v.contains('/')
}

/// Splits an `npm:` alias (`npm:real-name@1.2.3`, lockfile v1's way of writing an aliased
/// dependency) into the real name and version.
fn unalias(version: &str) -> Option<(&str, &str)> {
    let rest = version.strip_prefix("npm:")?;
    let at = rest.get(1..)?.find('@')? + 1;
    Some((&rest[..at], &rest[at + 1..]))
}

fn npm_lock(v: &Value, path: &str) -> Result<Vec<Package>, AnalyzeError> {
    let malformed = |reason: &str| AnalyzeError::Malformed {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    let obj = v
        .as_object()
        .ok_or_else(|| malformed("not a JSON object"))?;
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let mut out = Vec::new();
    let mut push = |name: &str, version: &str, lic: Vec<String>| {
        if seen.insert((name.to_string(), version.to_string())) {
            out.push(lang_package(PackageKind::Npm, name, version, lic, path));
        }
    };
    if let Some(packages) = obj.get("packages") {
        // lockfileVersion 2 and 3: a flat map from install path to entry.
        let packages = packages
            .as_object()
            .ok_or_else(|| malformed("`packages` is not an object"))?;
        for (key, entry) in packages {
            let Some(idx) = key.rfind("node_modules/") else {
                continue; // "" (the root project) or a workspace's own directory
            };
            let flag = |f: &str| entry.get(f).and_then(Value::as_bool).unwrap_or(false);
            if flag("link") || flag("dev") {
                continue;
            }
            let name = entry
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(&key[idx + "node_modules/".len()..]);
            let Some(version) = entry.get("version").and_then(Value::as_str) else {
                continue;
            };
            if registry_version(version) && !name.is_empty() {
                push(name, version, licenses(entry));
            }
        }
    } else if let Some(deps) = obj.get("dependencies") {
        // lockfileVersion 1: nested `dependencies` objects.
        let mut stack = vec![deps];
        while let Some(deps) = stack.pop() {
            let deps = deps
                .as_object()
                .ok_or_else(|| malformed("`dependencies` is not an object"))?;
            for (name, entry) in deps {
                if let Some(nested) = entry.get("dependencies") {
                    stack.push(nested);
                }
                if entry.get("dev").and_then(Value::as_bool).unwrap_or(false) {
                    continue;
                }
                let Some(version) = entry.get("version").and_then(Value::as_str) else {
                    continue;
                };
                match unalias(version) {
                    Some((real, v)) if registry_version(v) => push(real, v, vec![]),
                    Some(_) => {}
                    None if registry_version(version) => push(name, version, vec![]),
                    None => {}
                }
            }
        }
    } else if obj.get("lockfileVersion").is_none() {
        return Err(malformed(
            "no `lockfileVersion`, `packages` or `dependencies`",
        ));
    }
    Ok(out)
}

/// The package name in a yarn.lock specifier: `lodash@^4.17.0` → `lodash`,
/// `@babel/core@^7.0.0` → `@babel/core`, `lodash@npm:^4.17.0` (yarn 2+) → `lodash`, and an alias
/// `foo@npm:bar@^1.0.0` → `bar`. `None` for a workspace, link, portal, patch or file entry.
fn yarn_name(spec: &str) -> Option<String> {
    let spec = spec.trim().trim_matches('"');
    let at = spec.get(1..)?.find('@')? + 1;
    let (name, range) = (&spec[..at], &spec[at + 1..]);
    for proto in ["workspace:", "link:", "portal:", "file:", "patch:", "exec:"] {
        if range.starts_with(proto) {
            return None;
        }
    }
    if let Some(rest) = range.strip_prefix("npm:")
        && let Some(i) = rest.get(1..).and_then(|r| r.find('@'))
    {
        return Some(rest[..i + 1].to_string());
    }
    Some(name.to_string())
}

fn yarn_lock(text: &str, path: &str) -> Result<Vec<Package>, AnalyzeError> {
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let mut out = Vec::new();
    let mut current: Option<Option<String>> = None; // Some(None): an entry we skip
    let mut entries = 0usize;
    for line in text.lines() {
        let trimmed = line.trim_end();
        if trimmed.is_empty() || trimmed.trim_start().starts_with('#') {
            continue;
        }
        if !trimmed.starts_with(' ') {
            let Some(header) = trimmed.strip_suffix(':') else {
                return Err(AnalyzeError::Malformed {
                    path: path.to_string(),
                    reason: format!("not a yarn.lock entry header: {trimmed:?}"),
                });
            };
            entries += 1;
            let first = header.split(',').next().unwrap_or(header);
            current = Some(if header.trim_matches('"') == "__metadata" {
                None
            } else {
                yarn_name(first)
            });
            continue;
        }
        // `  version "1.2.3"` (yarn 1) or `  version: 1.2.3` (yarn 2+), two spaces deep.
        let Some(field) = trimmed.strip_prefix("  ") else {
            continue;
        };
        if field.starts_with(' ') {
            continue; // a nested block (dependencies)
        }
        let Some(rest) = field.strip_prefix("version") else {
            continue;
        };
        let version = rest.trim_start_matches(':').trim().trim_matches('"');
        if let Some(Some(name)) = &current
            && registry_version(version)
            && !version.ends_with("-use.local")
            && seen.insert((name.clone(), version.to_string()))
        {
            out.push(lang_package(PackageKind::Npm, name, version, vec![], path));
        }
    }
    if entries == 0 && !text.trim().is_empty() && !text.trim_start().starts_with('#') {
        return Err(AnalyzeError::Malformed {
            path: path.to_string(),
            reason: "no yarn.lock entries".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_package_roots_in_node_modules_and_lockfiles_outside_are_wanted() {
        let yes = [
            "/app/node_modules/lodash/package.json",
            "/app/node_modules/@babel/core/package.json",
            "/app/node_modules/a/node_modules/b/package.json",
            "/app/node_modules/a/node_modules/@s/b/package.json",
            "/app/package-lock.json",
            "/app/npm-shrinkwrap.json",
            "/app/yarn.lock",
        ];
        let no = [
            "/app/package.json",
            "/app/node_modules/lodash/lib/package.json",
            "/app/node_modules/@babel/package.json",
            "/app/node_modules/.package-lock.json",
            "/app/node_modules/x/package-lock.json",
            "/app/node_modules/x/yarn.lock",
            "/node_modules/package.json",
        ];
        for p in yes {
            assert!(classify(p).is_some(), "{p}");
        }
        for p in no {
            assert!(classify(p).is_none(), "{p}");
        }
    }

    #[test]
    fn yarn_names_from_specifiers() {
        assert_eq!(yarn_name("lodash@^4.17.0").as_deref(), Some("lodash"));
        assert_eq!(
            yarn_name("\"@babel/core@^7.0.0\"").as_deref(),
            Some("@babel/core")
        );
        assert_eq!(
            yarn_name("\"lodash@npm:^4.17.15\"").as_deref(),
            Some("lodash")
        );
        assert_eq!(yarn_name("\"foo@npm:bar@^1.0.0\"").as_deref(), Some("bar"));
        assert_eq!(
            yarn_name("\"foo@npm:@s/bar@^1.0.0\"").as_deref(),
            Some("@s/bar")
        );
        assert_eq!(yarn_name("\"app@workspace:.\""), None);
        assert_eq!(yarn_name("noat"), None);
    }

    #[test]
    fn malformed_inputs_are_errors() {
        assert!(yarn_lock("lodash@^4:\n  version \"4.17.15\"\ngarbage\n", "/y").is_err());
        assert!(npm_lock(&serde_json::json!([1]), "/p").is_err());
        assert!(npm_lock(&serde_json::json!({"packages": 3}), "/p").is_err());
        assert!(npm_lock(&serde_json::json!({"x": 3}), "/p").is_err());
        assert!(parse_json("/p", b"{not json").is_err());
        assert_eq!(unalias("npm:@s/x@1.0.0"), Some(("@s/x", "1.0.0")));
        assert_eq!(unalias("npm:"), None);
        assert_eq!(unalias("1.0.0"), None);
    }
}
