//! The Debian security tracker's JSON (<https://security-tracker.debian.org/tracker/data/json>):
//! `{source_package: {CVE-id: {description, releases: {codename: {status, fixed_version,
//! urgency, ...}}}}}`, read as a stream (one source package at a time: the real file is
//! tens of megabytes) into one [`Advisory`] per (CVE, source package), with one
//! [`AffectedPackage`] per release. The matcher groups advisories by id, so a CVE that
//! affects two source packages is still one vulnerability.
//!
//! Per release entry:
//! - the codename becomes `Debian:N` by [`debian_release`]; codenames without a number (`sid`,
//!   `experimental`) and unknown ones are skipped;
//! - `resolved` with `fixed_version` `0` means the release never had the vulnerable code: no
//!   entry; `resolved` with a version is the range `introduced 0, fixed V`; `resolved` without
//!   a version is taken as not affected too;
//! - `open` and `undetermined` are `introduced 0` with no fix (every version affected): an
//!   undetermined entry is reported rather than hidden, as the tracker's own `debsecan` does;
//! - `urgency` is the entry's rating ([`crate::advisory::debian_urgency`]).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

use serde::Deserialize;
use serde::de::{DeserializeSeed, MapAccess, Visitor};

use crate::advisory::{
    Advisory, AffectedPackage, EventSpec, ParseError, RangeSpec, debian_urgency, one_line,
};

/// The Debian release number of a codename (`bookworm` → `12`), for the releases the tracker
/// lists.
pub fn debian_release(codename: &str) -> Option<&'static str> {
    Some(match codename {
        "jessie" => "8",
        "stretch" => "9",
        "buster" => "10",
        "bullseye" => "11",
        "bookworm" => "12",
        "trixie" => "13",
        "forky" => "14",
        "duke" => "15",
        _ => return None,
    })
}

#[derive(Deserialize)]
struct RawCve {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    releases: BTreeMap<String, RawRelease>,
}

#[derive(Deserialize)]
struct RawRelease {
    status: String,
    #[serde(default)]
    fixed_version: Option<String>,
    #[serde(default)]
    urgency: Option<String>,
}

/// Reads a tracker JSON document into advisories, in document order of the source packages
/// (each package's CVEs sorted). `origin`
/// names the file in errors.
pub fn parse_tracker(origin: &str, reader: impl Read) -> Result<Vec<Advisory>, ParseError> {
    let mut out = Vec::new();
    parse_tracker_each(origin, reader, |a| out.push(a))?;
    Ok(out)
}

/// Reads a tracker JSON document, handing each advisory to `each` as soon as its source
/// package has been read (memory holds one source package at a time).
pub fn parse_tracker_each(
    origin: &str,
    reader: impl Read,
    mut each: impl FnMut(Advisory),
) -> Result<(), ParseError> {
    let mut current = String::new();
    let mut de = serde_json::Deserializer::from_reader(reader);
    let seed = Packages {
        each: &mut each,
        current: &mut current,
    };
    seed.deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| {
            let field = if current.is_empty() {
                "(json)".to_string()
            } else {
                current.clone()
            };
            ParseError::new(origin, field, e.to_string())
        })
}

struct Packages<'a> {
    each: &'a mut dyn FnMut(Advisory),
    current: &'a mut String,
}

impl<'de> DeserializeSeed<'de> for Packages<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Packages<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of source packages")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(pkg) = map.next_key::<String>()? {
            self.current.clone_from(&pkg);
            let cves: BTreeMap<String, RawCve> = map.next_value()?;
            for (id, cve) in cves {
                if let Some(adv) = to_advisory(&pkg, id, cve) {
                    (self.each)(adv);
                }
            }
        }
        self.current.clear();
        Ok(())
    }
}

fn to_advisory(pkg: &str, id: String, cve: RawCve) -> Option<Advisory> {
    let mut entries = Vec::new();
    for (codename, rel) in &cve.releases {
        let Some(number) = debian_release(codename) else {
            continue;
        };
        let fixed = rel.fixed_version.as_deref().filter(|v| !v.is_empty());
        let mut events = vec![EventSpec::Introduced("0".into())];
        let mut fixed_list = Vec::new();
        // open, undetermined (and any future state): affected, no fix known.
        if rel.status == "resolved" {
            match fixed {
                Some("0") | None => continue,
                Some(v) => {
                    events.push(EventSpec::Fixed(v.to_string()));
                    fixed_list.push(v.to_string());
                }
            }
        }
        entries.push(AffectedPackage {
            ecosystem: format!("Debian:{number}"),
            name: pkg.to_string(),
            ranges: vec![RangeSpec {
                kind: "ECOSYSTEM".into(),
                events,
            }],
            versions: Vec::new(),
            rating: rel.urgency.as_deref().and_then(debian_urgency),
            vectors: Vec::new(),
            fixed: fixed_list,
        });
    }
    if entries.is_empty() {
        return None;
    }
    Some(Advisory {
        id,
        aliases: Vec::new(),
        related: Vec::new(),
        summary: cve.description.as_deref().map(one_line).unwrap_or_default(),
        published: None,
        modified: None,
        withdrawn: None,
        vectors: Vec::new(),
        rating: None,
        affected: entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Severity;

    #[test]
    fn statuses_map_to_ranges() {
        let json = r#"{"glibc":{"CVE-2023-4911":{"description":"d","releases":{
            "bookworm":{"status":"resolved","fixed_version":"2.36-9+deb12u3","urgency":"not yet assigned"},
            "bullseye":{"status":"resolved","fixed_version":"0","urgency":"unimportant"},
            "sid":{"status":"resolved","fixed_version":"2.37-12"}}}},
          "apt":{"CVE-2011-3374":{"releases":{"bookworm":{"status":"open","urgency":"unimportant"}}}}}"#;
        let advs = parse_tracker("t.json", json.as_bytes()).unwrap();
        assert_eq!(advs.len(), 2);
        // Source packages in document order: glibc, then apt.
        let (glibc, apt) = (&advs[0], &advs[1]);
        assert_eq!(apt.id, "CVE-2011-3374");
        assert_eq!(apt.affected[0].ecosystem, "Debian:12");
        assert_eq!(apt.affected[0].rating, Some(Severity::Negligible));
        assert_eq!(apt.affected[0].ranges[0].events.len(), 1);
        assert_eq!(glibc.id, "CVE-2023-4911");
        assert_eq!(
            glibc.affected.len(),
            1,
            "bullseye not affected, sid skipped"
        );
        assert_eq!(glibc.affected[0].fixed, vec!["2.36-9+deb12u3"]);
    }

    #[test]
    fn errors_name_the_package() {
        let e = parse_tracker(
            "t.json",
            r#"{"zlib":{"CVE-1":{"releases":{"bookworm":{"fixed_version":"1"}}}}}"#.as_bytes(),
        )
        .unwrap_err();
        assert_eq!(e.field, "zlib");
        assert!(e.message.contains("status"), "{e}");
        let e = parse_tracker("t.json", "[1]".as_bytes()).unwrap_err();
        assert_eq!(e.field, "(json)");
    }
}
