//! Retention planning on hand-built and generated repository histories.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use versions::retention::{Kept, KeptReason, Manifest, Policy, Reason, Repo, Tag, plan};

const DAY: u64 = 86_400;
const NOW: u64 = 1_000 * DAY;

fn digest(i: usize) -> String {
    format!("sha256:{i:064x}")
}

fn image(i: usize, pushed_days_ago: u64) -> Manifest {
    Manifest {
        digest: digest(i),
        pushed: Some(NOW - pushed_days_ago * DAY),
        last_pull: None,
        subject: None,
        children: vec![],
    }
}

fn tag(name: &str, i: usize, pushed_days_ago: u64) -> Tag {
    Tag {
        name: name.into(),
        digest: digest(i),
        pushed: Some(NOW - pushed_days_ago * DAY),
        frozen: None,
    }
}

fn deleted_tags(p: &versions::Plan) -> Vec<&str> {
    p.tags.iter().map(|t| t.tag.as_str()).collect()
}

fn deleted_manifests(p: &versions::Plan) -> Vec<String> {
    p.manifests.iter().map(|m| m.digest.clone()).collect()
}

fn kept_reason<'a>(p: &'a versions::Plan, t: &str) -> &'a KeptReason {
    &p.kept
        .iter()
        .find(|k| k.tag.as_deref() == Some(t))
        .unwrap_or_else(|| panic!("{t} not kept: {p:#?}"))
        .reason
}

#[test]
fn an_empty_policy_keeps_everything() {
    let repo = Repo {
        tags: vec![tag("a", 1, 500)],
        manifests: vec![image(1, 500), image(2, 900)],
    };
    assert!(plan(&Policy::default(), &repo, NOW).is_empty());
}

#[test]
fn keep_semver_per_major_and_keep_tags() {
    let names = [
        "v1.0.0",
        "v1.1.0",
        "v1.2.0",
        "v2.0.0-rc.1",
        "v2.0.0",
        "v2.1.0",
        "latest",
        "nightly",
    ];
    let repo = Repo {
        tags: names
            .iter()
            .enumerate()
            .map(|(i, n)| tag(n, i, 100 - i as u64))
            .collect(),
        manifests: (0..names.len()).map(|i| image(i, 100 - i as u64)).collect(),
    };
    let policy = Policy {
        keep_semver: Some(2),
        per_major: true,
        keep_tags: vec!["night*".into()],
        ..Policy::default()
    };
    let p = plan(&policy, &repo, NOW);
    assert_eq!(deleted_tags(&p), ["v1.0.0", "v2.0.0-rc.1"], "{p:#?}");
    assert_eq!(deleted_manifests(&p), [digest(0), digest(3)]);
    assert!(matches!(
        &p.tags[0].reason,
        Reason::NotRetained { failed } if failed[0].contains("2 highest semantic versions of major 1")
    ));
    assert_eq!(
        *kept_reason(&p, "v2.1.0"),
        KeptReason::KeepSemver {
            rank: 1,
            major: Some(2)
        }
    );
    assert_eq!(*kept_reason(&p, "latest"), KeptReason::NoRule);
    assert!(matches!(
        kept_reason(&p, "nightly"),
        KeptReason::KeepTags { .. }
    ));

    // Without per_major, the two highest overall.
    let p = plan(
        &Policy {
            keep_semver: Some(2),
            ..Policy::default()
        },
        &repo,
        NOW,
    );
    assert_eq!(
        deleted_tags(&p),
        ["v1.0.0", "v1.1.0", "v1.2.0", "v2.0.0-rc.1"]
    );
}

#[test]
fn keep_last_with_unpulled_for_retains_the_union() {
    let mut repo = Repo {
        tags: vec![
            tag("a", 1, 50),
            tag("b", 2, 40),
            tag("c", 3, 30),
            tag("d", 4, 20),
        ],
        manifests: (1..=4).map(|i| image(i, 60 - 10 * i as u64)).collect(),
    };
    repo.manifests[0].last_pull = Some(NOW - DAY); // a pulled yesterday
    repo.manifests[1].last_pull = Some(NOW - 45 * DAY); // b pulled long ago
    let policy = Policy {
        keep_last: Some(2),
        unpulled_for: Some(30 * DAY),
        ..Policy::default()
    };
    let p = plan(&policy, &repo, NOW);
    assert_eq!(deleted_tags(&p), ["b"], "{p:#?}");
    let Reason::NotRetained { failed } = &p.tags[0].reason else {
        panic!()
    };
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed[1].contains("not pulled for 30d"), "{failed:?}");
    assert!(matches!(
        kept_reason(&p, "a"),
        KeptReason::Used { pulled: true, .. }
    ));
    assert_eq!(*kept_reason(&p, "d"), KeptReason::KeepLast { rank: 1 });
}

