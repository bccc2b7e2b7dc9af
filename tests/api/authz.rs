//! Who may do what: an authorization matrix over real tokens, RS256 with issuer and audience,
//! and atomicity when a write fails half-way.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use images_subgraph::http::auth::{Claims, mint};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::helpers::{JWT_SECRET, TestApp, gallery, operation, spawn_app, spawn_app_with};

const HOTEL_A: i64 = 12;
const HOTEL_B: i64 = 13;

/// Everything a refused call must leave alone.
async fn snapshot(app: &TestApp) -> Value {
    let backend = app.core.db.get_database_backend();
    let mut out = serde_json::Map::new();
    for sql in [
        "SELECT COUNT(*) FROM audit_log",
        "SELECT COUNT(*) FROM outbox",
        "SELECT COUNT(*) FROM main_image_override",
        "SELECT COUNT(*) FROM image WHERE status = 'INACTIVE'",
        "SELECT COUNT(*) FROM hotel_image WHERE status = 'INACTIVE'",
        "SELECT COALESCE(SUM(version), 0) FROM hotel",
        "SELECT COUNT(*) FROM image_tag",
    ] {
        let row = app
            .core
            .db
            .query_one_raw(Statement::from_string(backend, sql.to_owned()))
            .await
            .unwrap()
            .unwrap();
        let value = row
            .try_get_by_index::<i64>(0)
            .or_else(|_| {
                row.try_get_by_index::<sea_orm::prelude::Decimal>(0)
                    .map(|d| d.to_string().parse().unwrap())
            })
            .unwrap();
        out.insert(sql.to_owned(), json!(value));
    }
    Value::Object(out)
}

fn claims(scope: &str, hotels: &[i64], exp: u64) -> Claims {
    Claims {
        sub: format!("matrix:{scope}"),
        exp,
        scope: scope.to_owned(),
        hotel_ids: hotels.iter().map(|h| json!(h)).collect(),
        partner_id: Some(json!(1)),
    }
}

fn later() -> u64 {
    jsonwebtoken::get_current_timestamp() + 600
}

fn unsigned_token() -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let body =
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims("images:admin", &[], later())).unwrap());
    format!("{header}.{body}.")
}

#[tokio::test]
async fn the_authorization_matrix_holds_and_refused_calls_change_nothing() {
    let app = spawn_app().await;
    let a_images = gallery(&app, HOTEL_A).await;
    let b_images = gallery(&app, HOTEL_B).await;
    let secret = JWT_SECRET.as_bytes();
    let actors: Vec<(&str, Option<String>)> = vec![
        ("anonymous", None),
        (
            "hotelier of A",
            Some(mint(secret, &claims("images:hotelier", &[HOTEL_A], later())).unwrap()),
        ),
        (
            "importer",
            Some(mint(secret, &claims("images:import", &[], later())).unwrap()),
        ),
        (
            "classifier",
            Some(mint(secret, &claims("images:classify", &[], later())).unwrap()),
        ),
        (
            "admin",
            Some(mint(secret, &claims("images:admin", &[], later())).unwrap()),
        ),
        (
            "expired",
            Some(mint(secret, &claims("images:admin", &[], 1_000)).unwrap()),
        ),
        (
            "wrong signature",
            Some(mint(b"another-secret", &claims("images:admin", &[], later())).unwrap()),
        ),
        ("alg none", Some(unsigned_token())),
    ];
    let set_main = operation("studio/SetMainImage.graphql");
    let classify = operation("pipelines/ClassifyImages.graphql");
    let deactivate = operation("admin/DeactivateImage.graphql");
    let calls: Vec<(&str, &str, Value)> = vec![
        (
            "main image of A",
            &set_main,
            json!({ "input": { "hotelId": HOTEL_A.to_string(), "imageId": a_images[1] } }),
        ),
        (
            "main image of B",
            &set_main,
            json!({ "input": { "hotelId": HOTEL_B.to_string(), "imageId": b_images[1] } }),
        ),
        (
            "B's image as A's main",
            &set_main,
            json!({ "input": { "hotelId": HOTEL_A.to_string(), "imageId": b_images[2] } }),
        ),
        (
            "classify",
            &classify,
            json!({ "input": { "items": [{ "imageId": a_images[3], "tags": [{ "category": "SPA", "confidence": 0.5 }] }] } }),
        ),
        (
            "deactivate for B",
            &deactivate,
            json!({ "input": { "imageId": b_images[3], "reason": "test", "hotelIds": [HOTEL_B.to_string()] } }),
        ),
    ];
    use Outcome::*;
    #[derive(Debug, PartialEq, Clone, Copy)]
    enum Outcome {
        Done,
        Forbidden,
        Unauthenticated,
        NotLinked,
    }
    let expected: [(&str, [Outcome; 5]); 8] = [
        // No token at all: the client must log in (`UNAUTHENTICATED`); `FORBIDDEN` is for a
        // caller who did, without the scope or the hotel.
        ("anonymous", [Unauthenticated; 5]),
        (
            "hotelier of A",
            [Done, Forbidden, NotLinked, Forbidden, Forbidden],
        ),
        (
            "importer",
            [Forbidden, Forbidden, Forbidden, Forbidden, Forbidden],
        ),
        (
            "classifier",
            [Forbidden, Forbidden, Forbidden, Done, Forbidden],
        ),
        ("admin", [Done, Done, NotLinked, Done, Done]),
        ("expired", [Unauthenticated; 5]),
        ("wrong signature", [Unauthenticated; 5]),
        ("alg none", [Unauthenticated; 5]),
    ];
    for ((name, token), (expected_name, outcomes)) in actors.iter().zip(expected) {
        assert_eq!(*name, expected_name);
        for ((call, query, variables), want) in calls.iter().zip(outcomes) {
            let before = snapshot(&app).await;
            let answer = app
                .graphql_with(query, variables.clone(), token.as_deref())
                .await;
            let codes = answer.error_codes();
            let user_errors: Vec<&str> = answer
                .data()
                .as_object()
                .and_then(|d| d.values().next())
                .and_then(|p| p["userErrors"].as_array())
                .map(|errors| errors.iter().map(|e| e["code"].as_str().unwrap()).collect())
                .unwrap_or_default();
            let got = match (codes.first().map(String::as_str), user_errors.first()) {
                (Some("FORBIDDEN"), _) => Forbidden,
                (Some("UNAUTHENTICATED"), _) => Unauthenticated,
                (None, Some(&"IMAGE_NOT_LINKED")) => NotLinked,
                (None, None) => Done,
                other => panic!("{name} / {call}: unexpected {other:?}: {:#}", answer.body),
            };
            assert_eq!(got, want, "{name} / {call}: {:#}", answer.body);
            if got != Done {
                assert_eq!(
                    snapshot(&app).await,
                    before,
                    "{name} / {call} changed the catalog"
                );
            }
        }
    }
}

