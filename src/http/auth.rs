//! Turning the `Authorization` header into an [`Actor`] at the HTTP boundary.
//!
//! Bearer JWTs: HS256 with a shared secret or RS256 with a public key. The algorithm is pinned
//! (a token signed otherwise, or `alg: none`, is refused), `exp` and `sub` are required, a
//! configured issuer or audience is required too (a token without the claim is refused like
//! one with a wrong value), and `nbf` is honoured when present (60 s of clock skew, as for
//! `exp`). The scheme is matched without regard to case (RFC 7235).
//! A request without a token is anonymous; a request with a bad token is rejected, never
//! treated as anonymous.

use std::collections::BTreeSet;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::domain::catalog::{HotelId, PartnerId};
use crate::service::auth::{Actor, Scope};

/// The claims this service reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    /// Space-separated scopes, e.g. `images:hotelier`.
    #[serde(default)]
    pub scope: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hotel_ids: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_id: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("the Authorization header is not a Bearer token")]
    Malformed,
    #[error("the token is invalid or expired")]
    Invalid,
    #[error("this deployment accepts no tokens")]
    NotConfigured,
}

/// Verifies tokens. `None` key: tokens are refused (a deployment without a configured key).
#[derive(Clone)]
pub struct Authenticator {
    key: Option<DecodingKey>,
    validation: Validation,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("configured", &self.key.is_some())
            .finish()
    }
}

/// How tokens are verified.
pub enum TokenKey<'a> {
    Hs256Secret(&'a [u8]),
    /// A PEM-encoded RSA public key.
    Rs256PublicKey(&'a [u8]),
}

impl Authenticator {
    /// An authenticator for HS256 tokens (`None`: tokens are refused).
    pub fn hs256(secret: Option<&[u8]>) -> Self {
        Self {
            key: secret.map(DecodingKey::from_secret),
            validation: validation(Algorithm::HS256, None, None),
        }
    }

    /// An authenticator for `key`, checking issuer and audience when given.
    pub fn new(
        key: Option<TokenKey<'_>>,
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> Result<Self, jsonwebtoken::errors::Error> {
        let (algorithm, key) = match key {
            None => (Algorithm::HS256, None),
            Some(TokenKey::Hs256Secret(secret)) => {
                (Algorithm::HS256, Some(DecodingKey::from_secret(secret)))
            }
            Some(TokenKey::Rs256PublicKey(pem)) => {
                (Algorithm::RS256, Some(DecodingKey::from_rsa_pem(pem)?))
            }
        };
        Ok(Self {
            key,
            validation: validation(algorithm, issuer, audience),
        })
    }

    /// The caller of a request: anonymous without an `Authorization` header.
    pub fn actor(&self, headers: &HeaderMap) -> Result<Actor, AuthError> {
        let Some(value) = headers.get(AUTHORIZATION) else {
            return Ok(Actor::anonymous());
        };
        let token = value
            .to_str()
            .ok()
            .and_then(bearer_token)
            .ok_or(AuthError::Malformed)?;
        let key = self.key.as_ref().ok_or(AuthError::NotConfigured)?;
        let claims = jsonwebtoken::decode::<Claims>(token.trim(), key, &self.validation)
            .map_err(|_| AuthError::Invalid)?
            .claims;
        Ok(actor_of(claims))
    }
}

/// What a token must carry: `exp` and `sub` always; `iss` and `aud` when configured (the
/// library checks only the values of claims that are present unless they are required), and
/// `nbf` is checked when present.
fn validation(algorithm: Algorithm, issuer: Option<&str>, audience: Option<&str>) -> Validation {
    let mut validation = Validation::new(algorithm);
    let mut required = vec!["exp", "sub"];
    if let Some(issuer) = issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    match audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    validation.validate_nbf = true;
    validation
}

/// The token of a `Bearer` credential; the scheme is case-insensitive (RFC 7235 section 2.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// IDs in claims may be numbers or strings; anything else is ignored.
fn positive(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn actor_of(claims: Claims) -> Actor {
    Actor {
        subject: Some(claims.sub),
        scopes: claims
            .scope
            .split_whitespace()
            .filter_map(Scope::parse)
            .collect(),
        hotel_ids: claims
            .hotel_ids
            .iter()
            .filter_map(positive)
            .filter_map(HotelId::new)
            .collect::<BTreeSet<_>>(),
        partner_id: claims
            .partner_id
            .as_ref()
            .and_then(positive)
            .and_then(PartnerId::new),
    }
}

/// Mints an HS256 token (the `token` command and tests).
pub fn mint(secret: &[u8], claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    mint_for(secret, claims, None, None)
}

/// Mints an HS256 token that also names `issuer` and `audience` (the `token` command of a
/// deployment that requires them). They are added beside [`Claims`] rather than in it, so that
/// the claims this service reads stay one plain struct.
pub fn mint_for(
    secret: &[u8],
    claims: &Claims,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> Result<String, jsonwebtoken::errors::Error> {
    #[derive(Serialize)]
    struct Registered<'a> {
        #[serde(flatten)]
        claims: &'a Claims,
        #[serde(skip_serializing_if = "Option::is_none")]
        iss: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        aud: Option<&'a str>,
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &Registered {
            claims,
            iss: issuer,
            aud: audience,
        },
        &EncodingKey::from_secret(secret),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(token).unwrap());
        headers
    }

    fn claims(scope: &str, exp: u64) -> Claims {
        Claims {
            sub: "alice".into(),
            exp,
            scope: scope.into(),
            hotel_ids: vec![serde_json::json!(1), serde_json::json!("2")],
            partner_id: None,
        }
    }

    fn in_an_hour() -> u64 {
        jsonwebtoken::get_current_timestamp() + 3600
    }

    #[test]
    fn tokens_become_actors_and_bad_tokens_are_rejected() {
        let auth = Authenticator::hs256(Some(b"secret"));
        assert_eq!(auth.actor(&HeaderMap::new()), Ok(Actor::anonymous()));

        let good = mint(b"secret", &claims("images:hotelier openid", in_an_hour())).unwrap();
        let actor = auth.actor(&headers(&format!("Bearer {good}"))).unwrap();
        assert_eq!(actor.subject.as_deref(), Some("alice"));
        assert!(actor.has(Scope::Hotelier) && !actor.is_admin());
        assert_eq!(actor.hotel_ids.len(), 2);

        let expired = mint(b"secret", &claims("images:admin", 1_000)).unwrap();
        let wrong_key = mint(b"other", &claims("images:admin", in_an_hour())).unwrap();
        let cases = [
            (format!("Bearer {expired}"), AuthError::Invalid),
            (format!("Bearer {wrong_key}"), AuthError::Invalid),
            ("Bearer not.a.token".to_owned(), AuthError::Invalid),
            (format!("Basic {good}"), AuthError::Malformed),
            (format!("Bearer{good}"), AuthError::Malformed),
        ];
        for scheme in ["bearer", "BEARER", "bEaReR"] {
            assert!(
                auth.actor(&headers(&format!("{scheme} {good}"))).is_ok(),
                "{scheme}"
            );
        }
        for (header, want) in cases {
            assert_eq!(auth.actor(&headers(&header)), Err(want), "{header}");
        }
        let unconfigured = Authenticator::hs256(None);
        assert_eq!(
            unconfigured.actor(&headers(&format!("Bearer {good}"))),
            Err(AuthError::NotConfigured)
        );
    }
}
