//! Kubernetes `AdmissionReview` (`admission.k8s.io/v1`) for a validating webhook: a review in,
//! the response the API server expects out, on plain `serde_json::Value`s.
//!
//! The object is evaluated with [`Policy::evaluate`] at its namespace's Pod Security level (from
//! the policy's per-namespace levels; the request's namespace counts, as the API server sets it
//! on the object). Findings at `enforce` deny the request (HTTP code 403 in the response
//! status, one message naming every rule, container and reason); `warn` findings become
//! `warnings`; `audit` findings are only returned in [`Decision`] for the caller to log and
//! count, and as the `audit-violations` audit annotation.
//!
//! Not evaluated (allowed at once, as Pod Security Admission does): `DELETE` and `CONNECT`,
//! subresources other than `ephemeralcontainers` (`status`, `scale`, `binding`...), and
//! `UPDATE`s that leave every pod spec and pod annotations unchanged (a label edit must not be
//! refused because of a pod that was admitted earlier).

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use crate::rules::{Finding, Mode, Policy};
use crate::{Exemption, FactRequest, Facts, Mutation, workloads};

/// The API group and version of the reviews this module reads and writes.
pub const API_VERSION: &str = "admission.k8s.io/v1";

/// The longest warning the API server keeps whole (it truncates longer ones).
pub const MAX_WARNING_LEN: usize = 120;

/// The longest deny message (longer ones are cut, with a count of what was left out).
const MAX_MESSAGE_LEN: usize = 4096;

/// At most this many warnings per response (the API server also caps the total).
const MAX_WARNINGS: usize = 32;

/// A review that cannot be answered: the HTTP layer answers 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    /// Not an `admission.k8s.io/v1` `AdmissionReview`.
    #[error("not an admission.k8s.io/v1 AdmissionReview: {0}")]
    NotAReview(String),
    /// A required field of `request` is missing or of the wrong type.
    #[error("request.{field}: {problem}")]
    Field {
        /// The field (`uid`, `operation`, `object`).
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// Why a request was allowed without evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// `DELETE` or `CONNECT`.
    Operation,
    /// A subresource other than `ephemeralcontainers`.
    Subresource,
    /// An `UPDATE` that changes no pod spec or pod annotations.
    UnchangedPods,
}

impl Skip {
    /// `operation`, `subresource` or `unchanged-pods`.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Operation => "operation",
            Skip::Subresource => "subresource",
            Skip::UnchangedPods => "unchanged-pods",
        }
    }
}

/// What was decided about one request, for the caller's log and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// `request.uid`.
    pub uid: String,
    /// `request.kind.kind` (`Pod`, `Deployment`).
    pub kind: String,
    /// `request.namespace`, if any.
    pub namespace: Option<String>,
    /// `request.name`, or the object's `metadata.name` / `generateName`.
    pub name: String,
    /// `request.operation`.
    pub operation: String,
    /// `request.userInfo.username`, if any.
    pub username: Option<String>,
    /// Whether the request is allowed.
    pub allowed: bool,
    /// Every finding (all modes), Pod Security findings dropped when [`Decision::exempt`].
    pub findings: Vec<Finding>,
    /// The Pod Security exemption that applied.
    pub exempt: Option<Exemption>,
    /// Why nothing was evaluated.
    pub skipped: Option<Skip>,
}

impl Decision {
    /// The findings of one mode.
    pub fn with_mode(&self, mode: Mode) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.mode == mode)
    }

    /// The distinct rules that fired, in order of first finding.
    pub fn rules(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for f in &self.findings {
            if !out.contains(&f.rule.as_str()) {
                out.push(&f.rule);
            }
        }
        out
    }
}

/// A review's answer: the `AdmissionReview` to send back, and the decision.
#[derive(Debug, Clone)]
pub struct Reviewed {
    /// `{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {...}}`.
    pub response: Value,
    /// What was decided.
    pub decision: Decision,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

/// Answers a validating webhook's `AdmissionReview` with `policy` (see the module
/// documentation), without the rules that need facts about images. `exemptions` of the policy
/// exempt requests from the Pod Security checks (not from the image or hygiene rules).
pub fn review(policy: &Policy, review: &Value) -> Result<Reviewed, ReviewError> {
    Ok(Request::parse(review)?.validate(policy, None))
}

/// A parsed `AdmissionReview` request, between reading it and answering it: the caller asks
/// what facts it needs ([`Request::fact_requests`], [`Request::mutations`]), finds them out,
/// and answers with [`Request::validate`] or [`Request::mutate`].
#[derive(Debug, Clone)]
pub struct Request<'a> {
    decision: Decision,
    /// The object to evaluate (its namespace set from the request); `None` when skipped.
    object: Option<Cow<'a, Value>>,
    /// `request.oldObject` of an UPDATE.
    old: Option<&'a Value>,
    /// `request.subResource`, empty when none.
    sub: &'a str,
}

