//! Pins the image references of Kubernetes YAML to digests.
//!
//! The engine is pure: bytes in, bytes out, with registry look-ups behind the [`Resolver`] trait.
//! It parses the YAML stream only to find where the images are ([`find_images`]): the `image` of
//! every container, init container and ephemeral container of Pods and every workload kind
//! (Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob,
//! PodTemplate), including inside `List` objects. It then splices the new text into the original
//! bytes at those positions and never re-serialises anything, so every other byte of the file
//! (comments, key order, indentation, quoting, line endings, a byte-order mark) is unchanged, and a
//! quoted image stays quoted with the same quote character.
//!
//! `repo:tag` becomes `repo:tag@sha256:...` (the tag stays for the reader, runtimes pull by
//! digest). An image with no tag gets the tag runtimes pull, written out: `nginx` becomes
//! `nginx:latest@sha256:...`. A reference that already has a digest is verified to still exist and
//! is never rewritten. See [`pin`].
//!
//! ```
//! # use pin::{Mode, ResolveError, Resolver, ImageRef, Status};
//! # use pin::Digest;
//! struct Fixed(Digest);
//! impl Resolver for Fixed {
//!     async fn resolve(&self, _: &ImageRef) -> Result<Digest, ResolveError> {
//!         Ok(self.0.clone())
//!     }
//!     async fn exists(&self, _: &ImageRef, d: &Digest) -> Result<bool, ResolveError> {
//!         Ok(*d == self.0)
//!     }
//! }
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let digest = Digest::sha256(b"manifest");
//! let yaml = b"kind: Pod\nspec:\n  containers:\n    - name: app\n      image: 'nginx:1.25' # web\n";
//! let out = pin::pin(yaml, &Fixed(digest.clone()), Mode::Pin).await.unwrap();
//! let want = format!("kind: Pod\nspec:\n  containers:\n    - name: app\n      image: 'nginx:1.25@{digest}' # web\n");
//! assert_eq!(String::from_utf8(out.output).unwrap(), want);
//! assert!(matches!(out.images[0].status, Status::Pinned { .. }));
//! # });
//! ```

mod json;
mod kube;
mod yaml;

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::future::Future;
use std::ops::Range;

use futures_util::future::{join, join_all};
pub use oci::Digest;

pub use json::{ALIAS_BUDGET, JsonDocument, JsonError, pointer_token, to_json};
pub use kube::{CONTAINER_FIELDS, pod_spec_path};
/// Image references are `oci`'s, the one parser of Wharf; pin relies on [`ImageRef::as_str`]
/// (the text as written) to rewrite YAML the way its author wrote it.
pub use oci::image_ref::{DEFAULT_TAG, DOCKER_HUB, ImageRef, ImageRefError};
pub use yaml::{ParseError, Quoting};

/// Looks images up in their registries. The engine calls it once per distinct reference in a
/// file; implementations that serve many files may cache.
pub trait Resolver {
    /// The digest that `image`'s tag ([`ImageRef::effective_tag`]) points to now: for a
    /// multi-platform image, the digest of the index (manifest list), never one platform's.
    fn resolve(
        &self,
        image: &ImageRef,
    ) -> impl Future<Output = Result<Digest, ResolveError>> + Send;

    /// Whether the manifest `digest` still exists in `image`'s repository. `Ok(false)` means the
    /// registry answered that it does not; errors are for everything else.
    fn exists(
        &self,
        image: &ImageRef,
        digest: &Digest,
    ) -> impl Future<Output = Result<bool, ResolveError>> + Send;
}

/// Why a [`Resolver`] could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The repository or tag does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The registry refused the credentials (or needs some and has none).
    #[error("not authorized: {0}")]
    Unauthorized(String),
    /// Anything else: network, TLS, unexpected answers.
    #[error("{0}")]
    Other(String),
}

