//! Invariants of pin's YAML reader and rewriter on arbitrary bytes: `find_images` and `pin` give
//! `Ok` or `Err` (the same one), never a panic; spans point at the scalar tokens they describe; a
//! run that changes nothing (check mode, failing look-ups) gives the input back byte for byte; a
//! real rewrite re-parses to the same images with exactly the pinned text, and pinning the output
//! again changes nothing.
//!
//! Shared by the fuzz target (`fuzz/fuzz_targets/pin.rs`) and the seed-corpus test of the crate
//! (`crates/pin/tests/fuzz_corpus.rs`).

use std::future::Future;
use std::task::{Context, Poll, Waker};

use pin::{Digest, ImageRef, Mode, Quoting, ResolveError, Resolver, Status};

/// Every look-up answers with this digest.
struct Fixed(Digest);

impl Resolver for Fixed {
    async fn resolve(&self, _: &ImageRef) -> Result<Digest, ResolveError> {
        Ok(self.0.clone())
    }
    async fn exists(&self, _: &ImageRef, d: &Digest) -> Result<bool, ResolveError> {
        Ok(*d == self.0)
    }
}

/// Every look-up fails.
struct Failing;

impl Resolver for Failing {
    async fn resolve(&self, i: &ImageRef) -> Result<Digest, ResolveError> {
        Err(ResolveError::NotFound(i.as_str().to_owned()))
    }
    async fn exists(&self, _: &ImageRef, _: &Digest) -> Result<bool, ResolveError> {
        Err(ResolveError::Other("offline".into()))
    }
}

/// The resolvers above never wait, so polling with a no-op waker completes.
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = Box::pin(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// `to_json` on the same input: an error exactly when the YAML reader fails (or for its own
/// reasons: alias budget, depth, keys), never a panic; every recorded pointer resolves in its
/// document, at a line of the input.
fn check_json(data: &[u8]) {
    let parsed = pin::find_images(data);
    match pin::to_json(data) {
        Ok(docs) => {
            assert!(parsed.is_ok(), "to_json accepted what find_images refused");
            let lines = 1 + data.iter().filter(|&&b| b == b'\n').count();
            for d in &docs {
                assert!(d.line >= 1 && d.line <= lines);
                for (p, &l) in &d.lines {
                    assert!(d.value.pointer(p).is_some(), "{p} not in {}", d.value);
                    assert!(l >= 1 && l <= lines, "{p} at line {l} of {lines}");
                }
            }
        }
        Err(pin::JsonError::Parse(e)) => assert_eq!(parsed.unwrap_err(), e),
        Err(e) => assert!(e.line() >= 1),
    }
}

/// Runs every invariant on one input; panics when one does not hold.
pub fn check(data: &[u8]) {
    check_json(data);
    let digest = Digest::sha256(b"wharf fuzz");
    let images = match pin::find_images(data) {
        Ok(images) => images,
        Err(e) => {
            let again = block_on(pin::pin(data, &Fixed(digest), Mode::Pin)).unwrap_err();
            assert_eq!(again, e);
            assert!(e.line() >= 1);
            return;
        }
    };
    let src = std::str::from_utf8(data).expect("parsed input is UTF-8");
    for img in &images {
        assert!(img.line >= 1 && img.column >= 1);
        if img.reference.is_ok() {
            assert!(img.span.is_some(), "a valid reference must be editable");
        }
        let Some(span) = img.span.clone() else {
            continue;
        };
        let token = src.get(span).expect("span on character boundaries");
        match img.quoting.expect("a scalar has a quoting") {
            Quoting::Plain => assert_eq!(token, img.text),
            Quoting::Single => {
                let inner = token.strip_prefix('\'').and_then(|t| t.strip_suffix('\''));
                let inner = inner.expect("single-quoted token");
                // Line breaks inside quotes fold (with the white space around them) when
                // decoded; such a value always holds a space or a newline, never a reference.
                if !inner.contains(['\n', '\r']) {
                    assert_eq!(inner.replace("''", "'"), img.text);
                }
            }
            Quoting::Double => {
                let inner = token.strip_prefix('"').and_then(|t| t.strip_suffix('"'));
                let inner = inner.expect("double-quoted token");
                if !inner.contains(['\\', '\n', '\r']) {
                    assert_eq!(inner, img.text);
                }
            }
            // A one-line `>-` / `|-` block scalar: the span is the content text itself.
            Quoting::Block => assert_eq!(token, img.text),
        }
    }

    // Nothing to change: the input back, byte for byte.
    let checked = block_on(pin::pin(data, &Fixed(digest.clone()), Mode::Check)).unwrap();
    assert_eq!(checked.output, data);
    assert!(!checked.changed());
    assert!(checked.unified_diff("a", "b").is_empty());
    let failed = block_on(pin::pin(data, &Failing, Mode::Pin)).unwrap();
    assert_eq!(failed.output, data);
    assert!(!failed.changed());
    assert_eq!(failed.images.len(), images.len());

    let out = block_on(pin::pin(data, &Fixed(digest.clone()), Mode::Pin)).unwrap();
    assert_eq!(out.images.len(), images.len());
    if !out.changed() {
        assert_eq!(out.output, data);
        return;
    }
    assert!(out.unified_diff("a", "b").starts_with("--- a\n+++ b\n@@ "));
    let again = pin::find_images(&out.output).expect("the rewrite stays valid YAML");
    assert_eq!(again.len(), images.len());
    for (before, after) in out.images.iter().zip(&again) {
        assert_eq!(before.image.object, after.object);
        assert_eq!(
            (before.image.field, before.image.index),
            (after.field, after.index)
        );
        match &before.status {
            Status::Pinned { digest: d, text } if before.image.span.is_some() => {
                assert_eq!(&after.text, text);
                let r = after
                    .reference
                    .as_ref()
                    .expect("pinned text is a reference");
                assert_eq!(r.digest(), Some(d));
            }
            _ => assert_eq!(after.text, before.image.text),
        }
    }
    // Idempotent: what was pinned is now verified, never rewritten again.
    let twice = block_on(pin::pin(&out.output, &Fixed(digest), Mode::Pin)).unwrap();
    assert!(!twice.changed());
    assert_eq!(twice.output, out.output);
}
