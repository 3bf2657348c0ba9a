//! What retention plans from and the guarded deletes it executes: a repository's snapshot, last
//! pull times, and deletes re-checked in their own transaction.

use oci::Digest;
use redb::ReadableTable;

use super::manifests::{record_tag_change, remove_manifest};
use super::store::RedbMetaStore;
use super::tables::*;
use crate::meta::{GuardedDelete, ManifestSummary, RepoSnapshot, TagEntry, TagEvent};
use crate::{Result, StoreError};

pub(super) async fn snapshot(s: &RedbMetaStore, repo: &str) -> Result<RepoSnapshot> {
    let repo = repo.to_owned();
    s.scan(move |txn| {
        let repo = repo.as_str();
        let corrupt = |what: &str| StoreError::Db(format!("corrupt {what} record"));
        let history = txn.open_table(TAG_HISTORY)?;
        let mut out = RepoSnapshot::default();
        let (lo, hi) = prefix_range(repo, None);
        for e in txn
            .open_table(TAGS)?
            .range::<&str>((as_ref_bound(&lo), as_ref_bound(&hi)))?
        {
            let (k, v) = e?;
            let tag = k.value()[repo.len() + 1..].to_owned();
            let digest = Digest::parse(v.value()).map_err(|_| corrupt("tag"))?;
            let (hlo, hhi) = prefix_range(&key(&[repo, &tag]), None);
            let set_at = match history
                .range::<&str>((as_ref_bound(&hlo), as_ref_bound(&hhi)))?
                .next_back()
            {
                Some(h) => {
                    let ev: TagEvent =
                        serde_json::from_slice(h?.1.value()).map_err(|_| corrupt("tag history"))?;
                    (ev.new.as_deref() == Some(v.value())).then_some(ev.time)
                }
                None => None,
            };
            out.tags.push(TagEntry {
                tag,
                digest,
                set_at,
            });
        }
        for e in txn
            .open_table(MANIFESTS)?
            .range::<&str>((as_ref_bound(&lo), as_ref_bound(&hi)))?
        {
            let (k, v) = e?;
            let digest =
                Digest::parse(&k.value()[repo.len() + 1..]).map_err(|_| corrupt("manifest"))?;
            let raw = v.value();
            let meta = decode_meta(raw)?;
            let head = u32::from_le_bytes(raw[..4].try_into().expect("4 bytes")) as usize;
            out.manifests.push(ManifestSummary {
                digest,
                media_type: meta.media_type,
                size: (raw.len() - 4 - head) as u64,
                subject: meta.subject,
                children: meta.children,
                pushed: meta.pushed,
            });
        }
        Ok(out)
    })
    .await
}

pub(super) async fn note_pulls(s: &RedbMetaStore, pulls: Vec<(String, Digest, u64)>) -> Result<()> {
    if pulls.is_empty() {
        return Ok(());
    }
    s.write(move |txn| {
        let manifests = txn.open_table(MANIFESTS)?;
        let mut t = txn.open_table(PULLS)?;
        for (repo, digest, time) in &pulls {
            let k = key(&[repo, &digest.to_string()]);
            if manifests.get(k.as_str())?.is_none() {
                continue;
            }
            let stored = t.get(k.as_str())?.map(|v| v.value());
            if stored.is_none_or(|s| s < *time) {
                t.insert(k.as_str(), *time)?;
            }
        }
        Ok(())
    })
    .await
}

pub(super) async fn last_pulls(s: &RedbMetaStore, repo: &str) -> Result<Vec<(Digest, u64)>> {
    let repo = repo.to_owned();
    s.scan(move |txn| {
        let repo = repo.as_str();
        let (lo, hi) = prefix_range(repo, None);
        let mut out = Vec::new();
        for e in txn
            .open_table(PULLS)?
            .range::<&str>((as_ref_bound(&lo), as_ref_bound(&hi)))?
        {
            let (k, v) = e?;
            if let Ok(d) = Digest::parse(&k.value()[repo.len() + 1..]) {
                out.push((d, v.value()));
            }
        }
        Ok(out)
    })
    .await
}

pub(super) async fn delete_tag_if(
    s: &RedbMetaStore,
    repo: &str,
    tag: &str,
    digest: &Digest,
    actor: &str,
) -> Result<bool> {
    let (repo, tag, actor, d) = (
        repo.to_owned(),
        tag.to_owned(),
        actor.to_owned(),
        digest.to_string(),
    );
    s.write_repo(&repo.clone(), move |txn| {
        let k = key(&[&repo, &tag]);
        let current = txn
            .open_table(TAGS)?
            .get(k.as_str())?
            .map(|v| v.value().to_owned());
        if current.as_deref() != Some(d.as_str()) {
            return Ok(false);
        }
        txn.open_table(TAGS)?.remove(k.as_str())?;
        record_tag_change(txn, &repo, &tag, &actor, current, None)?;
        Ok(true)
    })
    .await
}

pub(super) async fn delete_manifest_if_unused(
    s: &RedbMetaStore,
    repo: &str,
    digest: &Digest,
    actor: &str,
) -> Result<GuardedDelete> {
    let (repo, digest, actor) = (repo.to_owned(), digest.clone(), actor.to_owned());
    s.write_repo(&repo.clone(), move |txn| {
        let d = digest.to_string();
        if txn
            .open_table(MANIFESTS)?
            .get(key(&[&repo, &d]).as_str())?
            .is_none()
        {
            return Ok(GuardedDelete::Gone);
        }
        let (lo, hi) = prefix_range(&repo, None);
        let mut tagged = Vec::new();
        for e in txn
            .open_table(TAGS)?
            .range::<&str>((as_ref_bound(&lo), as_ref_bound(&hi)))?
        {
            let (k, v) = e?;
            if v.value() == d {
                tagged.push(k.value()[repo.len() + 1..].to_owned());
            }
        }
        if !tagged.is_empty() {
            return Ok(GuardedDelete::Tagged(tagged));
        }
        let p = key(&[&repo, &d]);
        let (plo, phi) = prefix_range(&p, None);
        let mut listed = Vec::new();
        for e in txn
            .open_table(PARENTS)?
            .range::<&str>((as_ref_bound(&plo), as_ref_bound(&phi)))?
        {
            let (k, _) = e?;
            if let Ok(parent) = Digest::parse(&k.value()[p.len() + 1..]) {
                listed.push(parent);
            }
        }
        if !listed.is_empty() {
            return Ok(GuardedDelete::Listed(listed));
        }
        remove_manifest(txn, &repo, &digest, &actor)?;
        Ok(GuardedDelete::Deleted)
    })
    .await
}
