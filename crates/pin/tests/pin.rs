//! The engine against a fake registry: the shared example manifests, tricky YAML, and properties
//! (only image scalars change; pinning twice changes nothing).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;

use pin::{Digest, ImageError, ImageRef, Mode, Outcome, Quoting, ResolveError, Resolver, Status};
use proptest::prelude::*;

/// A registry in memory: every tag resolves to sha256(canonical name) unless listed as missing or
/// failing; every digest exists unless listed as gone. Counts look-ups.
#[derive(Default)]
struct Fake {
    unknown: HashSet<String>,
    failing: HashSet<String>,
    gone: HashSet<Digest>,
    calls: Mutex<HashMap<String, usize>>,
}

impl Fake {
    fn digest_of(image: &ImageRef) -> Digest {
        Digest::sha256(
            format!(
                "{}/{}:{}",
                image.registry(),
                image.repository(),
                image.effective_tag()
            )
            .as_bytes(),
        )
    }

    fn count(&self, key: String) {
        *self.calls.lock().unwrap().entry(key).or_default() += 1;
    }

    fn calls(&self) -> HashMap<String, usize> {
        self.calls.lock().unwrap().clone()
    }
}

impl Resolver for Fake {
    async fn resolve(&self, image: &ImageRef) -> Result<Digest, ResolveError> {
        // Counted by the text as written (`Display` is the normalised form).
        self.count(format!("resolve {}", image.as_str()));
        if self.failing.contains(image.as_str()) {
            return Err(ResolveError::Unauthorized(format!(
                "{} wants credentials",
                image.registry()
            )));
        }
        if self.unknown.contains(image.as_str()) {
            return Err(ResolveError::NotFound(image.canonical()));
        }
        Ok(Fake::digest_of(image))
    }

    async fn exists(&self, image: &ImageRef, digest: &Digest) -> Result<bool, ResolveError> {
        self.count(format!("exists {}", image.as_str()));
        Ok(!self.gone.contains(digest))
    }
}

fn run(src: &[u8], r: &Fake, mode: Mode) -> Outcome {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(pin::pin(src, r, mode))
        .unwrap_or_else(|e| panic!("pin failed: {e}"))
}

fn pin_str(src: &str) -> (String, Outcome) {
    let out = run(src.as_bytes(), &Fake::default(), Mode::Pin);
    (String::from_utf8(out.output.clone()).unwrap(), out)
}

fn d(s: &str) -> Digest {
    Fake::digest_of(&ImageRef::parse(s).unwrap())
}

/// Applies (old, new) text replacements, each of which must occur exactly once.
fn expect(src: &str, changes: &[(&str, String)]) -> String {
    let mut s = src.to_owned();
    for (old, new) in changes {
        assert_eq!(s.matches(old).count(), 1, "{old:?} not unique in\n{s}");
        s = s.replacen(old, new, 1);
    }
    s
}

fn examples_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/examples");
    assert!(
        dir.is_dir(),
        "{} is missing: the shared/ folder must sit beside the repository",
        dir.display()
    );
    dir
}