/// Why one image could not be pinned or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// The text is not a valid image reference.
    #[error("invalid image reference {text:?}: {error}")]
    Reference {
        /// The scalar's value.
        text: String,
        /// What is wrong with it.
        error: ImageRefError,
    },
    /// The `image` value is a mapping or a sequence.
    #[error("the image is not a string")]
    NotAString,
    /// The image is written in a way the rewriter does not edit (a block scalar or a plain
    /// scalar over several lines; a one-line `>-` or `|-` block scalar is rewritten).
    #[error("image written as a {0}; write it on one line, plain or quoted, to have it pinned")]
    Unsupported(&'static str),
    /// The registry look-up failed.
    #[error("{0}")]
    Resolve(#[from] ResolveError),
}

/// What [`pin`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Resolve unpinned images and rewrite them; verify pinned ones.
    Pin,
    /// Change nothing: report unpinned images (without looking them up) and verify pinned ones.
    Check,
}

/// An image field found in the YAML.
#[derive(Debug, Clone)]
pub struct Image {
    /// The scalar's value as the YAML parser decodes it (empty for a non-string).
    pub text: String,
    /// The parsed reference, or why it is not one.
    pub reference: Result<ImageRef, ImageError>,
    /// 1-based line of the value.
    pub line: usize,
    /// 1-based column of the value, in characters.
    pub column: usize,
    /// Byte range of the scalar token in the input (quotes included), when it can be edited.
    pub span: Option<Range<usize>>,
    /// How the scalar is written.
    pub quoting: Option<Quoting>,
    /// `Kind/name` of the object holding it.
    pub object: String,
    /// `containers`, `initContainers` or `ephemeralContainers`.
    pub field: &'static str,
    /// Index in that list.
    pub index: usize,
    /// The container's name, if any.
    pub container: Option<String>,
}

impl Image {
    /// Where the image is, for messages: `Deployment/web containers[0] (app)`.
    pub fn location(&self) -> String {
        let mut s = format!("{} {}[{}]", self.object, self.field, self.index);
        if let Some(c) = &self.container {
            let _ = write!(s, " ({c})");
        }
        s
    }
}

/// Finds every image field of every workload in a YAML stream, in document order.
pub fn find_images(source: &[u8]) -> Result<Vec<Image>, ParseError> {
    let src = as_str(source)?;
    let pos = yaml::Positions::new(src);
    let tree = yaml::Tree::parse(src, &pos)?;
    let mut images = kube::find_sites(&tree)
        .into_iter()
        .map(|site| {
            let start = pos.byte(tree.start(site.node));
            let (text, quoting, span, reference) = match &tree.nodes[site.node] {
                yaml::Node::Scalar { value, style, .. } => {
                    let quoting = Quoting::from(*style);
                    let span = yaml::locate_scalar(src, start, quoting, value);
                    let reference = ImageRef::parse(value)
                        .map_err(|error| ImageError::Reference {
                            text: value.clone(),
                            error,
                        })
                        .and_then(|r| match span {
                            None if quoting == Quoting::Block => {
                                Err(ImageError::Unsupported("block scalar over several lines"))
                            }
                            None => Err(ImageError::Unsupported("multi-line scalar")),
                            Some(_) => Ok(r),
                        });
                    (value.clone(), Some(quoting), span, reference)
                }
                _ => (String::new(), None, None, Err(ImageError::NotAString)),
            };
            let (line, column) = pos.line_col(span.as_ref().map_or(start, |s| s.start));
            Image {
                text,
                reference,
                line,
                column,
                span,
                quoting,
                object: site.object,
                field: site.field,
                index: site.index,
                container: site.container,
            }
        })
        .collect::<Vec<_>>();
    // Document order (sites come out grouped by container list).
    images.sort_by_key(|i: &Image| (i.line, i.column));
    Ok(images)
}

fn as_str(source: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(source).map_err(|e| ParseError::NotUtf8 {
        line: 1 + source[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count(),
    })
}

/// What happened to one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Resolved and rewritten to `text`.
    Pinned {
        /// The digest the tag resolved to.
        digest: Digest,
        /// The new scalar value.
        text: String,
    },
    /// Already pinned, and the digest exists in the registry.
    Verified {
        /// The digest written in the file.
        digest: Digest,
    },
    /// Already pinned, but the registry no longer has that digest.
    Missing {
        /// The digest written in the file.
        digest: Digest,
    },
    /// Not pinned ([`Mode::Check`] only; not looked up).
    Unpinned,
    /// Could not be pinned or verified.
    Failed(ImageError),
}

