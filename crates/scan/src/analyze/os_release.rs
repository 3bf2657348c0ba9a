//! `/etc/os-release` and `/usr/lib/os-release` (freedesktop's os-release(5)): `KEY=VALUE`
//! lines with shell-style quoting, read for `ID`, `VERSION_ID`, `VERSION_CODENAME` and
//! `PRETTY_NAME`.

use std::io::Read;

use super::{AnalyzeError, Analyzer, FileInfo, Found};
use crate::inventory::OsRelease;

/// The paths os-release(5) names.
const PATHS: [&str; 2] = ["/etc/os-release", "/usr/lib/os-release"];

/// The most bytes read of an os-release file (real ones are well under 1 KiB).
const MAX_SIZE: u64 = 64 << 10;

/// Reads os-release files.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsReleaseAnalyzer;

impl Analyzer for OsReleaseAnalyzer {
    fn name(&self) -> &'static str {
        "os-release"
    }

    fn wants(&self, file: &FileInfo<'_>) -> bool {
        PATHS.contains(&file.path)
    }

    fn analyze(
        &self,
        file: &FileInfo<'_>,
        content: &mut dyn Read,
    ) -> Result<Option<Found>, AnalyzeError> {
        let malformed = |reason: &str| AnalyzeError::Malformed {
            path: file.path.to_string(),
            reason: reason.to_string(),
        };
        if file.size > MAX_SIZE {
            return Err(malformed("larger than 64 KiB"));
        }
        let mut bytes = Vec::new();
        content
            .take(MAX_SIZE)
            .read_to_end(&mut bytes)
            .map_err(|source| AnalyzeError::Io {
                path: file.path.to_string(),
                source,
            })?;
        let text = std::str::from_utf8(&bytes).map_err(|_| malformed("not UTF-8"))?;
        Ok(Some(Found {
            packages: Vec::new(),
            os: Some(parse(text)),
        }))
    }
}

/// Parses os-release text. Lines that are not `KEY=VALUE` are ignored, as os-release(5) asks;
/// `ID` defaults to `linux` when absent.
pub fn parse(text: &str) -> OsRelease {
    let mut os = OsRelease {
        id: "linux".to_string(),
        version_id: None,
        codename: None,
        pretty_name: None,
    };
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        let value = unquote(value.trim());
        let slot = match key {
            "ID" => {
                if !value.is_empty() {
                    os.id = value;
                }
                continue;
            }
            "VERSION_ID" => &mut os.version_id,
            "VERSION_CODENAME" => &mut os.codename,
            "PRETTY_NAME" => &mut os.pretty_name,
            _ => continue,
        };
        *slot = (!value.is_empty()).then_some(value);
    }
    os
}

/// Undoes shell quoting: `"..."` with `\"`, `\\`, `\$` and `` \` `` escapes, `'...'` taken
/// literally, backslash escapes outside quotes; adjacent pieces are concatenated
/// (`"a"'b'c` is `abc`). An unterminated quote runs to the end of the line.
pub fn unquote(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.peek() {
                            Some(&n @ ('"' | '\\' | '$' | '`')) => {
                                out.push(n);
                                chars.next();
                            }
                            _ => out.push('\\'),
                        },
                        c => out.push(c),
                    }
                }
            }
            '\'' => {
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    out.push(c);
                }
            }
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_follows_the_shell() {
        assert_eq!(
            unquote(r#""Debian GNU/Linux 12 (bookworm)""#),
            "Debian GNU/Linux 12 (bookworm)"
        );
        assert_eq!(unquote("'a \"b\" \\c'"), "a \"b\" \\c");
        assert_eq!(unquote(r#""say \"hi\" \$x \n""#), "say \"hi\" $x \\n");
        assert_eq!(unquote(r"plain\ word"), "plain word");
        assert_eq!(unquote(r#""a"'b'c"#), "abc");
        assert_eq!(unquote("\"unterminated"), "unterminated");
    }

    #[test]
    fn fields_are_read() {
        let os = parse(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
             VERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n\
             garbage line\n# ID=ubuntu\n",
        );
        assert_eq!(os.id, "debian");
        assert_eq!(os.version_id.as_deref(), Some("12"));
        assert_eq!(os.codename.as_deref(), Some("bookworm"));
        assert_eq!(
            os.pretty_name.as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(parse("").id, "linux");
        assert_eq!(parse("VERSION_ID=\n").version_id, None);
    }
}