#[test]
fn frozen_tags_and_shared_manifests() {
    let mut repo = Repo {
        tags: vec![
            tag("v1.0.0", 1, 90),
            tag("old", 1, 80),
            tag("v0.9.0", 2, 95),
            tag("v2.0.0", 3, 10),
        ],
        manifests: vec![image(1, 90), image(2, 95), image(3, 10)],
    };
    repo.tags[2].frozen = Some("repos prod/* tags v*".into());
    let policy = Policy {
        keep_last: Some(1),
        ..Policy::default()
    };
    let p = plan(&policy, &repo, NOW);
    // Both tags of manifest 1 go, so it goes too.
    assert_eq!(deleted_tags(&p), ["old", "v1.0.0"]);
    assert_eq!(deleted_manifests(&p), [digest(1)]);
    assert!(matches!(
        kept_reason(&p, "v0.9.0"),
        KeptReason::Immutable { .. }
    ));
    // A tag of a manifest that another kept tag shares: only the tag goes.
    repo.tags.push(tag("stable", 1, 1));
    let p = plan(&policy, &repo, NOW);
    assert_eq!(deleted_tags(&p), ["old", "v1.0.0", "v2.0.0"]);
    assert_eq!(deleted_manifests(&p), [digest(3)]);
}

#[test]
fn referrers_and_index_children_follow() {
    // 1 and 2 are platform images, 3 an index over them, 4 a signature of the index, 5 an
    // SBOM of image 1 (subject field), 6 a cosign-scheme signature tag of the index, 7 an old
    // untagged orphan, 8 a new untagged orphan, 9 an index over 2 that stays.
    let mut ms: Vec<Manifest> = (1..=9).map(|i| image(i, 100)).collect();
    ms[2].children = vec![digest(1), digest(2)];
    ms[3].subject = Some(digest(3));
    ms[4].subject = Some(digest(1));
    ms[7].pushed = Some(NOW - DAY);
    ms[8].children = vec![digest(2)];
    let repo = Repo {
        tags: vec![
            tag("old-index", 3, 100),
            tag("keep", 9, 1),
            Tag {
                name: format!("sha256-{:064x}.sig", 3),
                ..tag("", 6, 100)
            },
        ],
        manifests: ms,
    };
    let policy = Policy {
        keep_last: Some(1),
        untagged_older_than: Some(30 * DAY),
        ..Policy::default()
    };
    let p = plan(&policy, &repo, NOW);
    assert_eq!(
        deleted_tags(&p),
        ["old-index".to_owned(), format!("sha256-{:064x}.sig", 3)],
        "{p:#?}"
    );
    let order = deleted_manifests(&p);
    let pos = |i: usize| order.iter().position(|d| *d == digest(i));
    // 2 is still listed by index 9; 8 is too young; 9 is tagged.
    for i in [2, 8, 9] {
        assert_eq!(pos(i), None, "{i} kept: {p:#?}");
    }
    for i in [1, 3, 4, 5, 6, 7] {
        assert!(pos(i).is_some(), "{i} goes: {p:#?}");
    }
    // The index before its child and its signatures; image 1 before its SBOM.
    assert!(pos(3) < pos(1) && pos(3) < pos(4) && pos(3) < pos(6));
    assert!(pos(1) < pos(5));
    let reason = |i: usize| &p.manifests[pos(i).unwrap()].reason;
    assert!(matches!(reason(3), Reason::TagsRemoved { .. }));
    assert!(matches!(reason(4), Reason::SubjectDeleted { subject } if *subject == digest(3)));
    assert!(matches!(reason(6), Reason::SubjectDeleted { .. }));
    assert!(matches!(reason(1), Reason::ParentDeleted { .. }));
    assert!(matches!(reason(7), Reason::Untagged { age_seconds, .. } if *age_seconds == 100 * DAY));
}

#[test]
fn a_manifest_losing_its_tags_stays_when_a_kept_index_lists_it() {
    let mut ms: Vec<Manifest> = (1..=2).map(|i| image(i, 50)).collect();
    ms[1].children = vec![digest(1)];
    let repo = Repo {
        tags: vec![tag("child", 1, 50), tag("index", 2, 1)],
        manifests: ms,
    };
    let p = plan(
        &Policy {
            keep_last: Some(1),
            ..Policy::default()
        },
        &repo,
        NOW,
    );
    assert_eq!(deleted_tags(&p), ["child"]);
    assert!(p.manifests.is_empty());
    assert!(p.kept.contains(&Kept {
        tag: None,
        digest: digest(1),
        reason: KeptReason::NeededBy { by: digest(2) }
    }));
}