#[tokio::test]
async fn rs256_tokens_with_issuer_and_audience_are_verified() {
    let public = include_str!("../fixtures/jwt-test-public.pem");
    let private = include_bytes!("../fixtures/jwt-test-private.pem");
    let app = spawn_app_with(|s| {
        s.jwt_public_key = Some(public.parse().unwrap());
        s.jwt_issuer = Some("https://auth.example".into());
        s.jwt_audience = Some("images".into());
    })
    .await;
    let key = EncodingKey::from_rsa_pem(private).unwrap();
    let token = |iss: &str, aud: &str, alg: Algorithm| {
        let claims = json!({ "sub": "rsa", "exp": later(), "scope": "images:admin", "iss": iss, "aud": aud });
        match alg {
            Algorithm::RS256 => jsonwebtoken::encode(&Header::new(alg), &claims, &key).unwrap(),
            _ => jsonwebtoken::encode(
                &Header::new(alg),
                &claims,
                &EncodingKey::from_secret(public.as_bytes()),
            )
            .unwrap(),
        }
    };
    let query = "{ hotel(id: 1) { version } }";
    let good = app
        .graphql_as(
            &token("https://auth.example", "images", Algorithm::RS256),
            query,
            json!({}),
        )
        .await;
    assert!(good.ok()["hotel"]["version"].as_i64().is_some());
    for bad in [
        token("https://evil.example", "images", Algorithm::RS256),
        token("https://auth.example", "other", Algorithm::RS256),
        // The classic confusion: HS256 signed with the public key as the secret.
        token("https://auth.example", "images", Algorithm::HS256),
    ] {
        assert_eq!(
            app.graphql_as(&bad, query, json!({})).await.error_codes(),
            ["UNAUTHENTICATED"]
        );
    }
}

#[tokio::test]
async fn a_failure_half_way_leaves_catalog_audit_and_outbox_unchanged_and_leaks_no_sql() {
    let app = spawn_app().await;
    let images = gallery(&app, HOTEL_A).await;
    // Inject a constraint violation into the last writes of a change: a second audit row with
    // the same operation cannot be inserted.
    let db = &app.core.db;
    db.execute_unprepared(
        "INSERT INTO audit_log (created_at, actor, operation, entity_ids) VALUES ('2026-01-01 00:00:00', 'test', 'setMainImage', '[]')",
    )
    .await
    .unwrap();
    db.execute_unprepared("CREATE UNIQUE INDEX test_inject_failure ON audit_log (operation)")
        .await
        .unwrap();
    let before = snapshot(&app).await;
    let main_before = gallery(&app, HOTEL_A).await;

    let answer = app
        .graphql_as(
            &app.admin(),
            &operation("studio/SetMainImage.graphql"),
            json!({ "input": { "hotelId": HOTEL_A.to_string(), "imageId": images[2] } }),
        )
        .await;
    assert_eq!(
        answer.error_codes(),
        ["INTERNAL_SERVER_ERROR"],
        "{:#}",
        answer.body
    );
    let message = answer.body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_lowercase();
    assert_eq!(message, "internal server error");
    for leak in [
        "unique",
        "constraint",
        "duplicate",
        "audit_log",
        "sql",
        "insert",
    ] {
        assert!(
            !answer.body.to_string().to_lowercase().contains(leak),
            "leaks {leak}: {:#}",
            answer.body
        );
    }
    assert_eq!(snapshot(&app).await, before);
    assert_eq!(gallery(&app, HOTEL_A).await, main_before);
}

#[tokio::test]
async fn internal_fields_need_a_token_first_and_then_the_right_one() {
    let app = spawn_app().await;
    let query = format!("{{ hotel(id: \"{HOTEL_B}\") {{ version }} }}");
    let anonymous = app.graphql_with(&query, json!({}), None).await;
    assert_eq!(
        anonymous.error_codes(),
        ["UNAUTHENTICATED"],
        "{:#}",
        anonymous.body
    );
    let other_hotel = mint(
        JWT_SECRET.as_bytes(),
        &claims("images:hotelier", &[HOTEL_A], later()),
    )
    .unwrap();
    let refused = app
        .graphql_with(&query, json!({}), Some(&other_hotel))
        .await;
    assert_eq!(refused.error_codes(), ["FORBIDDEN"], "{:#}", refused.body);
    let image = "{ images(ids: [\"1\"]) { legacyIds } }";
    let anonymous = app.graphql_with(image, json!({}), None).await;
    assert_eq!(
        anonymous.error_codes(),
        ["UNAUTHENTICATED"],
        "{:#}",
        anonymous.body
    );
}
