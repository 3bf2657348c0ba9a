//! Upload sessions (the blob store holds their bytes).

use oci::Digest;
use redb::ReadableTable;

use super::manifests::link;
use super::store::RedbMetaStore;
use super::tables::*;
use crate::meta::UploadRecord;
use crate::{Result, StoreError};

pub(super) async fn upload_create(s: &RedbMetaStore, rec: UploadRecord) -> Result<()> {
    s.write(move |txn| {
        let v = serde_json::to_vec(&rec).expect("upload record serializes");
        txn.open_table(UPLOADS)?
            .insert(rec.id.as_str(), v.as_slice())?;
        Ok(())
    })
    .await
}

pub(super) async fn upload_get(s: &RedbMetaStore, id: &str) -> Result<Option<UploadRecord>> {
    s.read(|txn| {
        let t = txn.open_table(UPLOADS)?;
        let Some(v) = t.get(id)? else { return Ok(None) };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|_| StoreError::Db("corrupt upload record".into()))
    })
}

pub(super) async fn upload_complete(
    s: &RedbMetaStore,
    id: &str,
    digest: &Digest,
    size: u64,
) -> Result<()> {
    let (id, digest) = (id.to_owned(), digest.clone());
    s.write_touching(move |txn, touched| {
        let rec: UploadRecord = {
            let t = txn.open_table(UPLOADS)?;
            let Some(v) = t.get(id.as_str())? else {
                return Err(StoreError::UploadUnknown);
            };
            serde_json::from_slice(v.value())
                .map_err(|_| StoreError::Db("corrupt upload record".into()))?
        };
        txn.open_table(UPLOADS)?.remove(id.as_str())?;
        touched.push(rec.repo.clone());
        link(txn, &rec.repo, &digest, size)
    })
    .await
}

pub(super) async fn upload_delete(s: &RedbMetaStore, id: &str) -> Result<bool> {
    let id = id.to_owned();
    s.write(move |txn| Ok(txn.open_table(UPLOADS)?.remove(id.as_str())?.is_some()))
        .await
}