// ---------------------------------------------------------------------------------------------
// Generated histories

#[derive(Debug, Clone)]
struct Gen {
    repo: Repo,
    policy: Policy,
    now: u64,
}

fn arb_history() -> impl Strategy<Value = Gen> {
    let manifest = (
        0u8..10,                                // kind: <6 image, 6..8 index, 8.. referrer
        prop::option::weighted(0.9, 0u64..200), // pushed, days ago
        prop::option::of(0u64..200),            // last pull, days ago
        prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    );
    let tagspec = (
        0u8..4, // kind: semver, plain, cosign, keep-able
        0u64..4,
        0u64..4,
        0u64..3,
        any::<prop::sample::Index>(),
        prop::option::weighted(0.9, 0u64..200),
        prop::bool::weighted(0.15),
    );
    let policy = (
        prop::option::of(0usize..6),
        prop::option::of(0usize..4),
        any::<bool>(),
        prop::bool::weighted(0.3),
        prop::option::of(0u64..150),
        prop::option::of(0u64..150),
    );
    (
        prop::collection::vec(manifest, 1..25),
        prop::collection::vec(tagspec, 0..25),
        policy,
    )
        .prop_map(|(ms, ts, pol)| {
            let now = NOW;
            let mut manifests: Vec<Manifest> = Vec::new();
            for (i, (kind, pushed, pull, links)) in ms.into_iter().enumerate() {
                let mut m = Manifest {
                    digest: digest(i),
                    pushed: pushed.map(|d| now - d * DAY),
                    last_pull: pull.map(|d| now - d * DAY),
                    subject: None,
                    children: vec![],
                };
                // Links only point at earlier manifests: content addressing rules out cycles.
                if i > 0 {
                    if (6..8).contains(&kind) {
                        let mut c: Vec<String> =
                            links.iter().map(|ix| digest(ix.index(i))).collect();
                        c.sort();
                        c.dedup();
                        m.children = c;
                    } else if kind >= 8
                        && let Some(ix) = links.first()
                    {
                        m.subject = Some(digest(ix.index(i)));
                    }
                }
                manifests.push(m);
            }
            let n = manifests.len();
            let mut tags: BTreeMap<String, Tag> = BTreeMap::new();
            for (kind, a, b, c, target, pushed, frozen) in ts {
                let t = target.index(n);
                let name = match kind {
                    0 => format!("v{a}.{b}.{c}"),
                    1 => format!("build-{a}{b}{c}"),
                    2 => format!("sha256-{:064x}.sig", (t + a as usize) % n),
                    _ => format!("keep-{a}"),
                };
                tags.insert(
                    name.clone(),
                    Tag {
                        name,
                        digest: digest(t),
                        pushed: pushed.map(|d| now - d * DAY),
                        frozen: frozen.then(|| "rule".to_owned()),
                    },
                );
            }
            let (keep_last, keep_semver, per_major, keep_tags, untagged, unpulled) = pol;
            Gen {
                repo: Repo {
                    tags: tags.into_values().collect(),
                    manifests,
                },
                policy: Policy {
                    keep_last,
                    keep_semver,
                    per_major,
                    keep_tags: if keep_tags {
                        vec!["keep-*".into()]
                    } else {
                        vec![]
                    },
                    untagged_older_than: untagged.map(|d| d * DAY),
                    unpulled_for: unpulled.map(|d| d * DAY),
                },
                now,
            }
        })
}

