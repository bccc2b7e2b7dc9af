//! `/media/{size}/{key}`: the files of a local object store at the CDN's sizes, so that
//! `url(size)` opens a picture in the embedded default (`CDN_BASE_URL` points here). In
//! production a CDN in front of the object store (with an image server making the sizes)
//! answers these URLs instead, and this route is off.
//!
//! The size segment must be one `url(size)` writes with the configured sizes (`c160`, `w640`,
//! `original`, ...): any other is a 404, so that a request cannot ask for arbitrary sizes.
//! Resizing decodes within the measuring limits, runs on blocking threads, and at most
//! [`MediaFiles::resizing`] run at once. The content type comes from the bytes' magic numbers
//! (not from the key's extension: adopted objects have keys of any spelling), and every answer
//! says `nosniff`, so that a browser never takes a file for HTML or script whatever its bytes.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::AppState;
use crate::domain::measure::MeasureLimits;
use crate::domain::media::{SizeTable, check_storage_key};
use crate::domain::resize::{Resized, resize};
use crate::store::objects::{Objects, ObjectsError};

/// What `/media` serves: a local object store's files, at the configured sizes.
#[derive(Clone, Debug)]
pub struct MediaFiles {
    objects: Objects,
    sizes: SizeTable,
    limits: MeasureLimits,
    /// Resizes running at once; the others wait for a turn.
    resizing: Arc<Semaphore>,
}

impl MediaFiles {
    /// The files of `objects`, which must be a local store (`file://`): S3 and GCS are served
    /// by the CDN in front of them.
    pub fn new(objects: Objects, sizes: SizeTable, limits: MeasureLimits) -> anyhow::Result<Self> {
        anyhow::ensure!(
            objects.is_local(),
            "SERVE_MEDIA serves a local object store (file://) only: put the CDN in front of {}",
            objects.source_url("")
        );
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Ok(Self {
            objects,
            sizes,
            limits,
            resizing: Arc::new(Semaphore::new(cores)),
        })
    }
}

pub(super) async fn media(
    State(state): State<AppState>,
    Path((segment, key)): Path<(String, String)>,
) -> Response {
    let Some(media) = &state.media else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(size) = media.sizes.size_of_segment(&segment) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !inside_local_store(&media.objects, &key).await {
        return StatusCode::NOT_FOUND.into_response();
    }
    let bytes = match media.objects.get(&key).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) | Err(ObjectsError::Key) => return StatusCode::NOT_FOUND.into_response(),
        Err(error) => {
            tracing::error!(error = %error, "cannot read a stored file");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let Ok(_turn) = media.resizing.clone().acquire_owned().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let (sizes, limits) = (media.sizes, media.limits);
    let resized = tokio::task::spawn_blocking(move || {
        let resized = resize(&bytes, size, &sizes, limits);
        (bytes, resized)
    })
    .await;
    let (format, body) = match resized {
        Ok((bytes, Ok(Resized::Unchanged(format)))) => (format, bytes),
        Ok((_, Ok(Resized::Encoded(format, resized)))) => (format, resized),
        // Not a picture this server can read: nothing to serve.
        Ok((_, Err(_))) => return StatusCode::NOT_FOUND.into_response(),
        Err(error) => {
            tracing::error!(error = %error, "resizing a stored file failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    (
        [
            (CONTENT_TYPE, format.content_type()),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// Whether `key` of a local (`file://`) store resolves to a file inside the store. The store
/// reads files by path and would follow a symbolic link anywhere (`/etc`, another tenant's
/// directory); resolving the path and checking that it stays under the store's resolved root
/// serves links that stay inside and refuses the others. Keys the store refuses (empty, `.` or
/// `..` parts) are refused here too.
///
/// The check and the read are two steps: a link swapped in between would be followed. Making
/// one needs write access to the store's directory, which is the premise of the attack anyway;
/// this check keeps a link planted there (or left by a backup tool) from widening it.
async fn inside_local_store(objects: &Objects, key: &str) -> bool {
    let Some(root) = objects
        .source_url("")
        .strip_prefix("local://")
        .map(str::to_owned)
    else {
        return false;
    };
    if check_storage_key(key).is_err() {
        return false;
    }
    let root = std::path::PathBuf::from(root);
    let (Ok(real_root), Ok(real_file)) = (
        tokio::fs::canonicalize(&root).await,
        tokio::fs::canonicalize(root.join(key)).await,
    ) else {
        return false;
    };
    real_file.starts_with(&real_root)
}