fn example(name: &str) -> String {
    let p = examples_dir().join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

// ---------------------------------------------------------------------------------------------
// The shared examples
// ---------------------------------------------------------------------------------------------

#[test]
fn example_my_app_deployment() {
    let src = example("my-app-deployment.yaml");
    let (got, out) = pin_str(&src);
    let want = expect(
        &src,
        &[(
            "image: my-registry/my-app:v1.0\n",
            format!(
                "image: my-registry/my-app:v1.0@{}\n",
                d("docker.io/my-registry/my-app:v1.0")
            ),
        )],
    );
    assert_eq!(got, want);
    assert_eq!(out.images.len(), 1);
    let img = &out.images[0].image;
    assert_eq!(
        (img.line, img.column, img.object.as_str()),
        (21, 18, "Deployment/my-app")
    );
    assert_eq!(img.location(), "Deployment/my-app containers[0] (my-app)");
}

#[test]
fn example_drift_and_latest() {
    let src = example("drift-and-latest.yaml");
    let (got, out) = pin_str(&src);
    let want = expect(
        &src,
        &[
            (
                "migrate:1.4.2   # keep",
                format!(
                    "migrate:1.4.2@{}   # keep",
                    d("my-registry/tools/migrate:1.4.2")
                ),
            ),
            (
                "api:2.3.1\n",
                format!("api:2.3.1@{}\n", d("my-registry/platform/api:2.3.1")),
            ),
            (
                "api:2.2.0\n",
                format!("api:2.2.0@{}\n", d("my-registry/platform/api:2.2.0")),
            ),
            (
                "image: nginx\n",
                format!("image: nginx:latest@{}\n", d("nginx")),
            ),
            (
                "python:latest\n",
                format!("python:latest@{}\n", d("python:latest")),
            ),
        ],
    );
    assert_eq!(got, want);
    let found: Vec<(&str, &str, usize)> = out
        .images
        .iter()
        .map(|r| (r.image.object.as_str(), r.image.field, r.image.line))
        .collect();
    assert_eq!(
        found,
        [
            ("Deployment/billing", "initContainers", 15),
            ("Deployment/billing", "containers", 18),
            ("StatefulSet/ledger", "containers", 36),
            ("StatefulSet/ledger", "containers", 38),
            ("CronJob/nightly-report", "containers", 53),
        ]
    );
}

#[test]
fn example_privileged_pod() {
    let src = example("privileged-pod.yaml");
    let (got, _) = pin_str(&src);
    let want = expect(
        &src,
        &[(
            "image: busybox:1.36\n",
            format!("image: busybox:1.36@{}\n", d("busybox:1.36")),
        )],
    );
    assert_eq!(got, want);
}

#[test]
fn every_example_is_idempotent_and_checks_clean_once_pinned() {
    for e in std::fs::read_dir(examples_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        let src = std::fs::read(&p).unwrap();
        let fake = Fake::default();
        let before = run(&src, &fake, Mode::Check);
        assert!(before.has_problems(), "{}: unpinned but clean", p.display());
        assert_eq!(before.output, src);
        let once = run(&src, &fake, Mode::Pin);
        assert!(!once.has_problems(), "{}", p.display());
        let twice = run(&once.output, &fake, Mode::Pin);
        assert_eq!(twice.output, once.output, "{}", p.display());
        assert!(!twice.changed());
        assert!(
            twice
                .images
                .iter()
                .all(|r| matches!(r.status, Status::Verified { .. })),
            "{}",
            p.display()
        );
        let check = run(&once.output, &fake, Mode::Check);
        assert!(!check.has_problems(), "{}", p.display());
    }
}

// ---------------------------------------------------------------------------------------------
// Tricky YAML
// ---------------------------------------------------------------------------------------------

#[test]
fn comments_quotes_flow_and_block_scalars() {
    let src = r#"# top comment
apiVersion: v1
kind: Pod
metadata:
  name: tricky   # trailing
  annotations:
    note: |
      image: not-an-image:1   # inside a block scalar, untouched
    other: >-
      folded
spec:
  containers:
    - {name: a, image: alpine:3.20}   # flow mapping
    - name: b
      image: 'quay.io/org/b:1'  # single quoted
    - name: c
      image: "ghcr.io/org/c:2"
    - name: d
      image:   registry.example.com:5000/team/d:3 #spaces
  initContainers: [{name: i, image: "i:1" }, {image: 'j', name: j}]
  ephemeralContainers:
    - name: debug
      image: &dbg busybox:1.36
"#;
    let (got, out) = pin_str(src);
    let want = expect(
        src,
        &[
            (
                "image: alpine:3.20}",
                format!("image: alpine:3.20@{}}}", d("alpine:3.20")),
            ),
            (
                "'quay.io/org/b:1'",
                format!("'quay.io/org/b:1@{}'", d("quay.io/org/b:1")),
            ),
            (
                "\"ghcr.io/org/c:2\"",
                format!("\"ghcr.io/org/c:2@{}\"", d("ghcr.io/org/c:2")),
            ),
            (
                "team/d:3 #spaces",
                format!(
                    "team/d:3@{} #spaces",
                    d("registry.example.com:5000/team/d:3")
                ),
            ),
            ("\"i:1\"", format!("\"i:1@{}\"", d("i:1"))),
            ("'j'", format!("'j:latest@{}'", d("j"))),
            (
                "&dbg busybox:1.36",
                format!("&dbg busybox:1.36@{}", d("busybox:1.36")),
            ),
        ],
    );
    assert_eq!(got, want);
    let q: Vec<Option<Quoting>> = out.images.iter().map(|r| r.image.quoting).collect();
    assert_eq!(
        q,
        [
            Some(Quoting::Plain),
            Some(Quoting::Single),
            Some(Quoting::Double),
            Some(Quoting::Plain),
            Some(Quoting::Double),
            Some(Quoting::Single),
            Some(Quoting::Plain)
        ]
    );
}

#[test]
fn crlf_bom_document_markers_and_lists() {
    let src = "\u{feff}# Source: chart/templates/a.yaml\r\n---\r\napiVersion: apps/v1\r\nkind: DaemonSet\r\nmetadata: {name: ds}\r\nspec:\r\n  template:\r\n    spec:\r\n      containers:\r\n      - name: x\r\n        image: x:1\r\n...\r\n---\r\n# empty document\r\n---\r\napiVersion: v1\r\nkind: List\r\nitems:\r\n- apiVersion: batch/v1\r\n  kind: Job\r\n  metadata: {name: j}\r\n  spec:\r\n    template:\r\n      spec:\r\n        containers: [{name: y, image: \"y:2\"}]\r\n- apiVersion: v1\r\n  kind: ReplicationController\r\n  spec: {template: {spec: {containers: [{image: z}]}}}\r\n- apiVersion: v1\r\n  kind: PodTemplate\r\n  template:\r\n    spec:\r\n      containers:\r\n      - image: t:1\r\n...\r\n";
    let (got, out) = pin_str(src);
    let want = expect(
        src,
        &[
            ("image: x:1\r\n", format!("image: x:1@{}\r\n", d("x:1"))),
            ("\"y:2\"", format!("\"y:2@{}\"", d("y:2"))),
            ("image: z}", format!("image: z:latest@{}}}", d("z"))),
            ("image: t:1\r\n", format!("image: t:1@{}\r\n", d("t:1"))),
        ],
    );
    assert_eq!(got, want);
    assert!(got.starts_with('\u{feff}'));
    let objects: Vec<&str> = out.images.iter().map(|r| r.image.object.as_str()).collect();
    assert_eq!(
        objects,
        [
            "DaemonSet/ds",
            "Job/j",
            "ReplicationController/",
            "PodTemplate/"
        ]
    );
    assert_eq!(out.images[0].image.line, 11);
    assert_eq!(out.images[0].image.column, 16);
}

#[test]
fn anchors_aliases_and_merge_keys() {
    // The container is anchored in one workload and reused by alias in another: one site, one
    // edit, at the anchor. A merge key brings an image into a third.
    let src = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec:\n  template:\n    spec:\n      containers:\n        - &app\n          name: app\n          image: app:1 # shared\n        - *app\n---\napiVersion: v1\nkind: List\nitems:\n  - &pod\n    kind: Pod\n    spec:\n      containers:\n        - <<: {image: merged:1, name: m}\n        - <<: [{name: n}, {image: merged:2}]\n          name: o\n        - <<: {image: hidden:1}\n          image: explicit:1\n  - *pod\n";
    let fake = Fake::default();
    let out = run(src.as_bytes(), &fake, Mode::Pin);
    let got = String::from_utf8(out.output.clone()).unwrap();
    let want = expect(
        src,
        &[
            ("app:1 #", format!("app:1@{} #", d("app:1"))),
            ("merged:1,", format!("merged:1@{},", d("merged:1"))),
            ("merged:2}", format!("merged:2@{}}}", d("merged:2"))),
            ("explicit:1\n", format!("explicit:1@{}\n", d("explicit:1"))),
        ],
    );
    assert_eq!(got, want);
    assert_eq!(out.images.len(), 4);
    assert!(got.contains("hidden:1}"), "overridden merge value touched");
    // One look-up per distinct reference.
    assert!(fake.calls().values().all(|&n| n == 1), "{:?}", fake.calls());
}

#[test]
fn every_workload_kind() {
    let pod_spec = "containers: [{name: c, image: c:1}]\ninitContainers: [{name: i, image: i:1}]\nephemeralContainers: [{name: e, image: e:1}]";
    let cases = [
        ("v1", "Pod", "spec"),
        ("v1", "PodTemplate", "template.spec"),
        ("v1", "ReplicationController", "spec.template.spec"),
        ("apps/v1", "Deployment", "spec.template.spec"),
        ("apps/v1", "StatefulSet", "spec.template.spec"),
        ("apps/v1", "DaemonSet", "spec.template.spec"),
        ("apps/v1", "ReplicaSet", "spec.template.spec"),
        ("extensions/v1beta1", "Deployment", "spec.template.spec"),
        ("batch/v1", "Job", "spec.template.spec"),
        ("batch/v1", "CronJob", "spec.jobTemplate.spec.template.spec"),
    ];
    for (api, kind, path) in cases {
        // Nest the pod spec under the path, one indentation level per key.
        let mut doc = format!("apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: x\n");
        let keys: Vec<&str> = path.split('.').collect();
        for (depth, k) in keys.iter().enumerate() {
            doc.push_str(&format!("{}{k}:\n", "  ".repeat(depth)));
        }
        for line in pod_spec.lines() {
            doc.push_str(&format!("{}{line}\n", "  ".repeat(keys.len())));
        }
        let images = pin::find_images(doc.as_bytes()).unwrap();
        let found: Vec<(&str, &str)> = images.iter().map(|i| (i.field, i.text.as_str())).collect();
        assert_eq!(
            found,
            [
                ("containers", "c:1"),
                ("initContainers", "i:1"),
                ("ephemeralContainers", "e:1")
            ],
            "{api} {kind}:\n{doc}"
        );
        assert_eq!(images[0].object, format!("{kind}/x"));
        // The same document in a List, and under another API group: found, and not found.
        let list = format!(
            "apiVersion: v1\nkind: List\nitems:\n{}",
            doc.lines()
                .enumerate()
                .map(|(n, l)| format!("{}{l}\n", if n == 0 { "- " } else { "  " }))
                .collect::<String>()
        );
        assert_eq!(
            pin::find_images(list.as_bytes()).unwrap().len(),
            3,
            "{list}"
        );
        let crd = doc.replace(&format!("apiVersion: {api}"), "apiVersion: example.com/v1");
        assert!(
            pin::find_images(crd.as_bytes()).unwrap().is_empty(),
            "{crd}"
        );
    }
}

#[test]
fn not_workloads_are_left_alone() {
    let src = "apiVersion: v1\nkind: ConfigMap\ndata:\n  image: nginx\n---\napiVersion: example.com/v1\nkind: Deployment\nspec: {template: {spec: {containers: [{image: crd:1}]}}}\n---\nkind: Pod\nspec:\n  containers:\n    - name: x\n      command: [image]\n---\n- just\n- a list\n---\nplain scalar document\n";
    let (got, out) = pin_str(src);
    assert_eq!(got, src);
    assert!(out.images.is_empty());
    assert!(!out.changed());
    assert_eq!(out.unified_diff("a", "b"), "");
}

#[test]
fn already_pinned_images_are_verified_not_rewritten() {
    let good = d("good:1");
    let gone = d("old:1");
    let src = format!(
        "kind: Pod\nspec:\n  containers:\n  - image: good:1@{good}\n  - image: 'old:1@{gone}'\n  - image: \"x@{good}\"\n  - image: new:1\n"
    );
    let mut fake = Fake::default();
    fake.gone.insert(gone.clone());
    let out = run(src.as_bytes(), &fake, Mode::Pin);
    let statuses: Vec<&Status> = out.images.iter().map(|r| &r.status).collect();
    assert_eq!(
        statuses[0],
        &Status::Verified {
            digest: good.clone()
        }
    );
    assert_eq!(statuses[1], &Status::Missing { digest: gone });
    assert_eq!(statuses[2], &Status::Verified { digest: good });
    assert!(matches!(statuses[3], Status::Pinned { .. }));
    assert!(out.has_problems());
    // Only the unpinned one changed.
    let got = String::from_utf8(out.output).unwrap();
    assert_eq!(
        got,
        expect(&src, &[("new:1\n", format!("new:1@{}\n", d("new:1")))])
    );
}

#[test]
fn check_mode_changes_nothing_and_does_not_resolve() {
    let pinned = d("a:1");
    let src = format!("kind: Pod\nspec:\n  containers:\n  - image: a:1@{pinned}\n  - image: b:1\n");
    let fake = Fake::default();
    let out = run(src.as_bytes(), &fake, Mode::Check);
    assert_eq!(out.output, src.as_bytes());
    assert!(!out.changed());
    assert_eq!(out.images[1].status, Status::Unpinned);
    assert!(out.has_problems());
    assert_eq!(
        fake.calls(),
        HashMap::from([(format!("exists a:1@{pinned}"), 1)])
    );
}

#[test]
fn unresolvable_and_invalid_images_are_reported_and_left_alone() {
    let src = "kind: Pod\nspec:\n  containers:\n  - image: private.example.com/x:1\n  - image: Upper/Case\n  - image: ''\n  - image: {a: b}\n  - image: |\n      block:1\n  - image: multi\n      line\n  - image: ok:1\n  - image: missing:1\n";
    let mut fake = Fake::default();
    fake.failing.insert("private.example.com/x:1".into());
    fake.unknown.insert("missing:1".into());
    let out = run(src.as_bytes(), &fake, Mode::Pin);
    let got = String::from_utf8(out.output.clone()).unwrap();
    assert_eq!(
        got,
        expect(src, &[("ok:1\n", format!("ok:1@{}\n", d("ok:1")))])
    );
    let s: Vec<&Status> = out.images.iter().map(|r| &r.status).collect();
    assert!(
        matches!(
            s[0],
            Status::Failed(ImageError::Resolve(ResolveError::Unauthorized(_)))
        ),
        "{s:?}"
    );
    assert!(
        matches!(s[1], Status::Failed(ImageError::Reference { .. })),
        "{s:?}"
    );
    assert!(
        matches!(s[2], Status::Failed(ImageError::Reference { .. })),
        "{s:?}"
    );
    assert_eq!(s[3], &Status::Failed(ImageError::NotAString));
    // `|` keeps the line break: not a reference.
    assert!(
        matches!(s[4], Status::Failed(ImageError::Reference { .. })),
        "{s:?}"
    );
    assert!(
        matches!(s[5], Status::Failed(ImageError::Reference { .. })),
        "{s:?}"
    );
    assert!(matches!(s[6], Status::Pinned { .. }), "{s:?}");
    assert!(
        matches!(
            s[7],
            Status::Failed(ImageError::Resolve(ResolveError::NotFound(_)))
        ),
        "{s:?}"
    );
    let lines: Vec<usize> = out.images.iter().map(|r| r.image.line).collect();
    // A block scalar is reported where its text starts.
    assert_eq!(lines, [4, 5, 6, 7, 9, 10, 12, 13]);
}

#[test]
fn syntax_errors_and_non_utf8() {
    let e = pin::find_images(b"kind: Pod\nspec: [\n").unwrap_err();
    assert!(e.to_string().contains("invalid YAML"), "{e}");
    let e = pin::find_images(b"kind: Pod\n\xff: x\n").unwrap_err();
    assert_eq!(e.line(), 2);
}

#[test]
fn diff_shows_only_the_image_lines() {
    let src = "kind: Pod\nspec:\n  containers:\n  - {image: a:1, name: a}\n  - image: b:1 # c\n  initContainers: [{image: c:1}, {image: d:1}]";
    let (_, out) = pin_str(src);
    let diff = out.unified_diff("a/pod.yaml", "b/pod.yaml");
    let want = format!(
        "--- a/pod.yaml\n+++ b/pod.yaml\n\
         @@ -4,1 +4,1 @@\n-  - {{image: a:1, name: a}}\n+  - {{image: a:1@{a}, name: a}}\n\
         @@ -5,1 +5,1 @@\n-  - image: b:1 # c\n+  - image: b:1@{b} # c\n\
         @@ -6,1 +6,1 @@\n-  initContainers: [{{image: c:1}}, {{image: d:1}}]\n\\ No newline at end of file\n\
         +  initContainers: [{{image: c:1@{c}}}, {{image: d:1@{dd}}}]\n\\ No newline at end of file\n",
        a = d("a:1"),
        b = d("b:1"),
        c = d("c:1"),
        dd = d("d:1"),
    );
    assert_eq!(diff, want);
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// A piece of YAML around the containers: comments, blank lines, unrelated keys in every style.
fn filler() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z]{1,8}".prop_map(|k| format!("{k}: v\n")),
        "[ -~&&[^'\\\\]]{0,30}".prop_map(|c| format!("# {c}\n")),
        Just("\n".to_owned()),
        Just("note: |\n  image: fake:1\n  # not a comment\n".to_owned()),
        Just("other: 'image: x:1'\n".to_owned()),
        Just("flow: {image: y:2, args: [a, \"b\"]}\n".to_owned()),
    ]
}

