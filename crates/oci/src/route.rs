//! The paths of the distribution API (`/v2/...`) and the percent-decoding of their parts.
//!
//! Pure functions over the request path, shared by the server (which dispatches on them) and the
//! fuzzers (which check they never panic and that a parsed route spells its path back). The
//! repository name and the reference are returned as written: the caller validates them
//! ([`crate::validate_repository`], [`crate::Reference::parse`]) after [`percent_decode`].

/// A parsed `/v2/` route. Names and references borrow from the path, undecoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/v2/` (or `/v2`): the API version check.
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<name>/tags/list`.
    Tags(&'a str),
    /// `/v2/<name>/manifests/<reference>`.
    Manifest(&'a str, &'a str),
    /// `/v2/<name>/blobs/<digest>`.
    Blob(&'a str, &'a str),
    /// `/v2/<name>/blobs/uploads/` (or without the final slash): starts an upload.
    UploadStart(&'a str),
    /// `/v2/<name>/blobs/uploads/<id>`.
    Upload(&'a str, &'a str),
    /// `/v2/<name>/referrers/<digest>`.
    Referrers(&'a str, &'a str),
}

impl<'a> Route<'a> {
    /// The repository the route addresses, if any.
    pub fn name(&self) -> Option<&'a str> {
        match *self {
            Route::Base | Route::Catalog => None,
            Route::Tags(n)
            | Route::Manifest(n, _)
            | Route::Blob(n, _)
            | Route::UploadStart(n)
            | Route::Upload(n, _)
            | Route::Referrers(n, _) => Some(n),
        }
    }

    /// The same route addressing repository `name` instead: a pull-through cache resolves a
    /// mirror-mode (`?ns=`) or aliased name to the cached repository, once, before dispatch.
    pub fn renamed<'b>(self, name: &'b str) -> Route<'b>
    where
        'a: 'b,
    {
        match self {
            Route::Base => Route::Base,
            Route::Catalog => Route::Catalog,
            Route::Tags(_) => Route::Tags(name),
            Route::Manifest(_, r) => Route::Manifest(name, r),
            Route::Blob(_, d) => Route::Blob(name, d),
            Route::UploadStart(_) => Route::UploadStart(name),
            Route::Upload(_, id) => Route::Upload(name, id),
            Route::Referrers(_, d) => Route::Referrers(name, d),
        }
    }

    /// A short fixed name of the endpoint family (`manifest`, `blob_upload`, ...), for metrics
    /// labels and logs: it never contains the repository or the reference.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::Catalog => "catalog",
            Route::Tags(_) => "tags",
            Route::Manifest(..) => "manifest",
            Route::Blob(..) => "blob",
            Route::UploadStart(_) | Route::Upload(..) => "blob_upload",
            Route::Referrers(..) => "referrers",
        }
    }
}

/// Splits `rest` at the last `/<word>/`, returning the name before and the single segment after.
/// The last occurrence wins because repository names may themselves contain `manifests` or
/// `blobs` as components (`/v2/a/manifests/x/manifests/latest` is repository `a/manifests/x`).
fn split_last<'a>(rest: &'a str, word: &str) -> Option<(&'a str, &'a str)> {
    let idx = rest.rfind(word)?;
    let (name, tail) = (&rest[..idx], &rest[idx + word.len()..]);
    (!name.is_empty() && !tail.contains('/')).then_some((name, tail))
}

/// Parses a request path (without the query) into a [`Route`]; `None` for paths outside the
/// distribution API.
pub fn parse_route(path: &str) -> Option<Route<'_>> {
    if path == "/v2" || path == "/v2/" {
        return Some(Route::Base);
    }
    let rest = path.strip_prefix("/v2/")?;
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(name));
    }
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Some(Route::UploadStart(name));
    }
    if let Some((name, id)) = split_last(rest, "/blobs/uploads/") {
        return Some(Route::Upload(name, id));
    }
    if let Some((name, d)) = split_last(rest, "/blobs/") {
        return Some(Route::Blob(name, d));
    }
    if let Some((name, r)) = split_last(rest, "/manifests/") {
        return Some(Route::Manifest(name, r));
    }
    if let Some((name, d)) = split_last(rest, "/referrers/") {
        return Some(Route::Referrers(name, d));
    }
    None
}

/// Decodes `%XX` escapes and `+` (clients sometimes escape the digest's colon); malformed
/// escapes are kept as they are, and bytes that do not decode to UTF-8 become U+FFFD (so the
/// result is never longer than the input).
pub fn percent_decode(s: &str) -> String {
    if !s.contains(['%', '+']) {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        // Two hex digits exactly (`u8::from_str_radix` alone would also take `%+1`).
        let hex = b
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(parse_route("/v2/"), Some(Route::Base));
        assert_eq!(parse_route("/v2"), Some(Route::Base));
        assert_eq!(parse_route("/v2/_catalog"), Some(Route::Catalog));
        assert_eq!(parse_route("/v2/a/b/tags/list"), Some(Route::Tags("a/b")));
        assert_eq!(
            parse_route("/v2/a/manifests/x/manifests/latest"),
            Some(Route::Manifest("a/manifests/x", "latest"))
        );
        assert_eq!(
            parse_route("/v2/a/blobs/uploads/"),
            Some(Route::UploadStart("a"))
        );
        assert_eq!(
            parse_route("/v2/a/blobs/uploads/abc"),
            Some(Route::Upload("a", "abc"))
        );
        assert_eq!(
            parse_route("/v2/a/blobs/sha256:x"),
            Some(Route::Blob("a", "sha256:x"))
        );
        assert_eq!(
            parse_route("/v2/a/referrers/sha256:x"),
            Some(Route::Referrers("a", "sha256:x"))
        );
        assert_eq!(
            parse_route("/v2/a/manifests/"),
            Some(Route::Manifest("a", ""))
        );
        assert_eq!(parse_route("/v2/manifests/x"), None);
        assert_eq!(parse_route("/v3/"), None);
        assert_eq!(
            parse_route("/v2/a/blobs/uploads/x").unwrap().label(),
            "blob_upload"
        );
        assert_eq!(
            parse_route("/v2/a/b/tags/list").unwrap().name(),
            Some("a/b")
        );
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("sha256%3Aabc"), "sha256:abc");
        assert_eq!(percent_decode("a+b"), "a b");
        assert_eq!(percent_decode("a%zz"), "a%zz");
        assert_eq!(percent_decode("a%"), "a%");
        assert_eq!(percent_decode("a%4"), "a%4");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
        // A sign is not a hex digit: the `%` is kept (and `+` is a space), not decoded to \x0f.
        assert_eq!(percent_decode("%+f"), "% f");
    }
}