impl<'a> Request<'a> {
    /// Reads and checks a review.
    pub fn parse(review: &'a Value) -> Result<Request<'a>, ReviewError> {
        parse(review)
    }

    /// What was decided so far (nothing evaluated yet: allowed, no findings).
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// The object to evaluate, `None` when the request is not evaluated
    /// ([`Decision::skipped`]).
    pub fn object(&self) -> Option<&Value> {
        self.object.as_deref()
    }

    /// What [`Request::validate`] needs to know about the object's images.
    pub fn fact_requests(&self, policy: &Policy) -> Vec<FactRequest> {
        self.object()
            .map(|o| policy.fact_requests(o))
            .unwrap_or_default()
    }

    /// The images [`Request::mutate`] changes. On an UPDATE only images that differ from the
    /// old object's (an unrelated edit must not roll a workload by pinning it), and on the
    /// `ephemeralcontainers` subresource only ephemeral containers (the API server refuses
    /// any other change there).
    pub fn mutations(&self, policy: &Policy) -> Vec<Mutation> {
        let Some(object) = self.object() else {
            return Vec::new();
        };
        let mut out = policy.mutations(object);
        if self.sub == "ephemeralcontainers" {
            out.retain(|m| m.container.kind == crate::ContainerKind::Ephemeral);
        }
        if let Some(old) = self.old {
            out.retain(|m| old.pointer(&m.pointer).and_then(Value::as_str) != Some(&m.from));
        }
        out
    }

    /// The validating webhook's answer; the rules that need facts run when `facts` is given.
    pub fn validate(self, policy: &Policy, facts: Option<&Facts>) -> Reviewed {
        let Request {
            mut decision,
            object,
            ..
        } = self;
        let Some(object) = object else {
            return answer(decision);
        };
        let object: &Value = &object;
        let mut findings = match facts {
            Some(f) => policy.evaluate_with(object, f),
            None => policy.evaluate(object),
        };
        let exempt = workloads(object).first().and_then(|w| {
            policy.exemptions.check_pod(
                decision.namespace.as_deref().unwrap_or(""),
                decision.username.as_deref(),
                w.spec,
            )
        });
        if exempt.is_some() {
            findings.retain(|f| f.category != crate::Category::Pss);
        }
        decision.exempt = exempt;
        decision.allowed = !findings.iter().any(|f| f.mode == Mode::Enforce);
        decision.findings = findings;
        answer(decision)
    }

    /// The mutating webhook's answer: always allowed (refusing is the validating webhook's
    /// job), with a JSONPatch replacing each image of [`Request::mutations`] by its result
    /// from `facts`, and a warning for each image that could not be pinned (left as it was,
    /// or only rewritten to the cache).
    pub fn mutate(self, policy: &Policy, facts: &Facts) -> Mutated {
        let mutations = self.mutations(policy);
        let mut ops = Vec::new();
        let mut warns = Vec::new();
        let mut changed = Vec::new();
        for m in &mutations {
            let to = match m.result(facts) {
                Ok(t) => t,
                Err(e) => {
                    warns.push(cut(
                        &format!(
                            "[mutate] container {:?}: image {:?} not pinned: {e}",
                            m.container.name, m.to
                        ),
                        MAX_WARNING_LEN - 1,
                    ));
                    m.to.clone()
                }
            };
            if to != m.from {
                ops.push(json!({"op": "replace", "path": m.pointer, "value": to}));
                changed.push((m.clone(), to));
            }
        }
        warns.truncate(MAX_WARNINGS);
        let mut resp = Map::new();
        resp.insert("uid".into(), Value::String(self.decision.uid.clone()));
        resp.insert("allowed".into(), Value::Bool(true));
        if !ops.is_empty() {
            use base64::Engine as _;
            let patch = serde_json::to_vec(&Value::Array(ops)).unwrap_or_default();
            resp.insert("patchType".into(), Value::String("JSONPatch".into()));
            resp.insert(
                "patch".into(),
                Value::String(base64::engine::general_purpose::STANDARD.encode(patch)),
            );
        }
        if !warns.is_empty() {
            resp.insert("warnings".into(), json!(warns));
        }
        Mutated {
            response: json!({
                "apiVersion": API_VERSION,
                "kind": "AdmissionReview",
                "response": Value::Object(resp),
            }),
            decision: self.decision,
            changed,
            unpinned: warns.len(),
        }
    }
}

/// The mutating webhook's answer.
#[derive(Debug, Clone)]
pub struct Mutated {
    /// The `AdmissionReview` to send back.
    pub response: Value,
    /// The request (allowed; no findings).
    pub decision: Decision,
    /// Each image changed, with its new text.
    pub changed: Vec<(Mutation, String)>,
    /// How many images could not be pinned.
    pub unpinned: usize,
}

fn parse(review: &Value) -> Result<Request<'_>, ReviewError> {
    if !review.is_object() {
        return Err(ReviewError::NotAReview("not a JSON object".into()));
    }
    if review.get("apiVersion").and_then(Value::as_str) != Some(API_VERSION) {
        return Err(ReviewError::NotAReview(format!(
            "apiVersion is {}",
            review.get("apiVersion").unwrap_or(&Value::Null)
        )));
    }
    if review.get("kind").and_then(Value::as_str) != Some("AdmissionReview") {
        return Err(ReviewError::NotAReview(format!(
            "kind is {}",
            review.get("kind").unwrap_or(&Value::Null)
        )));
    }
    let req = review
        .get("request")
        .filter(|r| r.is_object())
        .ok_or(ReviewError::Field {
            field: "request",
            problem: "missing or not an object",
        })?;
    let uid = match req.get("uid") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(ReviewError::Field {
                field: "uid",
                problem: "missing or not a non-empty string",
            });
        }
    };
    let operation = str_at(req, &["operation"])
        .ok_or(ReviewError::Field {
            field: "operation",
            problem: "missing or not a string",
        })?
        .to_owned();
    let namespace = str_at(req, &["namespace"])
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let username = str_at(req, &["userInfo", "username"]).map(str::to_owned);
    let object = req.get("object").filter(|o| !o.is_null());
    let kind = str_at(req, &["kind", "kind"])
        .or_else(|| object.and_then(|o| str_at(o, &["kind"])))
        .unwrap_or("")
        .to_owned();
    let name = str_at(req, &["name"])
        .filter(|s| !s.is_empty())
        .or_else(|| object.and_then(|o| str_at(o, &["metadata", "name"])))
        .or_else(|| object.and_then(|o| str_at(o, &["metadata", "generateName"])))
        .unwrap_or("")
        .to_owned();
    let mut decision = Decision {
        uid,
        kind,
        namespace,
        name,
        operation,
        username,
        allowed: true,
        findings: Vec::new(),
        exempt: None,
        skipped: None,
    };
    let subresource = str_at(req, &["subResource"]).unwrap_or("");
    decision.skipped = match decision.operation.as_str() {
        "DELETE" | "CONNECT" => Some(Skip::Operation),
        "CREATE" | "UPDATE" => {
            if !subresource.is_empty() && subresource != "ephemeralcontainers" {
                Some(Skip::Subresource)
            } else {
                None
            }
        }
        _ => {
            return Err(ReviewError::Field {
                field: "operation",
                problem: "not CREATE, UPDATE, DELETE or CONNECT",
            });
        }
    };
    let sub = str_at(req, &["subResource"]).unwrap_or("");
    let skipped = |decision| {
        Ok(Request {
            decision,
            object: None,
            old: None,
            sub,
        })
    };
    if decision.skipped.is_some() {
        return skipped(decision);
    }
    let object = object.ok_or(ReviewError::Field {
        field: "object",
        problem: "missing for CREATE or UPDATE",
    })?;
    if !object.is_object() {
        return Err(ReviewError::Field {
            field: "object",
            problem: "not a JSON object",
        });
    }
    let old = if decision.operation == "UPDATE" {
        req.get("oldObject").filter(|o| o.is_object())
    } else {
        None
    };
    if let Some(old) = old
        && pods_unchanged(old, object)
    {
        decision.skipped = Some(Skip::UnchangedPods);
        return skipped(decision);
    }
    // The API server sets the request's namespace on the object; make sure of it, so the
    // namespace's level applies even to an object sent without one.
    let obj_ns = str_at(object, &["metadata", "namespace"]);
    let mut object: Cow<'_, Value> = Cow::Borrowed(object);
    if let Some(ns) = &decision.namespace
        && obj_ns != Some(ns.as_str())
    {
        let mut o = object.clone().into_owned();
        if let Some(m) = o.as_object_mut() {
            let meta = m
                .entry("metadata")
                .or_insert_with(|| Value::Object(Map::new()));
            if !meta.is_object() {
                *meta = Value::Object(Map::new());
            }
            if let Some(meta) = meta.as_object_mut() {
                meta.insert("namespace".into(), Value::String(ns.clone()));
            }
            if m.get("kind").and_then(Value::as_str).is_none() && !decision.kind.is_empty() {
                m.insert("kind".into(), Value::String(decision.kind.clone()));
            }
        }
        object = Cow::Owned(o);
    }
    Ok(Request {
        decision,
        object: Some(object),
        old,
        sub,
    })
}

