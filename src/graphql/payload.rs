//! What every mutation shares: the `UserError` type of its payload, parsing input IDs into
//! user errors, the [`Caller`] behind the request, the services the schema was built with,
//! and sorting a use case's outcome into the payload's user errors and top-level errors.
//!
//! A refused caller is a top-level `UNAUTHENTICATED` (no token) or `FORBIDDEN` (a token without
//! the right); an expected failure is a `userErrors` entry
//! (nothing changed); anything else, including a schema built without a service a mutation
//! needs, is logged once and shown as a generic `INTERNAL_SERVER_ERROR`.

use async_graphql::{Context, Enum, ID, InputObject, Result, SimpleObject};

use super::error::{refused, unexpected};
use super::loader::{Loaders, forget_all};
use super::types::ImageCategory;
use crate::service::auth::Actor;
use crate::service::idempotency::Claim;
use crate::service::manage::TagInput;
use crate::service::write::{self, Caller, Failure};

/// The request's ID, for the audit log (set by the transport).
#[derive(Debug, Clone, Default)]
pub struct RequestId(pub Option<String>);

// Published as `ImagesUserErrorCode` and `ImagesUserError`: neighbouring subgraphs declare
// their own `UserError` with other fields, and two value types of one name would not compose.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(
    name = "ImagesUserErrorCode",
    remote = "crate::service::write::UserErrorCode"
)]
pub enum UserErrorCode {
    NotFound,
    StaleVersion,
    ImageNotLinked,
    ImageInactive,
    ImageNotEligible,
    InvalidInput,
    TooManyItems,
    NotAnImage,
    UnsupportedFormat,
    DecodeError,
    TooManyPixels,
    NotAnUpload,
    Purged,
}

/// An expected failure: nothing was changed.
#[derive(SimpleObject, Debug, Clone)]
#[graphql(name = "ImagesUserError")]
pub struct UserError {
    pub code: UserErrorCode,
    /// Path to the input field at fault, e.g. `["items", "3", "imageId"]`.
    pub field: Option<Vec<String>>,
    pub message: String,
}

impl From<write::UserError> for UserError {
    fn from(error: write::UserError) -> Self {
        Self {
            code: error.code.into(),
            field: (!error.field.is_empty()).then_some(error.field),
            message: error.message,
        }
    }
}

// A tag as a client sends it (`updateImage`, `classifyImages`, `importImages`). A plain
// comment: a doc comment would become a description in the published SDL.
#[derive(InputObject, Clone, Copy)]
pub struct ImageTagInput {
    pub category: ImageCategory,
    /// In 0..1.
    pub confidence: f64,
}

impl From<ImageTagInput> for TagInput {
    fn from(input: ImageTagInput) -> Self {
        TagInput {
            category: input.category.into(),
            confidence: input.confidence,
        }
    }
}

/// An input ID, parsed; a malformed one is `INVALID_INPUT` at `field`.
pub fn parse_id<T: std::str::FromStr>(id: &ID, field: &[&str]) -> Result<T, write::UserError> {
    id.parse().map_err(|_| {
        write::UserError::new(write::UserErrorCode::InvalidInput, field, "not a valid ID")
    })
}

/// A list of input IDs, parsed; a malformed one is named by its position in `field`.
pub fn parse_ids<T: std::str::FromStr>(
    ids: &[ID],
    field: &str,
) -> Result<Vec<T>, write::UserError> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| parse_id(id, &[field, &i.to_string()]))
        .collect()
}

/// Splits a use case's outcome into the payload's user errors and top-level errors.
pub fn outcome<T, E: Into<Failure>>(result: Result<T, E>) -> Result<Result<T, Vec<UserError>>> {
    match result.map_err(Into::into) {
        Ok(value) => Ok(Ok(value)),
        Err(Failure::User(error)) => Ok(Err(vec![error.into()])),
        Err(Failure::Refused(refusal)) => Err(refused(refusal)),
        Err(Failure::Unexpected(cause)) => Err(unexpected(&cause)),
    }
}

/// The caller behind the request: its actor, request ID and idempotency key (the transport
/// sets them).
pub fn caller(ctx: &Context<'_>) -> Result<Caller> {
    Ok(Caller {
        actor: needed::<Actor>(ctx, "the caller's actor")?.clone(),
        request_id: ctx.data::<RequestId>().ok().and_then(|r| r.0.clone()),
        idempotency: ctx.data_opt::<Claim>().cloned(),
    })
}

/// A service the schema was built with; its absence (e.g. uploads in a schema built only to
/// export the SDL) is a bug of the process, not the caller's fault.
pub fn service<'a, T: Send + Sync + 'static>(ctx: &Context<'a>) -> Result<&'a T> {
    needed(ctx, std::any::type_name::<T>())
}

fn needed<'a, T: Send + Sync + 'static>(ctx: &Context<'a>, what: &str) -> Result<&'a T> {
    ctx.data_opt::<T>().ok_or_else(|| {
        unexpected(&MissingData {
            what: what.to_owned(),
        })
    })
}

/// The schema lacks something a resolver needs.
#[derive(Debug, thiserror::Error)]
#[error("the schema was built without {what}")]
struct MissingData {
    what: String,
}

/// Forgets what earlier root fields of this request loaded, so that a mutation's payload shows
/// the state after its own change. Every mutation calls it before its change.
pub fn forget_loaded(ctx: &Context<'_>) {
    if let Ok(loaders) = ctx.data::<Loaders>() {
        forget_all(loaders);
    }
}
