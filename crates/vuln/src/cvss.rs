//! CVSS v3.0 and v3.1 base scores, computed from a vector string with the formulas of the
//! specifications (<https://www.first.org/cvss/v3.1/specification-document>, section 7, and
//! appendix A for v3.1's `Roundup`). Temporal and environmental metrics may be present in the
//! vector; they are checked for syntax only and do not change the base score.
//!
//! CVSS v4.0 vectors are not scored here: v4's score comes from a lookup table of macro
//! vectors (about 270 entries plus interpolation) rather than a formula, and no light crate
//! implements it. A finding from a v4-only advisory takes the advisory's own rating instead
//! (see `matcher`).

use std::collections::HashSet;

/// Why a vector cannot be scored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CvssError {
    /// The vector does not start with `CVSS:3.0/` or `CVSS:3.1/`.
    #[error("not a CVSS v3.0/v3.1 vector: {0:?}")]
    Version(String),
    /// A `/`-separated part is not `METRIC:VALUE`.
    #[error("malformed metric {0:?}")]
    Syntax(String),
    /// A metric appears twice.
    #[error("metric {0} given twice")]
    Duplicate(String),
    /// A base metric has a value the specification does not define.
    #[error("metric {metric} has no value {value:?}")]
    Value {
        /// The metric (`AV`).
        metric: String,
        /// The value given.
        value: String,
    },
    /// A base metric is missing.
    #[error("base metric {0} missing")]
    Missing(&'static str),
}

/// Which v3 minor version a vector declares (they differ only in rounding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V3 {
    /// `CVSS:3.0`.
    V30,
    /// `CVSS:3.1`.
    V31,
}

/// The base score (0.0-10.0) of a CVSS v3.0 or v3.1 vector.
pub fn base_score_v3(vector: &str) -> Result<f64, CvssError> {
    let (version, rest) = if let Some(r) = vector.strip_prefix("CVSS:3.1/") {
        (V3::V31, r)
    } else if let Some(r) = vector.strip_prefix("CVSS:3.0/") {
        (V3::V30, r)
    } else {
        return Err(CvssError::Version(vector.to_string()));
    };
    let mut seen = HashSet::new();
    let (mut av, mut ac, mut pr, mut ui, mut s, mut c, mut i, mut a) =
        (None, None, None, None, None, None, None, None);
    for part in rest.split('/') {
        let (metric, value) = part
            .split_once(':')
            .filter(|(m, v)| !m.is_empty() && !v.is_empty())
            .ok_or_else(|| CvssError::Syntax(part.to_string()))?;
        if !seen.insert(metric) {
            return Err(CvssError::Duplicate(metric.to_string()));
        }
        let bad = || CvssError::Value {
            metric: metric.to_string(),
            value: value.to_string(),
        };
        match metric {
            "AV" => {
                av = Some(match value {
                    "N" => 0.85,
                    "A" => 0.62,
                    "L" => 0.55,
                    "P" => 0.2,
                    _ => return Err(bad()),
                })
            }
            "AC" => {
                ac = Some(match value {
                    "L" => 0.77,
                    "H" => 0.44,
                    _ => return Err(bad()),
                })
            }
            "PR" => {
                pr = Some(match value {
                    "N" | "L" | "H" => value,
                    _ => return Err(bad()),
                })
            }
            "UI" => {
                ui = Some(match value {
                    "N" => 0.85,
                    "R" => 0.62,
                    _ => return Err(bad()),
                })
            }
            "S" => {
                s = Some(match value {
                    "U" => false,
                    "C" => true,
                    _ => return Err(bad()),
                })
            }
            "C" | "I" | "A" => {
                let w = match value {
                    "H" => 0.56,
                    "L" => 0.22,
                    "N" => 0.0,
                    _ => return Err(bad()),
                };
                match metric {
                    "C" => c = Some(w),
                    "I" => i = Some(w),
                    _ => a = Some(w),
                }
            }
            // Temporal and environmental metrics: syntax checked above, not scored.
            _ => {}
        }
    }
    let av = av.ok_or(CvssError::Missing("AV"))?;
    let ac = ac.ok_or(CvssError::Missing("AC"))?;
    let pr = pr.ok_or(CvssError::Missing("PR"))?;
    let ui = ui.ok_or(CvssError::Missing("UI"))?;
    let changed = s.ok_or(CvssError::Missing("S"))?;
    let c = c.ok_or(CvssError::Missing("C"))?;
    let i = i.ok_or(CvssError::Missing("I"))?;
    let a = a.ok_or(CvssError::Missing("A"))?;
    let pr = match (pr, changed) {
        ("N", _) => 0.85,
        ("L", false) => 0.62,
        ("L", true) => 0.68,
        ("H", false) => 0.27,
        _ => 0.5,
    };
    let iss = 1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a);
    let impact = if changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02f64).powi(15)
    } else {
        6.42 * iss
    };
    let exploitability = 8.22 * av * ac * pr * ui;
    if impact <= 0.0 {
        return Ok(0.0);
    }
    let raw = if changed {
        (1.08 * (impact + exploitability)).min(10.0)
    } else {
        (impact + exploitability).min(10.0)
    };
    Ok(roundup(version, raw))
}

/// The specifications' `Roundup`: the smallest number with one decimal that is at least the
/// input. v3.1 defines it on integers to avoid floating-point artefacts (appendix A).
fn roundup(version: V3, x: f64) -> f64 {
    match version {
        V3::V30 => (x * 10.0).ceil() / 10.0,
        V3::V31 => {
            let int_input = (x * 100_000.0).round() as i64;
            if int_input % 10_000 == 0 {
                int_input as f64 / 100_000.0
            } else {
                ((int_input / 10_000) + 1) as f64 / 10.0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specification_examples() {
        // CVSS v3.1 examples document (first.org): CVE-2013-1937 phpMyAdmin XSS 6.1,
        // CVE-2014-0160 Heartbleed 7.5, CVE-2014-6271 Shellshock 9.8, CVE-2016-1645 Chrome
        // 8.8, CVE-2015-1098 iWork 7.8, CVE-2014-3566 POODLE 3.1.
        let cases = [
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 7.5),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H", 8.8),
            ("CVSS:3.1/AV:L/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H", 7.8),
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N", 3.1),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
            // CVE-2023-4911 (Looney Tunables), NVD 7.8.
            ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8),
            // CVE-2011-3374 apt, NVD 3.7.
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:L/A:N", 3.7),
        ];
        for (v, want) in cases {
            assert_eq!(base_score_v3(v).unwrap(), want, "{v}");
        }
    }

    #[test]
    fn temporal_metrics_are_ignored_and_errors_are_typed() {
        assert_eq!(
            base_score_v3("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:P/RL:O/RC:C").unwrap(),
            9.8
        );
        assert!(matches!(
            base_score_v3("CVSS:2.0/AV:N"),
            Err(CvssError::Version(_))
        ));
        assert!(matches!(
            base_score_v3("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H"),
            Err(CvssError::Missing("A"))
        ));
        assert!(matches!(
            base_score_v3("CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
            Err(CvssError::Value { .. })
        ));
        assert!(matches!(
            base_score_v3("CVSS:3.1/AV:N/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
            Err(CvssError::Duplicate(_))
        ));
        assert!(matches!(
            base_score_v3("CVSS:3.1/AV"),
            Err(CvssError::Syntax(_))
        ));
    }
}
