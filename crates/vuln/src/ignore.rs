//! Ignore files: findings a team has judged and accepted, each with a reason and optionally an
//! expiry date.
//!
//! ```toml
//! [[ignore]]
//! id = "CVE-2011-3374"        # the finding's id or any of its aliases
//! package = "apt"             # optional: only this package (PyPI names PEP 503-normalised)
//! image = "library/debian*"   # optional: a glob on the image name (oci::Glob: `*` crosses `/`)
//! reason = "apt-key is not used in our images"   # required
//! expires = "2025-06-30"      # optional: the rule holds through this day (UTC)
//! ```
//!
//! `expires` may be a string or a TOML date. Unknown keys are errors (a typo must not widen or
//! silently drop a rule). Every error carries its 1-based line.

use oci::Glob;
use serde::Deserialize;

use crate::finding::Finding;

/// An ignore file that is not valid, with the line of the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct IgnoreError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// One rule.
#[derive(Debug, Clone)]
pub struct IgnoreRule {
    /// The finding id (or alias) it applies to.
    pub id: String,
    /// Only this package, when given.
    pub package: Option<String>,
    /// Only images whose name matches this glob, when given.
    pub image: Option<Glob>,
    /// Why the finding is accepted.
    pub reason: String,
    /// The last day the rule holds (`YYYY-MM-DD`), when given.
    pub expires: Option<String>,
    /// The rule's line in the file.
    pub line: usize,
}

impl IgnoreRule {
    /// Whether the rule has expired on `today` (`YYYY-MM-DD`): the expiry day itself still
    /// counts.
    pub fn is_expired(&self, today: &str) -> bool {
        self.expires.as_deref().is_some_and(|e| today > e)
    }

    /// Whether the rule covers `finding` in `image` (expiry not considered).
    pub fn covers(&self, finding: &Finding, image: &str) -> bool {
        self.covers_installed(finding, None, image)
    }

    /// [`IgnoreRule::covers`], where `package` may also name the installed package
    /// (`libc6`, when the finding names its source package `glibc`).
    pub fn covers_installed(
        &self,
        finding: &Finding,
        installed: Option<&str>,
        image: &str,
    ) -> bool {
        let id_ok = finding.id == self.id || finding.aliases.contains(&self.id);
        if !id_ok {
            return false;
        }
        if let Some(p) = &self.package {
            let is = |name: &str| {
                if finding.ecosystem == "PyPI" {
                    crate::matcher::pep503(p) == crate::matcher::pep503(name)
                } else {
                    p == name
                }
            };
            let same = is(&finding.package) || installed.is_some_and(is);
            if !same {
                return false;
            }
        }
        self.image.as_ref().is_none_or(|g| g.matches(image))
    }
}

/// The rules of one ignore file.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    rules: Vec<IgnoreRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    ignore: Vec<toml::Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    #[serde(default)]
    package: Option<String>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    expires: Option<toml::Value>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Checks a `YYYY-MM-DD` date (Gregorian, month and day in range).
pub fn valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|t| t.parse::<u32>().ok());
    let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10)) else {
        return false;
    };
    if !b
        .iter()
        .enumerate()
        .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
    {
        return false;
    }
    let days = u8::try_from(m)
        .ok()
        .and_then(|m| oci::time::days_in_month(i64::from(y), m));
    days.is_some_and(|days| (1..=u32::from(days)).contains(&d))
}

