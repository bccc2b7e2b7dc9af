//! The body of a `/graphql` request, read with a limit per part for GraphQL multipart requests
//! (uploads).
//!
//! async-graphql-axum reads a multipart request with one size limit for every part, so the
//! `operations` and `map` parts (JSON, read into memory and parsed) would get the upload limit:
//! a 15 MB `operations` part went through. Here they get the JSON body limit
//! (`BODY_LIMIT_BYTES`) and only file parts get the upload body limit (`UPLOAD_MAX_BYTES` plus
//! the JSON limit); a part over its limit is a 413. File parts stream to anonymous temporary files (deleted when
//! closed), written off the async threads in blocks of [`SPOOL_BLOCK`], so an upload holds at
//! most one block of memory while it arrives. Only callers who may upload get this far
//! (`limit_body` refuses the others before a byte is read).
//!
//! A JSON body is read here too ([`parse_json`]); a GET request's query string by
//! async-graphql-axum.

use std::io::{Seek, Write};

use async_graphql::{BatchRequest, ParseRequestError, UploadValue};
use async_graphql_axum::GraphQLBatchRequest;
use async_graphql_axum::rejection::GraphQLRejection;
use axum::extract::{FromRequest, Request};
use axum::http::Method;
use axum::http::header::CONTENT_TYPE;

use super::AppState;

/// Bytes of a file part gathered in memory before they are written to its temporary file.
const SPOOL_BLOCK: usize = 256 * 1024;
/// Most files one multipart request may carry, and most variables `map` may set to files: each
/// path is one more upload for the operation (a handle on the file, hashed again for an
/// idempotency key), so one file named by 75,000 paths would be 75,000 uploads.
const MAX_FILES: usize = 10;

/// The GraphQL request(s) of a `/graphql` request.
pub struct GraphQLBody(pub BatchRequest);

impl FromRequest<AppState> for GraphQLBody {
    type Rejection = GraphQLRejection;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let boundary = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.starts_with("multipart/form-data"))
            .map(multer::parse_boundary);
        match boundary {
            None if request.method() == Method::GET => {
                GraphQLBatchRequest::<GraphQLRejection>::from_request(request, state)
                    .await
                    .map(|body| GraphQLBody(body.into_inner()))
            }
            // `limit_body` has put the body limit on the stream.
            None => match axum::body::to_bytes(request.into_body(), usize::MAX).await {
                Ok(body) => parse_json(&body).map(GraphQLBody).map_err(GraphQLRejection),
                Err(error) => Err(GraphQLRejection(ParseRequestError::Io(
                    std::io::Error::other(error.to_string()),
                ))),
            },
            Some(Ok(boundary)) => {
                let limits = PartLimits {
                    json: state.protection.body_limit,
                    file: state.protection.upload_limit,
                };
                read_multipart(request, boundary, limits)
                    .await
                    .map(GraphQLBody)
                    .map_err(GraphQLRejection)
            }
            Some(Err(error)) => Err(GraphQLRejection(ParseRequestError::InvalidMultipart(error))),
        }
    }
}

/// A JSON body: one request, or a non-empty array of them, as async-graphql reads it. The
/// first byte tells which, so the body is parsed once, straight into requests: async-graphql's
/// untagged `BatchRequest` first buffers the whole body into a generic tree to try each form
/// (7% of a warm search page's CPU, see BENCHMARKS.md), and its error says only that no form
/// matched.
fn parse_json(body: &[u8]) -> Result<BatchRequest, ParseRequestError> {
    let invalid = |error: serde_json::Error| ParseRequestError::InvalidRequest(Box::new(error));
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => {
            let requests: Vec<async_graphql::Request> =
                serde_json::from_slice(body).map_err(invalid)?;
            if requests.is_empty() {
                return Err(invalid(serde::de::Error::invalid_length(
                    0,
                    &"a non-empty sequence",
                )));
            }
            Ok(BatchRequest::Batch(requests))
        }
        _ => serde_json::from_slice(body)
            .map(BatchRequest::Single)
            .map_err(invalid),
    }
}

/// The size limits of a multipart request's parts.
#[derive(Debug, Clone, Copy)]
struct PartLimits {
    /// `operations` and `map`.
    json: usize,
    /// Each file, and the whole body. The upload use case refuses a file over
    /// `UPLOAD_MAX_BYTES` itself, with a user error, so this limit is the body's.
    file: usize,
}