fn image_text() -> impl Strategy<Value = String> {
    (
        proptest::option::of(prop_oneof![
            Just("quay.io"),
            Just("localhost:5000"),
            Just("docker.io")
        ]),
        "[a-z0-9]{1,6}(/[a-z0-9]{1,6}){0,2}",
        proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,8}"),
    )
        .prop_map(|(reg, path, tag)| {
            let mut s = reg.map(|r| format!("{r}/")).unwrap_or_default();
            s.push_str(&path);
            if let Some(t) = tag {
                s.push(':');
                s.push_str(&t);
            }
            s
        })
}

fn styled(img: &str, style: u8) -> String {
    match style % 3 {
        0 => img.to_owned(),
        1 => format!("'{img}'"),
        _ => format!("\"{img}\""),
    }
}

fn document() -> impl Strategy<Value = (String, Vec<String>)> {
    (
        filler(),
        filler(),
        proptest::collection::vec((image_text(), 0u8..3, 0u8..2, filler()), 1..5),
        proptest::bool::ANY,
        proptest::bool::ANY,
    )
        .prop_map(|(head, mid, containers, crlf, comment_after)| {
            let mut s = format!("{head}apiVersion: apps/v1\nkind: Deployment\n{mid}spec:\n  template:\n    spec:\n      containers:\n");
            let mut images = Vec::new();
            for (i, (img, style, flow, after)) in containers.into_iter().enumerate() {
                let v = styled(&img, style);
                let c = if comment_after { "  # the image" } else { "" };
                if flow == 0 {
                    s.push_str(&format!("        - name: c{i}\n          image: {v}{c}\n"));
                } else {
                    s.push_str(&format!("        - {{name: c{i}, image: {v}}}{c}\n"));
                }
                if flow == 0 {
                    s.push_str(&indent(&after, 10));
                }
                images.push(img);
            }
            if crlf {
                s = s.replace('\n', "\r\n");
            }
            (s, images)
        })
}

