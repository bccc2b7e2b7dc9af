//! How failures reach clients. Expected failures of queries are `null` ("not found") or a
//! top-level error with a stable `extensions.code`; unexpected ones are logged once with their
//! cause chain and shown as a generic `INTERNAL_SERVER_ERROR`, so no SQL text ever leaks.

use std::error::Error as StdError;
use std::fmt::Write as _;

use async_graphql::{Error, ErrorExtensions};

use std::sync::Arc;

use crate::service::ServiceError;
use crate::service::auth::Refused;

/// What a failed loader batch gives every field that waited on it: shared, because one
/// failure answers many keys (the loader's error type must be `Clone`).
pub type LoadError = Arc<ServiceError>;

pub const FORBIDDEN: &str = "FORBIDDEN";
pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
pub const INTERNAL_SERVER_ERROR: &str = "INTERNAL_SERVER_ERROR";

fn coded(message: impl Into<String>, code: &'static str) -> Error {
    Error::new(message).extend_with(|_, e| e.set("code", code))
}

pub fn forbidden() -> Error {
    coded("not allowed for this caller", FORBIDDEN)
}

/// A refused caller: `UNAUTHENTICATED` without a token (the client should log in),
/// `FORBIDDEN` with one that lacks the scope or the hotel.
pub fn refused(refusal: Refused) -> Error {
    match refusal {
        Refused::Unauthenticated => coded(refusal.to_string(), UNAUTHENTICATED),
        Refused::Forbidden => forbidden(),
    }
}

pub fn bad_input(message: impl Into<String>) -> Error {
    coded(message, BAD_USER_INPUT)
}

/// Logs `cause` with its whole chain and returns the generic error clients see.
pub fn unexpected(cause: &(dyn StdError + 'static)) -> Error {
    log_unexpected(cause);
    internal()
}

/// Logs an unexpected failure with its whole chain. Call it once per failure: a failed loader
/// batch is logged where it fails, not once per field waiting on it.
pub fn log_unexpected(cause: &(dyn StdError + 'static)) {
    let mut chain = cause.to_string();
    let mut source = cause.source();
    while let Some(inner) = source {
        let _ = write!(chain, ": {inner}");
        source = inner.source();
    }
    tracing::error!(error = %chain, "request failed");
}

/// The generic error clients see for an unexpected failure (logged elsewhere).
fn internal() -> Error {
    coded("internal server error", INTERNAL_SERVER_ERROR)
}

pub fn service(error: &ServiceError) -> Error {
    match error {
        ServiceError::Forbidden => forbidden(),
        other => unexpected(other),
    }
}

/// For `.map_err(load)` on loader results. The loader logged the failure already, once for
/// its batch (see [`super::loader`]): every field that waited on the batch gets the same error.
pub fn load(error: LoadError) -> Error {
    match &*error {
        ServiceError::Forbidden => forbidden(),
        _ => internal(),
    }
}