/// Reads a GraphQL multipart request (the `operations` and `map` parts and the files, in any
/// order) and attaches each file to the variables `map` names.
async fn read_multipart(
    request: Request,
    boundary: String,
    limits: PartLimits,
) -> Result<BatchRequest, ParseRequestError> {
    let size_limit = multer::SizeLimit::new()
        .whole_stream(limits.file as u64)
        .per_field(limits.file as u64)
        .for_field("operations", limits.json as u64)
        .for_field("map", limits.json as u64);
    let mut multipart = multer::Multipart::with_constraints(
        request.into_body().into_data_stream(),
        boundary,
        multer::Constraints::new().size_limit(size_limit),
    );
    let (mut operations, mut map, mut files) = (None, None, Vec::new());
    while let Some(field) = multipart.next_field().await? {
        match field.name() {
            Some("operations") => operations = Some(field.bytes().await?),
            Some("map") => map = Some(field.bytes().await?),
            Some(name) if field.file_name().is_some() => {
                if files.len() == MAX_FILES {
                    return Err(ParseRequestError::InvalidRequest(
                        format!("at most {MAX_FILES} files per request").into(),
                    ));
                }
                let name = name.to_owned();
                let filename = field.file_name().unwrap_or_default().to_owned();
                let content_type = field.content_type().map(ToString::to_string);
                let content = spool(field).await?;
                files.push((
                    name,
                    UploadValue {
                        filename,
                        content_type,
                        content,
                    },
                ));
            }
            // Other text parts mean nothing to GraphQL; they are skipped (within the limits).
            _ => {}
        }
    }
    let operations = operations.ok_or(ParseRequestError::MissingOperatorsPart)?;
    let map = map.ok_or(ParseRequestError::MissingMapPart)?;
    let mut batch: BatchRequest = serde_json::from_slice(&operations)
        .map_err(|e| ParseRequestError::InvalidRequest(Box::new(e)))?;
    let mut map: std::collections::HashMap<String, Vec<String>> = serde_json::from_slice(&map)
        .map_err(|e| ParseRequestError::InvalidFilesMap(Box::new(e)))?;
    check_paths(&map)?;
    for (name, upload) in files {
        for path in map.remove(&name).unwrap_or_default() {
            attach(&mut batch, &path, upload.try_clone()?);
        }
    }
    if !map.is_empty() {
        return Err(ParseRequestError::MissingFiles);
    }
    Ok(batch)
}

/// At most [`MAX_FILES`] paths in `map`, none named twice.
fn check_paths(
    map: &std::collections::HashMap<String, Vec<String>>,
) -> Result<(), ParseRequestError> {
    let paths: Vec<&String> = map.values().flatten().collect();
    let distinct: std::collections::HashSet<&String> = paths.iter().copied().collect();
    let refuse = |why: String| Err(ParseRequestError::InvalidRequest(why.into()));
    if paths.len() > MAX_FILES {
        return refuse(format!("at most {MAX_FILES} file variables per request"));
    }
    if distinct.len() < paths.len() {
        return refuse("a variable is named twice in the files map".to_owned());
    }
    Ok(())
}

/// Sets the file at `path` (`variables.file`, or `3.variables.file` in a batch).
fn attach(batch: &mut BatchRequest, path: &str, upload: UploadValue) {
    match batch {
        BatchRequest::Single(request) => request.set_upload(path, upload),
        BatchRequest::Batch(requests) => {
            let Some((index, path)) = path.split_once('.') else {
                return;
            };
            if let Some(request) = index.parse().ok().and_then(|i: usize| requests.get_mut(i)) {
                request.set_upload(path, upload);
            }
        }
    }
}

/// Streams a file part into an anonymous temporary file, rewound for reading.
async fn spool(mut field: multer::Field<'_>) -> Result<std::fs::File, ParseRequestError> {
    let mut file = blocking(tempfile::tempfile).await?;
    let mut block = Vec::with_capacity(SPOOL_BLOCK);
    while let Some(chunk) = field.chunk().await? {
        block.extend_from_slice(&chunk);
        if block.len() >= SPOOL_BLOCK {
            (file, block) = write_block(file, block).await?;
        }
    }
    let (mut file, _) = write_block(file, block).await?;
    blocking(move || file.rewind().map(|()| file)).await
}

/// Appends `block` to `file`; gives both back (the block emptied) for the next one.
async fn write_block(
    mut file: std::fs::File,
    mut block: Vec<u8>,
) -> Result<(std::fs::File, Vec<u8>), ParseRequestError> {
    blocking(move || {
        file.write_all(&block)?;
        block.clear();
        Ok((file, block))
    })
    .await
}

/// Runs file I/O on the blocking threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, ParseRequestError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)?
        .map_err(ParseRequestError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queries(batch: &BatchRequest) -> Vec<&str> {
        match batch {
            BatchRequest::Single(request) => vec![request.query.as_str()],
            BatchRequest::Batch(requests) => requests.iter().map(|r| r.query.as_str()).collect(),
        }
    }

    #[test]
    fn a_json_body_is_one_request_or_a_non_empty_batch_as_async_graphql_reads_it() {
        let single = parse_json(br#" {"query":"{ a }","variables":{"x":[1]}} "#).unwrap();
        assert!(matches!(single, BatchRequest::Single(_)));
        assert_eq!(queries(&single), ["{ a }"]);
        if let BatchRequest::Single(request) = &single {
            assert_eq!(
                request.variables.get("x").map(ToString::to_string),
                Some("[1]".to_owned())
            );
        }
        let batch = parse_json(b"\n[{\"query\":\"{ a }\"},{\"query\":\"{ b }\"}]").unwrap();
        assert!(matches!(batch, BatchRequest::Batch(_)));
        assert_eq!(queries(&batch), ["{ a }", "{ b }"]);
        for body in [
            &b"[]"[..],
            b"",
            b"{",
            b"[{\"query\":1}]",
            b"\"{ a }\"",
            b"{} {}",
        ] {
            assert!(
                matches!(parse_json(body), Err(ParseRequestError::InvalidRequest(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // Where async-graphql's untagged enum said only that no form matched, the error
        // says what is wrong.
        let Err(error) = parse_json(br#"{"query": 1}"#) else {
            panic!("a number is no query")
        };
        assert!(
            error.to_string().contains("invalid type: integer"),
            "{error}"
        );
    }
}