/// The repository after carrying the plan out.
fn apply(repo: &Repo, p: &versions::Plan) -> Repo {
    let dt: BTreeSet<&str> = p.tags.iter().map(|t| t.tag.as_str()).collect();
    let dm: BTreeSet<&str> = p.manifests.iter().map(|m| m.digest.as_str()).collect();
    Repo {
        tags: repo
            .tags
            .iter()
            .filter(|t| !dt.contains(t.name.as_str()))
            .cloned()
            .collect(),
        manifests: repo
            .manifests
            .iter()
            .filter(|m| !dm.contains(m.digest.as_str()))
            .cloned()
            .collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn plans_are_safe_ordered_and_idempotent(g in arb_history()) {
        let p = plan(&g.policy, &g.repo, g.now);
        let digests: BTreeSet<&str> = g.repo.manifests.iter().map(|m| m.digest.as_str()).collect();
        // A cosign-scheme tag of a subject that is here follows it instead of the tag rules.
        let follower = |t: &Tag| t.frozen.is_none() && versions::retention::cosign_subject(&t.name)
            .is_some_and(|s| s != t.digest && digests.contains(s.as_str()));
        let doomed: BTreeSet<&str> = p.manifests.iter().map(|m| m.digest.as_str()).collect();
        let deleted_tags: BTreeSet<&str> = p.tags.iter().map(|t| t.tag.as_str()).collect();
        prop_assert_eq!(doomed.len(), p.manifests.len(), "a manifest planned twice");
        prop_assert_eq!(deleted_tags.len(), p.tags.len(), "a tag planned twice");

        // Every tag is either deleted or kept, never both; deletions name the tag's digest.
        for t in g.repo.tags.iter().filter(|_| !g.policy.is_empty()) {
            let kept = p.kept.iter().filter(|k| k.tag.as_deref() == Some(&t.name)).count();
            prop_assert_eq!(kept + usize::from(deleted_tags.contains(t.name.as_str())), 1, "{}", t.name);
        }
        for d in &p.tags {
            let t = g.repo.tags.iter().find(|t| t.name == d.tag).unwrap();
            prop_assert_eq!(&t.digest, &d.digest);
        }
        for t in &g.repo.tags {
            let gone = deleted_tags.contains(t.name.as_str());
            // Immutable tags and keep_tags matches are never deleted, nor their manifests.
            if t.frozen.is_some() || (g.policy.keep_tags.iter().any(|p| oci::Glob::new(p).matches(&t.name))
                && !follower(t)) {
                prop_assert!(!gone, "{} deleted", t.name);
            }
            // A surviving tag's manifest survives.
            if !gone {
                prop_assert!(!doomed.contains(t.digest.as_str()), "{} points at a deleted manifest", t.name);
            }
        }
        let pos = |d: &str| p.manifests.iter().position(|m| m.digest == d);
        for m in &g.repo.manifests {
            for c in m.children.iter().filter(|c| digests.contains(c.as_str())) {
                // A surviving index keeps every child; a deleted one goes first.
                if !doomed.contains(m.digest.as_str()) {
                    prop_assert!(!doomed.contains(c.as_str()), "child {} of kept {} deleted", c, m.digest);
                } else if let Some(cp) = pos(c) {
                    prop_assert!(pos(&m.digest).unwrap() < cp, "child before its index");
                }
            }
            if let Some(s) = m.subject.as_ref().filter(|s| digests.contains(s.as_str()) && **s != m.digest) {
                let tagged = g.repo.tags.iter().any(|t| t.digest == m.digest && !deleted_tags.contains(t.name.as_str()));
                let listed = g.repo.manifests.iter().any(|o| o.children.contains(&m.digest) && !doomed.contains(o.digest.as_str()));
                if doomed.contains(s.as_str()) && !tagged && !listed {
                    // Referrers go with their subject...
                    prop_assert!(doomed.contains(m.digest.as_str()), "referrer {} outlives its subject", m.digest);
                }
                if let (Some(sp), Some(mp)) = (pos(s), pos(&m.digest)) {
                    // ...never before it.
                    prop_assert!(sp < mp, "referrer before its subject");
                }
            }
        }
        // Without an age rule, an untagged manifest nobody links to stays.
        if g.policy.untagged_older_than.is_none() {
            for m in &g.repo.manifests {
                let linked = g.repo.manifests.iter().any(|o| o.children.contains(&m.digest) || o.subject.as_ref() == Some(&m.digest))
                    || m.subject.as_ref().is_some_and(|s| digests.contains(s.as_str()))
                    || g.repo.tags.iter().any(|t| t.digest == m.digest);
                if !linked {
                    prop_assert!(!doomed.contains(m.digest.as_str()));
                }
            }
        }
        // keep_last N keeps at least N ordinary tags (when there are that many).
        if let Some(n) = g.policy.keep_last {
            let ordinary = |t: &&Tag| !follower(t);
            let total = g.repo.tags.iter().filter(ordinary).count();
            let left = g.repo.tags.iter().filter(ordinary).filter(|t| !deleted_tags.contains(t.name.as_str())).count();
            prop_assert!(left >= n.min(total));
        }
        // Carrying the plan out leaves a repository the policy is happy with.
        let after = apply(&g.repo, &p);
        let again = plan(&g.policy, &after, g.now);
        prop_assert!(again.is_empty(), "second plan not empty: {:#?}", again);
    }

    #[test]
    fn an_empty_policy_never_deletes(g in arb_history()) {
        prop_assert!(plan(&Policy::default(), &g.repo, g.now).is_empty());
    }
}
