//! Alpine's secdb JSON (<https://secdb.alpinelinux.org/>): `{distroversion: "v3.20",
//! reponame, packages: [{pkg: {name, secfixes: {"<ver>-rN": [ids]}}}]}`, mapped to one
//! [`Advisory`] per vulnerability id with one [`AffectedPackage`] per package, in the ecosystem
//! `Alpine:<distroversion>`.
//!
//! - An id string may carry more than one id (`CVE-2016-7777 XSA-190`): the first is the
//!   advisory's id, the others its aliases.
//! - The `"0"` key means the branch never shipped the vulnerable code: no entry.
//! - Version keys are not checked here: a key apk cannot order (the data has a few, such as
//!   `6.6.2p1-r0`) makes its entries index problems ([`crate::IndexStats::problems`]), so one
//!   bad key does not lose the rest of the file.
//! - An id listed under several versions of one package (fixed, then fixed again) gives one
//!   range with every fix: a version is affected below the lowest one.

use std::collections::BTreeMap;
use std::io::Read;

use serde::Deserialize;

use crate::advisory::{Advisory, AffectedPackage, EventSpec, ParseError, RangeSpec};

/// One id's aliases and, per package, its fixed versions.
type ByPackage = (Vec<String>, BTreeMap<String, Vec<String>>);

#[derive(Deserialize)]
struct RawSecdb {
    distroversion: String,
    #[serde(default)]
    packages: Option<Vec<RawPackage>>,
}

#[derive(Deserialize)]
struct RawPackage {
    pkg: RawPkg,
}

#[derive(Deserialize)]
struct RawPkg {
    name: String,
    #[serde(default)]
    secfixes: Option<BTreeMap<String, Option<Vec<String>>>>,
}

/// Reads one secdb file (`v3.20/main.json`). `origin` names the file in errors.
pub fn parse_secdb(origin: &str, reader: impl Read) -> Result<Vec<Advisory>, ParseError> {
    let raw: RawSecdb =
        serde_json::from_reader(reader).map_err(|e| ParseError::json(origin, &e))?;
    let release = raw.distroversion.trim();
    if !release.starts_with('v') || release.len() < 2 {
        return Err(ParseError::new(
            origin,
            "distroversion",
            format!("expected vMAJOR.MINOR, got {release:?}"),
        ));
    }
    let ecosystem = format!("Alpine:{release}");
    // id -> (aliases, package -> fixed versions)
    let mut by_id: BTreeMap<String, ByPackage> = BTreeMap::new();
    for (pi, p) in raw.packages.unwrap_or_default().into_iter().enumerate() {
        if p.pkg.name.trim().is_empty() {
            return Err(ParseError::new(
                origin,
                format!("packages[{pi}].pkg.name"),
                "empty",
            ));
        }
        for (version, ids) in p.pkg.secfixes.unwrap_or_default() {
            let version = version.trim();
            if version == "0" {
                continue;
            }
            if version.is_empty() {
                return Err(ParseError::new(
                    origin,
                    format!("packages[{pi}] ({}).secfixes", p.pkg.name),
                    "empty version key",
                ));
            }
            for text in ids.unwrap_or_default() {
                let mut tokens = text.split_whitespace();
                let Some(id) = tokens.next() else { continue };
                let (aliases, pkgs) = by_id.entry(id.to_string()).or_default();
                for t in tokens {
                    if !aliases.iter().any(|a| a == t) {
                        aliases.push(t.to_string());
                    }
                }
                let fixes = pkgs.entry(p.pkg.name.clone()).or_default();
                if !fixes.iter().any(|f| f == version) {
                    fixes.push(version.to_string());
                }
            }
        }
    }
    Ok(by_id
        .into_iter()
        .map(|(id, (aliases, pkgs))| Advisory {
            id,
            aliases,
            related: Vec::new(),
            summary: String::new(),
            published: None,
            modified: None,
            withdrawn: None,
            vectors: Vec::new(),
            rating: None,
            affected: pkgs
                .into_iter()
                .map(|(name, fixed)| {
                    let mut events = vec![EventSpec::Introduced("0".into())];
                    events.extend(fixed.iter().cloned().map(EventSpec::Fixed));
                    AffectedPackage {
                        ecosystem: ecosystem.clone(),
                        name,
                        ranges: vec![RangeSpec {
                            kind: "ECOSYSTEM".into(),
                            events,
                        }],
                        versions: Vec::new(),
                        rating: None,
                        vectors: Vec::new(),
                        fixed,
                    }
                })
                .collect(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secfixes_map_to_ranges() {
        let json = r#"{"distroversion":"v3.20","reponame":"main","packages":[
          {"pkg":{"name":"xen","secfixes":{"0":["CVE-2000-1"],"4.7.0-r1":["CVE-2016-7777 XSA-190"]}}},
          {"pkg":{"name":"zlib","secfixes":{"1.2.11-r4":["CVE-2018-25032"],"1.3-r0":["CVE-2018-25032"]}}}]}"#;
        let advs = parse_secdb("main.json", json.as_bytes()).unwrap();
        assert_eq!(advs.len(), 2);
        assert_eq!(advs[0].id, "CVE-2016-7777");
        assert_eq!(advs[0].aliases, vec!["XSA-190"]);
        assert_eq!(advs[0].affected[0].ecosystem, "Alpine:v3.20");
        assert_eq!(advs[1].affected[0].fixed.len(), 2);
    }

    #[test]
    fn bad_versions_name_the_field() {
        let json = r#"{"distroversion":"v3.20","packages":[{"pkg":{"name":"a","secfixes":{" ":["CVE-1"]}}}]}"#;
        let e = parse_secdb("m.json", json.as_bytes()).unwrap_err();
        assert!(e.field.contains("secfixes"), "{e}");
        let e = parse_secdb("m.json", br#"{"packages":[]}"#.as_slice()).unwrap_err();
        assert_eq!(e.field, "(json)");
    }
}