impl Status {
    /// True when this image makes the run fail: an error or a missing digest in either mode, and
    /// an unpinned image in [`Mode::Check`].
    pub fn is_problem(&self) -> bool {
        matches!(
            self,
            Status::Missing { .. } | Status::Unpinned | Status::Failed(_)
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Pinned { digest, .. } => write!(f, "pinned to {digest}"),
            Status::Verified { digest } => write!(f, "pinned, {digest} exists"),
            Status::Missing { digest } => {
                write!(f, "pinned to {digest}, which the registry no longer has")
            }
            Status::Unpinned => f.write_str("not pinned to a digest"),
            Status::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// One image and what happened to it.
#[derive(Debug, Clone)]
pub struct ImageReport {
    /// The image field.
    pub image: Image,
    /// The result.
    pub status: Status,
}

/// The result of [`pin`] on one YAML stream.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The rewritten stream (equal to the input when nothing was pinned, and always in
    /// [`Mode::Check`]).
    pub output: Vec<u8>,
    /// Every image field, in document order.
    pub images: Vec<ImageReport>,
    input: Vec<u8>,
    edits: Vec<Edit>,
}

/// A replacement of a byte range of the input.
type Edit = (Range<usize>, String);

impl Outcome {
    /// True when the output differs from the input.
    pub fn changed(&self) -> bool {
        !self.edits.is_empty()
    }

    /// True when any image is a problem (see [`Status::is_problem`]).
    pub fn has_problems(&self) -> bool {
        self.images.iter().any(|r| r.status.is_problem())
    }

    /// The change as a unified diff with no context lines (empty when nothing changed), with
    /// `old` and `new` as the file names in the header.
    pub fn unified_diff(&self, old: &str, new: &str) -> String {
        if self.edits.is_empty() {
            return String::new();
        }
        // Inputs with edits are always UTF-8 (they were parsed).
        let src = std::str::from_utf8(&self.input).unwrap_or_default();
        let pos = yaml::Positions::new(src);
        // Group the edits by the lines they touch.
        let mut hunks: Vec<(Range<usize>, Vec<&Edit>)> = Vec::new();
        for e in &self.edits {
            let first = pos.line_range(e.0.start);
            let last = pos.line_range(e.0.end.saturating_sub(1).max(e.0.start));
            let lines = first.start..last.end;
            match hunks.last_mut() {
                Some((r, es)) if lines.start < r.end => {
                    r.end = r.end.max(lines.end);
                    es.push(e);
                }
                _ => hunks.push((lines, vec![e])),
            }
        }
        let mut out = format!("--- {old}\n+++ {new}\n");
        let mut shift: isize = 0;
        for (lines, es) in hunks {
            let old_text = &src[lines.clone()];
            let mut new_text = String::new();
            let mut at = lines.start;
            for (r, t) in es {
                new_text.push_str(&src[at..r.start]);
                new_text.push_str(t);
                at = r.end;
            }
            new_text.push_str(&src[at..lines.end]);
            let old_start = pos.line_col(lines.start).0;
            let old_n = count_lines(old_text);
            let new_n = count_lines(&new_text);
            let new_start = old_start as isize + shift;
            shift += new_n as isize - old_n as isize;
            let _ = writeln!(out, "@@ -{old_start},{old_n} +{new_start},{new_n} @@");
            push_lines(&mut out, '-', old_text);
            push_lines(&mut out, '+', &new_text);
        }
        out
    }
}

fn count_lines(s: &str) -> usize {
    s.split_inclusive('\n').count()
}

fn push_lines(out: &mut String, sign: char, text: &str) {
    for l in text.split_inclusive('\n') {
        out.push(sign);
        out.push_str(l);
        if !l.ends_with('\n') {
            out.push_str("\n\\ No newline at end of file\n");
        }
    }
}

/// Pins (or, in [`Mode::Check`], checks) every image of a Kubernetes YAML stream.
///
/// Each distinct reference is looked up once, concurrently. Unpinned images are resolved and
/// rewritten in [`Mode::Pin`]; pinned ones are verified in both modes and never rewritten. Only
/// the bytes of rewritten image scalars change. Fails only when the input is not YAML (or not
/// UTF-8); per-image problems are in [`Outcome::images`].
pub async fn pin<R: Resolver>(
    source: &[u8],
    resolver: &R,
    mode: Mode,
) -> Result<Outcome, ParseError> {
    let images = find_images(source)?;

    // Distinct look-ups.
    let mut to_resolve: Vec<ImageRef> = Vec::new();
    let mut to_verify: Vec<(ImageRef, Digest)> = Vec::new();
    for img in &images {
        let Ok(r) = &img.reference else { continue };
        match r.digest() {
            Some(d) if !to_verify.iter().any(|(x, _)| x.as_str() == r.as_str()) => {
                to_verify.push((r.clone(), d.clone()));
            }
            None if mode == Mode::Pin && !to_resolve.iter().any(|x| x.as_str() == r.as_str()) => {
                to_resolve.push(r.clone());
            }
            _ => {}
        }
    }
    let (resolved, verified) = join(
        join_all(to_resolve.iter().map(|r| resolver.resolve(r))),
        join_all(to_verify.iter().map(|(r, d)| resolver.exists(r, d))),
    )
    .await;
    let resolved: HashMap<String, Result<Digest, ResolveError>> = to_resolve
        .into_iter()
        .map(|r| r.as_str().to_owned())
        .zip(resolved)
        .collect();
    let verified: HashMap<String, Result<bool, ResolveError>> = to_verify
        .into_iter()
        .map(|(r, _)| r.as_str().to_owned())
        .zip(verified)
        .collect();

    let mut edits = Vec::new();
    let mut reports = Vec::with_capacity(images.len());
    for image in images {
        let status = match &image.reference {
            Err(e) => Status::Failed(e.clone()),
            Ok(r) => match r.digest() {
                Some(d) => match &verified[r.as_str()] {
                    Ok(true) => Status::Verified { digest: d.clone() },
                    Ok(false) => Status::Missing { digest: d.clone() },
                    Err(e) => Status::Failed(e.clone().into()),
                },
                None if mode == Mode::Check => Status::Unpinned,
                None => match &resolved[r.as_str()] {
                    Ok(d) => {
                        let text = r.pinned_text(d);
                        if let (Some(span), Some(q)) = (&image.span, image.quoting) {
                            edits.push((span.clone(), quote(q, &text)));
                        }
                        Status::Pinned {
                            digest: d.clone(),
                            text,
                        }
                    }
                    Err(e) => Status::Failed(e.clone().into()),
                },
            },
        };
        reports.push(ImageReport { image, status });
    }
    edits.sort_by_key(|(r, _)| r.start);
    let output = splice(source, &edits);
    Ok(Outcome {
        output,
        images: reports,
        input: source.to_vec(),
        edits,
    })
}

/// The scalar token for `text` in the given quoting. Valid references contain no character that
/// needs escaping or quoting in any style (no space, quote, backslash, `#`, `,` or bracket).
fn quote(q: Quoting, text: &str) -> String {
    match q {
        Quoting::Single => format!("'{text}'"),
        Quoting::Double => format!("\"{text}\""),
        Quoting::Plain | Quoting::Block => text.to_owned(),
    }
}

/// Replaces the (sorted, disjoint) byte ranges of `src`.
fn splice(src: &[u8], edits: &[Edit]) -> Vec<u8> {
    let grow: usize = edits.iter().map(|(_, t)| t.len()).sum();
    let mut out = Vec::with_capacity(src.len() + grow);
    let mut at = 0;
    for (r, t) in edits {
        out.extend_from_slice(&src[at..r.start]);
        out.extend_from_slice(t.as_bytes());
        at = r.end;
    }
    out.extend_from_slice(&src[at..]);
    out
}