fn indent(s: &str, n: usize) -> String {
    s.lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_owned()
            } else {
                format!("{}{l}\n", " ".repeat(n))
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Removing the inserted digests from the output gives back the input byte for byte, the
    /// output pins every image, and pinning again changes nothing.
    #[test]
    fn only_image_scalars_change((src, images) in document()) {
        let fake = Fake::default();
        let out = run(src.as_bytes(), &fake, Mode::Pin);
        prop_assert!(!out.has_problems(), "{:?}", out.images);
        prop_assert_eq!(out.images.len(), images.len());
        let got = String::from_utf8(out.output.clone()).unwrap();
        let mut undone = got.clone();
        for img in &images {
            let r = ImageRef::parse(img).unwrap();
            let digest = Fake::digest_of(&r);
            let added = if r.tag().is_none() {
                format!(":latest@{digest}")
            } else {
                format!("@{digest}")
            };
            prop_assert!(got.contains(&format!("{img}{added}")), "{} not pinned in\n{}", img, got);
            undone = undone.replacen(&format!("{img}{added}"), img, 1);
        }
        prop_assert_eq!(&undone, &src);

        let again = run(&out.output, &fake, Mode::Pin);
        prop_assert_eq!(&again.output, &out.output);
        let all_verified = again.images.iter().all(|r| matches!(r.status, Status::Verified { .. }));
        prop_assert!(all_verified);
        let check = run(&out.output, &fake, Mode::Check);
        prop_assert!(!check.has_problems());
    }

    /// Any input: no panic, and either a parse error or an output that differs from the input
    /// only in the tokens of pinned images (putting the old tokens back gives the input).
    #[test]
    fn arbitrary_input_changes_only_pinned_tokens(
        src in "(kind: Pod\nspec:\n  containers:\n)?([ -~]{0,40}\n?){0,8}"
    ) {
        let fake = Fake::default();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        if let Ok(out) = rt.block_on(pin::pin(src.as_bytes(), &fake, Mode::Pin)) {
            prop_assert_eq!(unpin(&out, src.as_bytes()), src.as_bytes());
        }
    }
}

