//! Python distributions: the core metadata file of an installed distribution, wherever it lies
//! (`site-packages`, `dist-packages`, a `pip install --target` directory, a virtualenv):
//!
//! - `NAME-VERSION.dist-info/METADATA` (wheels, modern pip);
//! - `NAME-VERSION.egg-info/PKG-INFO` (setuptools' `egg-info` directories, which Debian's
//!   `python3-*` packages still install);
//! - `NAME-VERSION.egg-info` as a single file (distutils' and older setuptools' layout).
//!
//! All three are RFC 822 style headers (the core metadata specification), one distribution per
//! file. Only the header block is read (up to the first empty line, at most
//! [`MAX_HEADER_BYTES`]): the long description that follows can be large and says nothing we
//! need.

use std::io::{BufRead, BufReader, Read};

use super::{AnalyzeError, Analyzer, FileInfo, Found, lang_package};
use crate::inventory::PackageKind;

/// The most header bytes read from one metadata file (the description body is never read).
pub const MAX_HEADER_BYTES: u64 = 1 << 20;

/// A `License:` value longer than this, or spanning lines, is a licence text pasted in, not a
/// licence's name: classifiers are used instead.
const MAX_LICENSE_NAME: usize = 200;

/// Reads installed Python distributions' core metadata.
#[derive(Debug, Default, Clone, Copy)]
pub struct PythonAnalyzer;

impl Analyzer for PythonAnalyzer {
    fn name(&self) -> &'static str {
        "python"
    }

    fn wants(&self, file: &FileInfo<'_>) -> bool {
        let p = file.path;
        p.ends_with(".dist-info/METADATA")
            || p.ends_with(".egg-info/PKG-INFO")
            || (p.ends_with(".egg-info") && !p.ends_with("/.egg-info"))
    }

    fn analyze(
        &self,
        file: &FileInfo<'_>,
        content: &mut dyn Read,
    ) -> Result<Option<Found>, AnalyzeError> {
        let headers = read_headers(file.path, content)?;
        let get = |key: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
        };
        let malformed = |reason: &str| AnalyzeError::Malformed {
            path: file.path.to_string(),
            reason: reason.to_string(),
        };
        let name = get("Name").ok_or_else(|| malformed("no Name header"))?;
        let version = get("Version").ok_or_else(|| malformed("no Version header"))?;
        let mut licenses = Vec::new();
        if let Some(expr) = get("License-Expression") {
            licenses.push(expr.to_string());
        } else if let Some(l) = get("License").filter(|l| {
            !l.eq_ignore_ascii_case("UNKNOWN") && !l.contains('\n') && l.len() <= MAX_LICENSE_NAME
        }) {
            licenses.push(l.to_string());
        } else {
            for (k, v) in &headers {
                if k.eq_ignore_ascii_case("Classifier")
                    && let Some(rest) = v.trim().strip_prefix("License ::")
                {
                    // `License :: OSI Approved :: MIT License` -> `MIT License`
                    let last = rest.rsplit("::").next().unwrap_or(rest).trim();
                    if !last.is_empty()
                        && last != "OSI Approved"
                        && !licenses.iter().any(|x| x == last)
                    {
                        licenses.push(last.to_string());
                    }
                }
            }
        }
        let pkg = lang_package(PackageKind::Python, name, version, licenses, file.path);
        Ok(Some(Found {
            packages: vec![pkg],
            os: None,
        }))
    }
}

/// Reads the header block: `Key: value` lines, continuation lines (starting with a space or a
/// tab) appended to the previous value with a newline, up to the first empty line or the end.
fn read_headers(path: &str, content: &mut dyn Read) -> Result<Vec<(String, String)>, AnalyzeError> {
    let mut reader = BufReader::new(content.take(MAX_HEADER_BYTES));
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut line = Vec::new();
    let mut total = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|source| AnalyzeError::Io {
                path: path.to_string(),
                source,
            })?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total >= MAX_HEADER_BYTES && !line.ends_with(b"\n") {
            return Err(AnalyzeError::Malformed {
                path: path.to_string(),
                reason: format!("headers longer than {MAX_HEADER_BYTES} bytes"),
            });
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            break; // end of headers: the description body follows
        }
        if text.starts_with([' ', '\t']) {
            match headers.last_mut() {
                Some((_, v)) => {
                    v.push('\n');
                    v.push_str(text.trim());
                }
                None => {
                    return Err(AnalyzeError::Malformed {
                        path: path.to_string(),
                        reason: "a continuation line before any header".into(),
                    });
                }
            }
            continue;
        }
        match text.split_once(':') {
            Some((k, v)) if !k.is_empty() && !k.contains(' ') => {
                headers.push((k.to_string(), v.trim().to_string()))
            }
            _ => {
                return Err(AnalyzeError::Malformed {
                    path: path.to_string(),
                    reason: format!("not a `Key: value` header: {:?}", truncate(text, 80)),
                });
            }
        }
    }
    Ok(headers)
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(path: &str, body: &str) -> Result<Option<Found>, AnalyzeError> {
        let info = FileInfo {
            path,
            size: body.len() as u64,
            mode: 0o644,
        };
        assert!(PythonAnalyzer.wants(&info));
        PythonAnalyzer.analyze(&info, &mut body.as_bytes())
    }

    #[test]
    fn reads_name_version_and_the_licence_in_order_of_preference() {
        let found = run(
            "/x/site-packages/a-1.dist-info/METADATA",
            "Metadata-Version: 2.4\nName: Foo_Bar\nVersion: 1.0.post1\nLicense-Expression: MIT OR Apache-2.0\nLicense: ignored\n\nName: body\n",
        )
        .unwrap()
        .unwrap();
        let p = &found.packages[0];
        assert_eq!(
            (p.name.as_str(), p.version.as_str()),
            ("Foo_Bar", "1.0.post1")
        );
        assert_eq!(p.licenses, vec!["MIT OR Apache-2.0"]);
        let found = run(
            "/x/a.egg-info",
            "Name: a\nVersion: 2\nLicense: UNKNOWN\nClassifier: License :: OSI Approved :: BSD License\nClassifier: Programming Language :: Python\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(found.packages[0].licenses, vec!["BSD License"]);
        // A licence text pasted into `License:` (continuation lines) is not a name.
        let found = run(
            "/x/a.egg-info/PKG-INFO",
            "Name: a\nVersion: 2\nLicense: Copyright (c) someone\n        Permission is hereby granted\nClassifier: License :: OSI Approved :: MIT License\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(found.packages[0].licenses, vec!["MIT License"]);
    }

    #[test]
    fn malformed_metadata_is_an_error_not_a_panic() {
        assert!(matches!(
            run("/a.dist-info/METADATA", "Version: 1\n"),
            Err(AnalyzeError::Malformed { .. })
        ));
        assert!(matches!(
            run("/a.dist-info/METADATA", "\u{0}\u{1}binary garbage\n"),
            Err(AnalyzeError::Malformed { .. })
        ));
        assert!(matches!(
            run("/a.dist-info/METADATA", "  continuation first\n"),
            Err(AnalyzeError::Malformed { .. })
        ));
        assert!(matches!(
            run("/a.dist-info/METADATA", ""),
            Err(AnalyzeError::Malformed { .. })
        ));
        let info = FileInfo {
            path: "/x/RECORD",
            size: 1,
            mode: 0o644,
        };
        assert!(!PythonAnalyzer.wants(&info));
    }
}