impl IgnoreRules {
    /// Parses an ignore file.
    pub fn parse(text: &str) -> Result<IgnoreRules, IgnoreError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| IgnoreError {
            line: e.span().map_or(1, |s| line_of(text, s.start)),
            message: e.message().to_string(),
        })?;
        let mut rules = Vec::with_capacity(raw.ignore.len());
        for spanned in raw.ignore {
            let line = line_of(text, spanned.span().start);
            let r = spanned.into_inner();
            let err = |message: String| IgnoreError { line, message };
            if r.id.trim().is_empty() {
                return Err(err("`id` is empty".into()));
            }
            let reason = match r.reason {
                Some(s) if !s.trim().is_empty() => s,
                _ => return Err(err(format!("rule for {} has no `reason`", r.id))),
            };
            let expires = match r.expires {
                None => None,
                Some(v) => {
                    let s = match v {
                        toml::Value::String(s) => s,
                        toml::Value::Datetime(d) => d.to_string(),
                        other => {
                            return Err(err(format!(
                                "`expires` must be a YYYY-MM-DD date, not {}",
                                other.type_str()
                            )));
                        }
                    };
                    if !valid_date(&s) {
                        return Err(err(format!("`expires` {s:?} is not a YYYY-MM-DD date")));
                    }
                    Some(s)
                }
            };
            if r.package.as_deref().is_some_and(|p| p.trim().is_empty()) {
                return Err(err("`package` is empty".into()));
            }
            rules.push(IgnoreRule {
                id: r.id,
                package: r.package,
                image: r.image.as_deref().map(Glob::new),
                reason,
                expires,
                line,
            });
        }
        Ok(IgnoreRules { rules })
    }

    /// Every rule, in file order.
    pub fn rules(&self) -> &[IgnoreRule] {
        &self.rules
    }

    /// The reason of the first unexpired rule that covers `finding` in `image` on `today`
    /// (`YYYY-MM-DD`).
    pub fn suppresses(&self, finding: &Finding, image: &str, today: &str) -> Option<&str> {
        self.rules
            .iter()
            .find(|r| !r.is_expired(today) && r.covers(finding, image))
            .map(|r| r.reason.as_str())
    }

    /// [`IgnoreRules::suppresses`] for a finding in an installed package whose name may
    /// differ from the advisory's (a binary package of the finding's source package).
    pub fn suppresses_installed(
        &self,
        finding: &Finding,
        installed: &str,
        image: &str,
        today: &str,
    ) -> Option<&str> {
        self.rules
            .iter()
            .find(|r| !r.is_expired(today) && r.covers_installed(finding, Some(installed), image))
            .map(|r| r.reason.as_str())
    }

    /// The rules that have expired on `today`, to be listed as such.
    pub fn expired(&self, today: &str) -> impl Iterator<Item = &IgnoreRule> {
        self.rules.iter().filter(move |r| r.is_expired(today))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Severity;

    fn finding(id: &str, aliases: &[&str], eco: &str, pkg: &str) -> Finding {
        Finding {
            id: id.into(),
            aliases: aliases.iter().map(|s| s.to_string()).collect(),
            ecosystem: eco.into(),
            package: pkg.into(),
            version: "1".into(),
            fixed: None,
            severity: Severity::Low,
            cvss: None,
            summary: String::new(),
        }
    }

    #[test]
    fn rules_suppress_until_they_expire() {
        let rules = IgnoreRules::parse(
            r#"
[[ignore]]
id = "CVE-2011-3374"
package = "apt"
reason = "apt-key unused"

[[ignore]]
id = "GHSA-x"
package = "Foo_Bar"
image = "team-a/*"
reason = "not reachable"
expires = 2025-06-30
"#,
        )
        .unwrap();
        assert_eq!(rules.rules()[1].line, 7);
        let apt = finding("CVE-2011-3374", &[], "Debian:12", "apt");
        assert_eq!(
            rules.suppresses(&apt, "any", "2030-01-01"),
            Some("apt-key unused")
        );
        assert_eq!(
            rules.suppresses(
                &finding("CVE-2011-3374", &[], "Debian:12", "tar"),
                "x",
                "2030-01-01"
            ),
            None
        );
        let f = finding("CVE-9", &["GHSA-x"], "PyPI", "foo-bar");
        assert_eq!(
            rules.suppresses(&f, "team-a/app/web", "2025-06-30"),
            Some("not reachable")
        );
        assert_eq!(rules.suppresses(&f, "team-b/app", "2025-06-30"), None);
        assert_eq!(rules.suppresses(&f, "team-a/app", "2025-07-01"), None);
        assert_eq!(rules.expired("2025-07-01").count(), 1);
        assert_eq!(rules.expired("2025-06-30").count(), 0);
    }

    #[test]
    fn errors_carry_lines() {
        let e = IgnoreRules::parse("[[ignore]]\nid = \"CVE-1\"\n").unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        assert!(e.message.contains("reason"));
        let e = IgnoreRules::parse(
            "\n\n[[ignore]]\nid = \"CVE-1\"\nreason = \"r\"\nexpires = \"2025-02-30\"\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let e = IgnoreRules::parse("[[ignore]]\nid = \"CVE-1\"\nreason = \"r\"\nreasn = \"r\"\n")
            .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        let e = IgnoreRules::parse("[[ignore]]\nid = \"CVE-1\nreason = 1\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(valid_date("2024-02-29"));
        assert!(!valid_date("2023-02-29"));
        assert!(!valid_date("2023-1-01"));
    }
}
