//! Byte ranges: the `Range` request header for blob GETs and `Content-Range` for chunked uploads.

/// An inclusive byte range `start..=end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Last byte, inclusive.
    pub end: u64,
}

impl ByteRange {
    /// Number of bytes covered.
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Never true: a range covers at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Why a range header was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RangeError {
    /// Not a single `bytes=` range Wharf understands (the header is then ignored, as RFC 9110 allows).
    #[error("malformed range")]
    Malformed,
    /// Well formed but outside the content.
    #[error("range not satisfiable")]
    Unsatisfiable,
}

fn num(s: &str) -> Result<u64, RangeError> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RangeError::Malformed);
    }
    s.parse().map_err(|_| RangeError::Malformed)
}

/// Parses a `Range: bytes=...` header against content of `size` bytes.
///
/// Single ranges only: `a-b`, `a-` and the suffix form `-n`. Multiple ranges are `Malformed`,
/// which the caller answers by serving the whole blob.
pub fn parse_range(header: &str, size: u64) -> Result<ByteRange, RangeError> {
    let spec = header
        .trim()
        .strip_prefix("bytes=")
        .ok_or(RangeError::Malformed)?
        .trim();
    if spec.contains(',') {
        return Err(RangeError::Malformed);
    }
    let (a, b) = spec.split_once('-').ok_or(RangeError::Malformed)?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let n = num(b)?;
        if n == 0 || size == 0 {
            return Err(RangeError::Unsatisfiable);
        }
        return Ok(ByteRange {
            start: size.saturating_sub(n),
            end: size - 1,
        });
    }
    let start = num(a)?;
    let end = if b.is_empty() { u64::MAX } else { num(b)? };
    if end < start {
        // RFC 9110 would allow ignoring it; the OCI conformance suite expects a 416.
        return Err(RangeError::Unsatisfiable);
    }
    if start >= size {
        return Err(RangeError::Unsatisfiable);
    }
    Ok(ByteRange {
        start,
        end: end.min(size - 1),
    })
}

/// Parses an upload chunk's `Content-Range: a-b` (also accepting a `bytes ` prefix and `/total`).
pub fn parse_content_range(header: &str) -> Result<ByteRange, RangeError> {
    let s = header.trim();
    let s = s.strip_prefix("bytes ").unwrap_or(s);
    let s = s.split_once('/').map_or(s, |(r, _)| r);
    let (a, b) = s.split_once('-').ok_or(RangeError::Malformed)?;
    let (start, end) = (num(a.trim())?, num(b.trim())?);
    if end < start {
        return Err(RangeError::Malformed);
    }
    Ok(ByteRange { start, end })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ranges() {
        assert_eq!(
            parse_range("bytes=0-9", 100),
            Ok(ByteRange { start: 0, end: 9 })
        );
        assert_eq!(
            parse_range("bytes=90-", 100),
            Ok(ByteRange { start: 90, end: 99 })
        );
        assert_eq!(
            parse_range("bytes=-10", 100),
            Ok(ByteRange { start: 90, end: 99 })
        );
        assert_eq!(
            parse_range("bytes=-1000", 100),
            Ok(ByteRange { start: 0, end: 99 })
        );
        assert_eq!(
            parse_range("bytes=50-1000", 100),
            Ok(ByteRange { start: 50, end: 99 })
        );
        assert_eq!(
            parse_range("bytes=100-", 100),
            Err(RangeError::Unsatisfiable)
        );
        assert_eq!(parse_range("bytes=-0", 100), Err(RangeError::Unsatisfiable));
        assert_eq!(
            parse_range("bytes=5-1", 100),
            Err(RangeError::Unsatisfiable)
        );
        assert_eq!(
            parse_range("bytes=0-1,3-4", 100),
            Err(RangeError::Malformed)
        );
        assert_eq!(parse_range("items=0-1", 100), Err(RangeError::Malformed));
        assert_eq!(parse_range("bytes=a-b", 100), Err(RangeError::Malformed));
        assert_eq!(
            parse_range("bytes=99999999999999999999-", 100),
            Err(RangeError::Malformed)
        );
    }

    #[test]
    fn content_ranges() {
        assert_eq!(
            parse_content_range("0-99"),
            Ok(ByteRange { start: 0, end: 99 })
        );
        assert_eq!(
            parse_content_range("bytes 10-19/*"),
            Ok(ByteRange { start: 10, end: 19 })
        );
        assert!(parse_content_range("10").is_err());
        assert!(parse_content_range("9-1").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,60}", size in any::<u64>()) {
            let _ = parse_range(&s, size);
            let _ = parse_content_range(&s);
        }

        #[test]
        fn satisfiable_ranges_are_inside(a in 0u64..1000, b in 0u64..1000, size in 0u64..1000) {
            if let Ok(r) = parse_range(&format!("bytes={a}-{b}"), size) {
                prop_assert!(r.start <= r.end && r.end < size);
            }
        }
    }
}