/// Whether every pod spec and pod annotations (the only metadata a check reads) of `new`
/// equal the ones at the same place in `old`.
fn pods_unchanged(old: &Value, new: &Value) -> bool {
    let (o, n) = (workloads(old), workloads(new));
    o.len() == n.len()
        && o.iter().zip(&n).all(|(a, b)| {
            a.spec == b.spec && a.metadata.get("annotations") == b.metadata.get("annotations")
        })
}

/// The findings of one mode as message parts, one per rule, object and reason (a Pod Security
/// check failing in several containers is one part naming them all):
/// `[rule] container "c": reason`, `[rule] containers "a", "b": reason`, or
/// `[rule] Kind/name: reason` for a pod-level field.
fn distinct(d: &Decision, mode: Mode) -> Vec<String> {
    let mut groups: Vec<(&Finding, Vec<&str>)> = Vec::new();
    for f in d.with_mode(mode) {
        let same = groups
            .iter_mut()
            .find(|(g, _)| g.rule == f.rule && g.object == f.object && g.reason == f.reason);
        match (same, &f.container) {
            (Some((_, names)), Some(c)) => {
                if !names.contains(&c.name.as_str()) {
                    names.push(&c.name);
                }
            }
            (Some(_), None) => {}
            (None, c) => groups.push((f, c.iter().map(|c| c.name.as_str()).collect())),
        }
    }
    groups
        .into_iter()
        .map(|(f, names)| {
            let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
            match quoted.len() {
                0 => format!("[{}] {}: {}", f.rule, f.object, f.reason),
                1 => format!("[{}] container {}: {}", f.rule, quoted[0], f.reason),
                _ => format!(
                    "[{}] containers {}: {}",
                    f.rule,
                    quoted.join(", "),
                    f.reason
                ),
            }
        })
        .collect()
}

