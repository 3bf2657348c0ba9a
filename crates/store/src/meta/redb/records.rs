//! Opaque records by namespace: users, robots, rules, audit events and the like.

use std::ops::Bound;

use super::store::RedbMetaStore;
use super::tables::*;
use crate::Result;
use crate::meta::Page;

pub(super) async fn record_get(s: &RedbMetaStore, ns: &str, key_: &str) -> Result<Option<Vec<u8>>> {
    s.read(|txn| {
        Ok(txn
            .open_table(RECORDS)?
            .get(key(&[ns, key_]).as_str())?
            .map(|v| v.value().to_vec()))
    })
}

pub(super) async fn record_put(
    s: &RedbMetaStore,
    ns: &str,
    key_: &str,
    value: Vec<u8>,
) -> Result<()> {
    let k = key(&[ns, key_]);
    s.write(move |txn| {
        txn.open_table(RECORDS)?
            .insert(k.as_str(), value.as_slice())?;
        Ok(())
    })
    .await
}

pub(super) async fn record_delete(s: &RedbMetaStore, ns: &str, key_: &str) -> Result<bool> {
    let k = key(&[ns, key_]);
    s.write(move |txn| Ok(txn.open_table(RECORDS)?.remove(k.as_str())?.is_some()))
        .await
}

pub(super) async fn record_list(
    s: &RedbMetaStore,
    ns: &str,
    page: Page,
    newest_first: bool,
) -> Result<Vec<(String, Vec<u8>)>> {
    let ns = ns.to_owned();
    s.scan(move |txn| {
        let ns = ns.as_str();
        let t = txn.open_table(RECORDS)?;
        let n = page.n.unwrap_or(usize::MAX);
        if n == 0 {
            return Ok(Vec::new());
        }
        let (lo, hi) = prefix_range(ns, None);
        let (lo, hi) = match (&page.last, newest_first) {
            (Some(l), false) => (Bound::Excluded(format!("{ns}\0{l}")), hi),
            (Some(l), true) => (lo, Bound::Excluded(format!("{ns}\0{l}"))),
            (None, _) => (lo, hi),
        };
        let range = t.range::<&str>((as_ref_bound(&lo), as_ref_bound(&hi)))?;
        let mut out = Vec::new();
        let mut push = |e: std::result::Result<
            (redb::AccessGuard<'_, &str>, redb::AccessGuard<'_, &[u8]>),
            redb::StorageError,
        >|
         -> Result<bool> {
            let (k, v) = e?;
            out.push((k.value()[ns.len() + 1..].to_owned(), v.value().to_vec()));
            Ok(out.len() < n)
        };
        if newest_first {
            for e in range.rev() {
                if !push(e)? {
                    break;
                }
            }
        } else {
            for e in range {
                if !push(e)? {
                    break;
                }
            }
        }
        Ok(out)
    })
    .await
}
