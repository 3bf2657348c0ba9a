//! Manifests, tags and their history, blob links and referrers.

use oci::{Descriptor, Digest, Reference};
use redb::{ReadableTable, WriteTransaction};

use super::store::RedbMetaStore;
use super::tables::*;
use crate::meta::{ManifestRecord, Page, StoredManifest, TagEvent};
use crate::{Result, StoreError};

static TAG_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Records a tag change in the same transaction as the change itself.
pub(super) fn record_tag_change(
    txn: &WriteTransaction,
    repo: &str,
    tag: &str,
    actor: &str,
    previous: Option<String>,
    new: Option<String>,
) -> Result<()> {
    if previous == new {
        return Ok(());
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seq = TAG_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1_000_000;
    let k = key(&[repo, tag, &format!("{nanos:024}{seq:06}")]);
    let e = TagEvent {
        time: now(),
        actor: actor.to_owned(),
        previous,
        new,
    };
    let v = serde_json::to_vec(&e).expect("tag event serializes");
    txn.open_table(TAG_HISTORY)?
        .insert(k.as_str(), v.as_slice())?;
    Ok(())
}

/// Deletes a manifest and the tags that point at it (recorded in their history as `actor`),
/// its parent links, its referrer entry and its last-pull time. Returns whether it existed.
pub(super) fn remove_manifest(
    txn: &WriteTransaction,
    repo: &str,
    digest: &Digest,
    actor: &str,
) -> Result<bool> {
    let d = digest.to_string();
    let mk = key(&[repo, &d]);
    let (subject, children) = {
        let t = txn.open_table(MANIFESTS)?;
        let Some(v) = t.get(mk.as_str())? else {
            return Ok(false);
        };
        let meta = decode_meta(v.value())?;
        (meta.subject, meta.children)
    };
    {
        let mut parents = txn.open_table(PARENTS)?;
        for c in &children {
            parents.remove(key(&[repo, &c.to_string(), &d]).as_str())?;
        }
    }
    txn.open_table(MANIFESTS)?.remove(mk.as_str())?;
    let mut tags = txn.open_table(TAGS)?;
    let (lo, hi) = prefix_range(repo, None);
    let doomed: Vec<String> = tags
        .range::<&str>((as_ref_bound(&lo), as_ref_bound(&hi)))?
        .filter_map(|e| e.ok())
        .filter(|(_, v)| v.value() == d)
        .map(|(k, _)| k.value().to_owned())
        .collect();
    for k in &doomed {
        tags.remove(k.as_str())?;
    }
    drop(tags);
    for k in doomed {
        let tag = &k[repo.len() + 1..];
        record_tag_change(txn, repo, tag, actor, Some(d.clone()), None)?;
    }
    if let Some(s) = subject {
        txn.open_table(REFERRERS)?
            .remove(key(&[repo, &s.to_string(), &d]).as_str())?;
    }
    txn.open_table(PULLS)?.remove(mk.as_str())?;
    Ok(true)
}

fn ensure_repo(txn: &WriteTransaction, repo: &str) -> Result<()> {
    let mut t = txn.open_table(REPOS)?;
    if t.get(repo)?.is_none() {
        t.insert(repo, now())?;
    }
    Ok(())
}

pub(super) fn link(txn: &WriteTransaction, repo: &str, digest: &Digest, size: u64) -> Result<()> {
    ensure_repo(txn, repo)?;
    let d = digest.to_string();
    txn.open_table(BLOBS)?.insert(d.as_str(), size)?;
    txn.open_table(LINKS)?
        .insert(key(&[repo, &d]).as_str(), size)?;
    super::gc::note_link(txn, repo, &d)?;
    Ok(())
}

/// Stores a manifest and points `tags` at it; `check_present` requires its blobs to be linked
/// and its index children stored (a client push), the cache stores without (see
/// [`crate::MetaStore::put_cached_manifest`]).
async fn store_manifest(
    s: &RedbMetaStore,
    repo: &str,
    m: ManifestRecord,
    tags: Vec<String>,
    check_present: bool,
) -> Result<()> {
    let repo = repo.to_owned();
    s.write_repo(&repo.clone(), move |txn| {
        // Checks first: nothing is written unless everything the manifest needs is here.
        {
            let links = txn.open_table(LINKS)?;
            for b in m.blobs.iter().filter(|_| check_present) {
                if links.get(key(&[&repo, &b.to_string()]).as_str())?.is_none() {
                    return Err(StoreError::ManifestBlobUnknown(b.clone()));
                }
            }
            let tags = txn.open_table(TAGS)?;
            let d = m.digest.to_string();
            for t in &m.frozen_tags {
                if let Some(cur) = tags.get(key(&[&repo, t]).as_str())?
                    && cur.value() != d
                {
                    return Err(StoreError::TagImmutable {
                        tag: t.clone(),
                        current: cur.value().to_owned(),
                    });
                }
            }
            let manifests = txn.open_table(MANIFESTS)?;
            for c in m.children.iter().filter(|_| check_present) {
                if manifests
                    .get(key(&[&repo, &c.to_string()]).as_str())?
                    .is_none()
                {
                    return Err(StoreError::ManifestBlobUnknown(c.clone()));
                }
            }
        }
        ensure_repo(txn, &repo)?;
        super::gc::note_refs(txn, &m.blobs)?;
        let d = m.digest.to_string();
        // Pushing the same manifest again keeps its first push time.
        let pushed = match txn.open_table(MANIFESTS)?.get(key(&[&repo, &d]).as_str())? {
            Some(v) => decode_meta(v.value())?.pushed,
            None => Some(now()),
        };
        let meta = ManifestMeta {
            media_type: m.media_type.clone(),
            subject: m.subject.clone(),
            children: m.children.clone(),
            pushed,
        };
        {
            let mut parents = txn.open_table(PARENTS)?;
            for c in &m.children {
                parents.insert(
                    key(&[&repo, &c.to_string(), &m.digest.to_string()]).as_str(),
                    0u64,
                )?;
            }
        }
        txn.open_table(MANIFESTS)?.insert(
            key(&[&repo, &d]).as_str(),
            encode_manifest(&meta, &m.body).as_slice(),
        )?;
        for t in &tags {
            let previous = txn
                .open_table(TAGS)?
                .insert(key(&[&repo, t]).as_str(), d.as_str())?
                .map(|v| v.value().to_owned());
            record_tag_change(txn, &repo, t, &m.actor, previous, Some(d.clone()))?;
        }
        if let (Some(s), Some(desc)) = (&m.subject, &m.referrer) {
            let v = serde_json::to_vec(desc).expect("descriptor serializes");
            txn.open_table(REFERRERS)?
                .insert(key(&[&repo, &s.to_string(), &d]).as_str(), v.as_slice())?;
        }
        Ok(())
    })
    .await
}

pub(super) async fn blob_linked(
    s: &RedbMetaStore,
    repo: &str,
    digest: &Digest,
) -> Result<Option<u64>> {
    s.read(|txn| {
        let t = txn.open_table(LINKS)?;
        Ok(t.get(key(&[repo, &digest.to_string()]).as_str())?
            .map(|v| v.value()))
    })
}

pub(super) async fn link_blob(
    s: &RedbMetaStore,
    repo: &str,
    digest: &Digest,
    size: u64,
) -> Result<()> {
    let (repo, digest) = (repo.to_owned(), digest.clone());
    s.write_repo(&repo.clone(), move |txn| link(txn, &repo, &digest, size))
        .await
}

pub(super) async fn unlink_blob(s: &RedbMetaStore, repo: &str, digest: &Digest) -> Result<bool> {
    let k = key(&[repo, &digest.to_string()]);
    s.write_repo(repo, move |txn| {
        Ok(txn.open_table(LINKS)?.remove(k.as_str())?.is_some())
    })
    .await
}

pub(super) async fn put_manifest(
    s: &RedbMetaStore,
    repo: &str,
    m: ManifestRecord,
    tags: Vec<String>,
) -> Result<()> {
    store_manifest(s, repo, m, tags, true).await
}

pub(super) async fn put_cached_manifest(
    s: &RedbMetaStore,
    repo: &str,
    m: ManifestRecord,
    tags: Vec<String>,
) -> Result<()> {
    store_manifest(s, repo, m, tags, false).await
}

pub(super) async fn get_manifest(
    s: &RedbMetaStore,
    repo: &str,
    r: &Reference,
) -> Result<Option<StoredManifest>> {
    s.read(|txn| {
        let digest = match r {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => {
                let tags = txn.open_table(TAGS)?;
                let Some(v) = tags.get(key(&[repo, t]).as_str())? else {
                    return Ok(None);
                };
                Digest::parse(v.value()).map_err(|_| StoreError::Db("corrupt tag record".into()))?
            }
        };
        let t = txn.open_table(MANIFESTS)?;
        let Some(v) = t.get(key(&[repo, &digest.to_string()]).as_str())? else {
            return Ok(None);
        };
        decode_manifest(digest, v.value()).map(Some)
    })
}

pub(super) async fn manifest_lists_blob(
    s: &RedbMetaStore,
    repo: &str,
    digest: &Digest,
) -> Result<bool> {
    let (repo, digest) = (repo.to_owned(), digest.clone());
    s.scan(move |txn| {
        let t = txn.open_table(MANIFESTS)?;
        let wanted = digest.to_string();
        let (lo, hi) = prefix_range(&repo, None);
        for e in t.range::<&str>((as_ref_bound(&lo), as_ref_bound(&hi)))? {
            let (k, v) = e?;
            let m_digest = Digest::parse(&k.value()[repo.len() + 1..])
                .map_err(|_| StoreError::Db("corrupt manifest key".into()))?;
            let m = decode_manifest(m_digest, v.value())?;
            // A manifest that lists the digest has it in its text: most are skipped unparsed.
            if !std::str::from_utf8(&m.body).is_ok_and(|b| b.contains(&wanted)) {
                continue;
            }
            // Index children are manifests, not blobs: an index lists none.
            let listed = oci::Manifest::parse(Some(&m.media_type), &m.body)
                .is_ok_and(|p| p.required_blobs().any(|b| b.digest == digest));
            if listed {
                return Ok(true);
            }
        }
        Ok(false)
    })
    .await
}

pub(super) async fn delete_manifest(
    s: &RedbMetaStore,
    repo: &str,
    digest: &Digest,
    actor: &str,
) -> Result<bool> {
    let (repo, digest, actor) = (repo.to_owned(), digest.clone(), actor.to_owned());
    s.write_repo(&repo.clone(), move |txn| {
        remove_manifest(txn, &repo, &digest, &actor)
    })
    .await
}

pub(super) async fn delete_tag(
    s: &RedbMetaStore,
    repo: &str,
    tag: &str,
    actor: &str,
) -> Result<bool> {
    let (repo, tag, actor) = (repo.to_owned(), tag.to_owned(), actor.to_owned());
    s.write_repo(&repo.clone(), move |txn| {
        let previous = txn
            .open_table(TAGS)?
            .remove(key(&[&repo, &tag]).as_str())?
            .map(|v| v.value().to_owned());
        let existed = previous.is_some();
        record_tag_change(txn, &repo, &tag, &actor, previous, None)?;
        Ok(existed)
    })
    .await
}

pub(super) async fn set_tag(
    s: &RedbMetaStore,
    repo: &str,
    tag: &str,
    digest: &Digest,
    actor: &str,
    frozen: bool,
) -> Result<()> {
    let (repo, tag, actor, digest) = (
        repo.to_owned(),
        tag.to_owned(),
        actor.to_owned(),
        digest.clone(),
    );
    s.write_repo(&repo.clone(), move |txn| {
        let d = digest.to_string();
        if txn
            .open_table(MANIFESTS)?
            .get(key(&[&repo, &d]).as_str())?
            .is_none()
        {
            return Err(StoreError::ManifestUnknown);
        }
        let k = key(&[&repo, &tag]);
        if frozen
            && let Some(cur) = txn.open_table(TAGS)?.get(k.as_str())?
            && cur.value() != d
        {
            return Err(StoreError::TagImmutable {
                tag: tag.clone(),
                current: cur.value().to_owned(),
            });
        }
        let previous = txn
            .open_table(TAGS)?
            .insert(k.as_str(), d.as_str())?
            .map(|v| v.value().to_owned());
        record_tag_change(txn, &repo, &tag, &actor, previous, Some(d))
    })
    .await
}

pub(super) async fn tag_history(
    s: &RedbMetaStore,
    repo: &str,
    tag: &str,
    limit: usize,
) -> Result<Vec<TagEvent>> {
    let repo = repo.to_owned();
    let tag = tag.to_owned();
    s.scan(move |txn| {
        let repo = repo.as_str();
        let tag = tag.as_str();
        let t = txn.open_table(TAG_HISTORY)?;
        let p = key(&[repo, tag]);
        let (lo, hi) = prefix_range(&p, None);
        let mut out = Vec::new();
        for e in t
            .range::<&str>((as_ref_bound(&lo), as_ref_bound(&hi)))?
            .rev()
        {
            let (_, v) = e?;
            out.push(
                serde_json::from_slice(v.value())
                    .map_err(|_| StoreError::Db("corrupt tag history record".into()))?,
            );
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    })
    .await
}

pub(super) async fn tags(s: &RedbMetaStore, repo: &str, page: Page) -> Result<Option<Vec<String>>> {
    let repo = repo.to_owned();
    s.scan(move |txn| {
        let repo = repo.as_str();
        if txn.open_table(REPOS)?.get(repo)?.is_none() {
            return Ok(None);
        }
        list_keys(&txn.open_table(TAGS)?, Some(repo), &page).map(Some)
    })
    .await
}

pub(super) async fn repositories(s: &RedbMetaStore, page: Page) -> Result<Vec<String>> {
    s.scan(move |txn| list_keys(&txn.open_table(REPOS)?, None, &page))
        .await
}

pub(super) async fn tags_of(s: &RedbMetaStore, repo: &str, digest: &Digest) -> Result<Vec<String>> {
    let d = digest.to_string();
    s.read(|txn| {
        let t = txn.open_table(TAGS)?;
        let (lo, hi) = prefix_range(repo, None);
        let mut out = Vec::new();
        for e in t.range::<&str>((as_ref_bound(&lo), as_ref_bound(&hi)))? {
            let (k, v) = e?;
            if v.value() == d {
                out.push(k.value()[repo.len() + 1..].to_owned());
            }
        }
        Ok(out)
    })
}

pub(super) async fn parents(s: &RedbMetaStore, repo: &str, child: &Digest) -> Result<Vec<Digest>> {
    s.read(|txn| {
        let t = txn.open_table(PARENTS)?;
        let p = key(&[repo, &child.to_string()]);
        let (lo, hi) = prefix_range(&p, None);
        let mut out = Vec::new();
        for e in t.range::<&str>((as_ref_bound(&lo), as_ref_bound(&hi)))? {
            let (k, _) = e?;
            if let Ok(d) = Digest::parse(&k.value()[p.len() + 1..]) {
                out.push(d);
            }
        }
        Ok(out)
    })
}

pub(super) async fn referrers(
    s: &RedbMetaStore,
    repo: &str,
    subject: &Digest,
) -> Result<Vec<Descriptor>> {
    s.read(|txn| {
        let t = txn.open_table(REFERRERS)?;
        let p = key(&[repo, &subject.to_string()]);
        let (lo, hi) = prefix_range(&p, None);
        let mut out = Vec::new();
        for e in t.range::<&str>((as_ref_bound(&lo), as_ref_bound(&hi)))? {
            let (_, v) = e?;
            out.push(
                serde_json::from_slice(v.value())
                    .map_err(|_| StoreError::Db("corrupt referrer record".into()))?,
            );
        }
        Ok(out)
    })
}
