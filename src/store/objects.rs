//! The object store behind uploads, processed partner images and the demo's pictures: a local
//! directory by default, S3 or GCS when the `cloud-storage` feature is built and
//! `OBJECT_STORE_URL` says `s3://` or `gs://`.

use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::domain::media::check_storage_key;

/// Where uploaded bytes live.
#[derive(Clone, Debug)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    /// The store's URL, e.g. `file:///var/media` or `s3://bucket/prefix`.
    url: String,
    prefix: Path,
}

/// What [`Objects::get_at_most`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Bytes(Vec<u8>),
    /// An object of this many bytes, more than asked for.
    TooLarge(u64),
    Missing,
}

#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    #[error("object store error")]
    Store(#[from] object_store::Error),
    #[error("invalid object store URL: {0}")]
    Url(String),
    #[error("invalid object key")]
    Key,
}

impl Objects {
    /// Opens the store at `url` (`file:///abs/dir` creates the directory).
    pub fn open(url: &str) -> Result<Self, ObjectsError> {
        let parsed = url::Url::parse(url).map_err(|e| ObjectsError::Url(e.to_string()))?;
        if parsed.scheme() == "file" {
            let dir = parsed
                .to_file_path()
                .map_err(|()| ObjectsError::Url(url.to_owned()))?;
            std::fs::create_dir_all(&dir)
                .map_err(|e| ObjectsError::Url(format!("{}: {e}", dir.display())))?;
        }
        let (store, prefix) = object_store::parse_url(&parsed)?;
        Ok(Self {
            store: Arc::from(store),
            url: url.trim_end_matches('/').to_owned(),
            prefix,
        })
    }

    fn path(&self, key: &str) -> Result<Path, ObjectsError> {
        check_storage_key(key).map_err(|_| ObjectsError::Key)?;
        let key = Path::parse(key).map_err(|_| ObjectsError::Key)?;
        Ok(self.prefix.parts().chain(key.parts()).collect())
    }

    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), ObjectsError> {
        self.store.put(&self.path(key)?, bytes.into()).await?;
        Ok(())
    }

    /// Deletes the bytes at `key` (nothing there is no error).
    pub async fn delete(&self, key: &str) -> Result<(), ObjectsError> {
        match self.store.delete(&self.path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// The bytes at `key`; `None` when there are none.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ObjectsError> {
        match self.store.get(&self.path(key)?).await {
            Ok(result) => Ok(Some(result.bytes().await?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// The bytes at `key` if there are at most `max_bytes` of them. The size is read from the
    /// object's metadata before its body: a large object is refused without being read.
    pub async fn get_at_most(&self, key: &str, max_bytes: usize) -> Result<Stored, ObjectsError> {
        let result = match self.store.get(&self.path(key)?).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(Stored::Missing),
            Err(error) => return Err(error.into()),
        };
        if result.meta.size > max_bytes as u64 {
            return Ok(Stored::TooLarge(result.meta.size));
        }
        Ok(Stored::Bytes(result.bytes().await?.to_vec()))
    }

    /// Whether the store is a local directory (`file://`).
    pub fn is_local(&self) -> bool {
        self.url.starts_with("file://")
    }

    /// The URL an image server fetches `key` from (imgproxy reads `local://`, `s3://`, `gs://`).
    pub fn source_url(&self, key: &str) -> String {
        let base = self
            .url
            .strip_prefix("file://")
            .map_or_else(|| self.url.clone(), |path| format!("local://{path}"));
        format!("{base}/{key}")
    }
}