/// Cuts `s` to at most `max` bytes (on a character boundary), ending in `...` when cut.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// The deny message: `violates Wharf policy: [rule] container "c": reason; ...`.
pub fn deny_message(d: &Decision) -> String {
    let parts = distinct(d, Mode::Enforce);
    let mut msg = String::from("violates Wharf policy: ");
    for (i, p) in parts.iter().enumerate() {
        let sep = if i == 0 { "" } else { "; " };
        if msg.len() + sep.len() + p.len() > MAX_MESSAGE_LEN {
            msg.push_str(&format!("; and {} more", parts.len() - i));
            break;
        }
        msg.push_str(sep);
        msg.push_str(p);
    }
    msg
}

/// The warnings: each `warn` finding under [`MAX_WARNING_LEN`] bytes.
pub fn warnings(d: &Decision) -> Vec<String> {
    let parts = distinct(d, Mode::Warn);
    let mut out: Vec<String> = parts
        .iter()
        .take(MAX_WARNINGS)
        .map(|p| cut(p, MAX_WARNING_LEN - 1))
        .collect();
    if parts.len() > MAX_WARNINGS {
        out.pop();
        out.push(format!(
            "and {} more warnings",
            parts.len() - MAX_WARNINGS + 1
        ));
    }
    out
}

fn answer(decision: Decision) -> Reviewed {
    let mut resp = Map::new();
    resp.insert("uid".into(), Value::String(decision.uid.clone()));
    resp.insert("allowed".into(), Value::Bool(decision.allowed));
    if !decision.allowed {
        resp.insert(
            "status".into(),
            json!({"code": 403, "reason": "Forbidden", "message": deny_message(&decision)}),
        );
    }
    let warns = warnings(&decision);
    if !warns.is_empty() {
        resp.insert("warnings".into(), json!(warns));
    }
    let audit = distinct(&decision, Mode::Audit);
    if !audit.is_empty() {
        resp.insert(
            "auditAnnotations".into(),
            json!({"audit-violations": cut(&audit.join("; "), MAX_MESSAGE_LEN)}),
        );
    }
    Reviewed {
        response: json!({
            "apiVersion": API_VERSION,
            "kind": "AdmissionReview",
            "response": Value::Object(resp),
        }),
        decision,
    }
}