/// Puts the old token of every pinned image back into the output.
fn unpin(out: &Outcome, input: &[u8]) -> Vec<u8> {
    let mut pinned: Vec<(std::ops::Range<usize>, String)> = out
        .images
        .iter()
        .filter_map(|r| match (&r.status, &r.image.span, r.image.quoting) {
            (Status::Pinned { text, .. }, Some(sp), Some(q)) => Some((
                sp.clone(),
                match q {
                    Quoting::Single => format!("'{text}'"),
                    Quoting::Double => format!("\"{text}\""),
                    _ => text.clone(),
                },
            )),
            _ => None,
        })
        .collect();
    pinned.sort_by_key(|(sp, _)| sp.start);
    let o = &out.output;
    let (mut res, mut in_at, mut out_at) = (Vec::new(), 0, 0);
    for (sp, tok) in pinned {
        let gap = sp.start - in_at;
        res.extend_from_slice(&o[out_at..out_at + gap]);
        out_at += gap;
        assert_eq!(&o[out_at..out_at + tok.len()], tok.as_bytes());
        res.extend_from_slice(&input[sp.clone()]);
        out_at += tok.len();
        in_at = sp.end;
    }
    res.extend_from_slice(&o[out_at..]);
    res
}

#[test]
fn one_line_block_scalars_are_pinned_keeping_their_style() {
    let src = "kind: Pod\nspec:\n  containers:\n  - name: a\n    image: >-\n      a:1\n  - name: b\n    image: |- # the app\n      b:1\n    ports: []\n  initContainers:\n  - image: >2-\n      c:1\r\n  - image: >-\n      d:1\n      more\n  - image: |\n      e:1\n";
    let (got, out) = pin_str(src);
    let want = expect(
        src,
        &[
            ("      a:1\n", format!("      a:1@{}\n", d("a:1"))),
            ("      b:1\n", format!("      b:1@{}\n", d("b:1"))),
            ("      c:1\r\n", format!("      c:1@{}\r\n", d("c:1"))),
        ],
    );
    assert_eq!(got, want);
    let s: Vec<(&str, &Status)> = out
        .images
        .iter()
        .map(|r| (r.image.text.as_str(), &r.status))
        .collect();
    assert!(matches!(s[0].1, Status::Pinned { .. }), "{s:?}");
    assert!(matches!(s[1].1, Status::Pinned { .. }), "{s:?}");
    assert!(matches!(s[2].1, Status::Pinned { .. }), "{s:?}");
    // Folded over two lines: a reference with a space, not pinned.
    assert!(
        matches!(s[3].1, Status::Failed(ImageError::Reference { .. })),
        "{s:?}"
    );
    // Clip chomping keeps the line break: not a valid reference (Kubernetes refuses it too).
    assert!(
        matches!(s[4].1, Status::Failed(ImageError::Reference { .. })),
        "{s:?}"
    );
    assert_eq!(out.images[0].image.quoting, Some(Quoting::Block));
    assert_eq!(out.images[0].image.line, 6);
    // Pinning again changes nothing.
    let (again, _) = pin_str(&got);
    assert_eq!(again, got);
}
