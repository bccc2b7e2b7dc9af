//! Idempotency keys: a mutation request sent again with the same `Idempotency-Key` (its answer
//! was lost) gets the first answer and is not applied twice; the key with another request is
//! refused; callers' keys are their own; keys expire.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

use crate::helpers::{Answer, TestApp, spawn_app, spawn_app_with};

const SET_MAIN: &str = "mutation($input: SetMainImageInput!) {
    setMainImage(input: $input) { hotel { version mainImage { id } } userErrors { code field } } }";

/// Version and gallery image IDs of `hotel`.
async fn version_and_gallery(app: &TestApp, hotel: i64) -> (i64, Vec<String>) {
    let data = app
        .graphql_as(
            &app.admin(),
            "query($id: ID!) { hotel(id: $id) { version gallery(first: 10) { nodes { id } } } }",
            json!({ "id": hotel.to_string() }),
        )
        .await
        .ok();
    let version = data["hotel"]["version"].as_i64().expect("a version");
    let gallery = data["hotel"]["gallery"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| n["id"].as_str().expect("an ID").to_owned())
        .collect();
    (version, gallery)
}

fn set_main_input(hotel: i64, image: &str, version: i64) -> Value {
    json!({ "input": { "hotelId": hotel.to_string(), "imageId": image, "expectedVersion": version } })
}

/// Audit rows and outbox events written so far.
async fn journal(app: &TestApp) -> (i64, i64) {
    (
        app.scalar("SELECT COUNT(*) FROM audit_log").await,
        app.scalar("SELECT COUNT(*) FROM outbox").await,
    )
}

fn replayed(answer: &Answer) -> bool {
    answer
        .headers
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true")
}

#[tokio::test]
async fn a_retry_with_the_same_key_gets_the_first_answer_and_is_not_applied_again() {
    let app = spawn_app().await;
    let admin = app.admin();
    let (version, gallery) = version_and_gallery(&app, 3).await;
    let input = set_main_input(3, &gallery[2], version);

    let first = app
        .graphql_keyed(&admin, "key-1", SET_MAIN, input.clone())
        .await;
    let journal_after_first = journal(&app).await;
    let retry = app
        .graphql_keyed(&admin, "key-1", SET_MAIN, input.clone())
        .await;

    assert_eq!(first.status, 200);
    let payload = &first.body["data"]["setMainImage"];
    assert_eq!(payload["userErrors"], json!([]), "{:#}", first.body);
    assert_eq!(payload["hotel"]["version"], version + 1);
    assert!(!replayed(&first));
    assert_eq!(retry.status, 200);
    assert_eq!(retry.body, first.body, "the retry gets the first answer");
    assert!(replayed(&retry), "the retry says it is a replay");
    assert_eq!(
        version_and_gallery(&app, 3).await.0,
        version + 1,
        "applied once"
    );
    assert_eq!(
        journal(&app).await,
        journal_after_first,
        "no second audit row, no second event"
    );
    // Without a key, the same retry is refused for its own change: what keys are for.
    let unkeyed = app.graphql_as(&admin, SET_MAIN, input).await.ok();
    assert_eq!(
        unkeyed["setMainImage"]["userErrors"][0]["code"],
        "STALE_VERSION"
    );
}

#[tokio::test]
async fn a_retry_gets_the_first_answer_with_its_status() {
    let app = spawn_app().await;
    // Under the GraphQL-over-HTTP media type, a request that fails before execution (here its
    // variables do not coerce) is answered 400; its retry must be too, not 200.
    let send = || {
        app.client
            .post(app.url("/graphql"))
            .bearer_auth(app.admin())
            .header("idempotency-key", "status-of-the-first-answer")
            .header("accept", "application/graphql-response+json")
            .json(&json!({ "query": SET_MAIN, "variables": { "input": { "hotelId": "3" } } }))
            .send()
    };
    let first = crate::helpers::answer(send().await.expect("sent")).await;
    assert_eq!(first.status, 400, "{:?}", first.body);
    let again = crate::helpers::answer(send().await.expect("sent")).await;
    assert!(replayed(&again));
    assert_eq!(again.status, first.status);
    assert_eq!(again.content_type, first.content_type);
    assert_eq!(again.body, first.body);
}

#[tokio::test]
async fn the_same_key_with_another_request_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let admin = app.admin();
    let (version, gallery) = version_and_gallery(&app, 5).await;
    app.graphql_keyed(
        &admin,
        "key-2",
        SET_MAIN,
        set_main_input(5, &gallery[1], version),
    )
    .await
    .ok();
    let journal_before = journal(&app).await;

    let other = app
        .graphql_keyed(
            &admin,
            "key-2",
            SET_MAIN,
            set_main_input(5, &gallery[2], version + 1),
        )
        .await;

    assert_eq!(other.status, 422, "{:#}", other.body);
    assert_eq!(other.error_codes(), ["IDEMPOTENCY_KEY_REUSED"]);
    assert_eq!(other.body["data"], Value::Null);
    assert_eq!(version_and_gallery(&app, 5).await.0, version + 1);
    assert_eq!(
        crate::helpers::main_image(&app, 5).await.as_deref(),
        Some(gallery[1].as_str())
    );
    assert_eq!(journal(&app).await, journal_before);
}

#[tokio::test]
async fn the_same_key_of_two_callers_is_two_keys() {
    let app = spawn_app().await;
    let (admin, hotelier) = (app.admin(), app.token("images:hotelier", &[6]));
    let (version, gallery) = version_and_gallery(&app, 6).await;

    let by_admin = app
        .graphql_keyed(
            &admin,
            "shared",
            SET_MAIN,
            set_main_input(6, &gallery[1], version),
        )
        .await
        .ok();
    let by_hotelier = app
        .graphql_keyed(
            &hotelier,
            "shared",
            SET_MAIN,
            set_main_input(6, &gallery[2], version + 1),
        )
        .await
        .ok();

    assert_eq!(by_admin["setMainImage"]["hotel"]["version"], version + 1);
    let hotelier_payload = &by_hotelier["setMainImage"];
    assert_eq!(hotelier_payload["userErrors"], json!([]));
    assert_eq!(hotelier_payload["hotel"]["version"], version + 2);
    assert_eq!(
        hotelier_payload["hotel"]["mainImage"]["id"],
        gallery[2].as_str()
    );
}

#[tokio::test]
async fn a_key_is_forgotten_once_it_expires_and_expired_keys_are_deleted() {
    // 2 s: MariaDB keeps whole seconds, so a key may expire up to a second early there.
    let app = spawn_app_with(|s| {
        s.idempotency_ttl_secs = 2;
        s.request_timeout_ms = 1_000; // shorter than the TTL, as `check` requires
    })
    .await;
    let admin = app.admin();
    let (version, gallery) = version_and_gallery(&app, 7).await;
    app.graphql_keyed(
        &admin,
        "old",
        SET_MAIN,
        set_main_input(7, &gallery[1], version),
    )
    .await
    .ok();
    app.graphql_keyed(
        &admin,
        "older",
        SET_MAIN,
        set_main_input(7, &gallery[2], version + 1),
    )
    .await
    .ok();
    assert_eq!(app.scalar("SELECT COUNT(*) FROM idempotency_key").await, 2);
    tokio::time::sleep(Duration::from_millis(2_100)).await;

    let again = app
        .graphql_keyed(
            &admin,
            "old",
            SET_MAIN,
            set_main_input(7, &gallery[3], version + 2),
        )
        .await
        .ok();

    assert_eq!(
        again["setMainImage"]["hotel"]["mainImage"]["id"],
        gallery[3].as_str(),
        "the expired key is a new key: another request runs"
    );
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM idempotency_key").await,
        1,
        "the other expired key was deleted"
    );
}

#[tokio::test]
async fn two_duplicates_sent_at_once_are_applied_once() {
    let app = spawn_app().await;
    let admin = app.admin();
    let (version, gallery) = version_and_gallery(&app, 8).await;
    let input = set_main_input(8, &gallery[2], version);
    let (audit_before, _) = journal(&app).await;

    let (a, b) = tokio::join!(
        app.graphql_keyed(&admin, "twice", SET_MAIN, input.clone()),
        app.graphql_keyed(&admin, "twice", SET_MAIN, input.clone()),
    );

    for answer in [&a, &b] {
        match answer.status.as_u16() {
            200 => assert_eq!(
                answer.body["data"]["setMainImage"]["userErrors"],
                json!([]),
                "{:#}",
                answer.body
            ),
            409 => {
                assert_eq!(answer.error_codes(), ["IDEMPOTENCY_KEY_IN_USE"]);
                assert!(answer.headers.contains_key("retry-after"));
            }
            other => panic!("unexpected status {other}: {:#}", answer.body),
        }
    }
    assert_eq!(version_and_gallery(&app, 8).await.0, version + 1);
    assert_eq!(journal(&app).await.0, audit_before + 1, "one audit row");
}

#[tokio::test]
async fn a_client_that_hangs_up_after_sending_gets_the_first_answer_on_retry() {
    let app = spawn_app().await;
    let admin = app.admin();
    let (version, gallery) = version_and_gallery(&app, 9).await;
    let input = set_main_input(9, &gallery[1], version);
    let body = json!({ "query": SET_MAIN, "variables": input }).to_string();
    let host = app.base.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&host)
        .await
        .expect("connect");
    let head = format!(
        "POST /graphql HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\nauthorization: Bearer {admin}\r\nidempotency-key: lost-reply\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    socket
        .write_all(format!("{head}{body}").as_bytes())
        .await
        .expect("sent");
    // The client gives up at once: it never reads the answer.
    drop(socket);

    let mut kept = false;
    for _ in 0..100 {
        let sql = "SELECT COUNT(*) FROM idempotency_key WHERE response IS NOT NULL";
        if app.scalar(sql).await == 1 {
            kept = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(kept, "the request ran to its end and its answer was kept");
    let retry = app
        .graphql_keyed(&admin, "lost-reply", SET_MAIN, input)
        .await;

    assert!(replayed(&retry));
    let payload = &retry.body["data"]["setMainImage"];
    assert_eq!(payload["userErrors"], json!([]), "{:#}", retry.body);
    assert_eq!(payload["hotel"]["version"], version + 1);
    assert_eq!(payload["hotel"]["mainImage"]["id"], gallery[1].as_str());
    assert_eq!(version_and_gallery(&app, 9).await.0, version + 1);
}

#[tokio::test]
async fn a_malformed_key_is_refused_and_queries_ignore_the_header() {
    let app = spawn_app().await;
    let admin = app.admin();
    let (version, gallery) = version_and_gallery(&app, 10).await;

    let long = "k".repeat(256);
    let refused = app
        .graphql_keyed(
            &admin,
            &long,
            SET_MAIN,
            set_main_input(10, &gallery[1], version),
        )
        .await;
    let query = app
        .graphql_keyed(&admin, "q", "{ hotel(id: 10) { version } }", json!({}))
        .await
        .ok();

    assert_eq!(refused.status, 400);
    assert_eq!(refused.error_codes(), ["IDEMPOTENCY_KEY_INVALID"]);
    assert_eq!(version_and_gallery(&app, 10).await.0, version);
    assert_eq!(query["hotel"]["version"], version);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM idempotency_key").await, 0);
}

#[tokio::test]
async fn a_commit_whose_reply_was_lost_answers_as_applied_and_its_retry_gets_that_answer() {
    let Some(proxy) = crate::faults::database_proxy().await else {
        eprintln!("skipped: needs a database server (TEST_DATABASE_URL)");
        return;
    };
    let app = spawn_app_with(|s| {
        crate::faults::through(&proxy, s);
        // Plain text, so that the proxy sees the statements.
        let mut url = url::Url::parse(&s.database_url()).expect("a URL");
        let plain = if url.scheme().starts_with("postgres") {
            ("sslmode", "disable")
        } else {
            ("ssl-mode", "disabled")
        };
        url.query_pairs_mut().append_pair(plain.0, plain.1);
        s.database_url = Some(url.to_string().parse().expect("URL"));
    })
    .await;
    let admin = app.admin();
    let (version, gallery) = version_and_gallery(&app, 11).await;
    let input = set_main_input(11, &gallery[1], version);
    // The change's transaction counts itself under the key, then commits: the COMMIT reaches
    // the server, its reply does not come back.
    proxy.lose_reply(&["UPDATE", "idempotency_key", "changes"], "COMMIT");

    let first = app
        .graphql_keyed(&admin, "commit-lost", SET_MAIN, input.clone())
        .await;
    let retry = app
        .graphql_keyed(&admin, "commit-lost", SET_MAIN, input)
        .await;

    let payload = &first.body["data"]["setMainImage"];
    assert_eq!(payload["userErrors"], json!([]), "{:#}", first.body);
    assert_eq!(payload["hotel"]["version"], version + 1);
    assert!(replayed(&retry));
    assert_eq!(retry.body, first.body);
    assert_eq!(version_and_gallery(&app, 11).await.0, version + 1);
}

#[tokio::test]
async fn a_key_covers_a_whole_batch_whose_retry_gets_the_whole_first_answer() {
    let app = spawn_app().await;
    let admin = app.admin();
    let (v12, g12) = version_and_gallery(&app, 12).await;
    let (v13, g13) = version_and_gallery(&app, 13).await;
    let batch = json!([
        { "query": SET_MAIN, "variables": set_main_input(12, &g12[1], v12) },
        { "query": SET_MAIN, "variables": set_main_input(13, &g13[1], v13) },
    ]);
    let send = || async {
        let request = app
            .client
            .post(app.url("/graphql"))
            .bearer_auth(&admin)
            .header("idempotency-key", "batch")
            .json(&batch);
        crate::helpers::answer(request.send().await.expect("sent")).await
    };

    let first = send().await;
    let retry = send().await;

    assert_eq!(
        first.body[0]["data"]["setMainImage"]["userErrors"],
        json!([])
    );
    assert_eq!(
        first.body[1]["data"]["setMainImage"]["hotel"]["version"],
        v13 + 1
    );
    assert_eq!(retry.body, first.body);
    assert!(replayed(&retry));
    assert_eq!(version_and_gallery(&app, 12).await.0, v12 + 1);
    assert_eq!(version_and_gallery(&app, 13).await.0, v13 + 1);
}

#[tokio::test]
async fn a_keyed_upload_is_stored_once_and_another_file_under_its_key_is_refused() {
    use images_subgraph::domain::upload::samples;
    const UPLOAD: &str = "mutation($input: UploadImageInput!) { uploadImage(input: $input) {
        image { id width height } userErrors { code } } }";
    let app = spawn_app().await;
    let token = app.token("images:hotelier", &[14]);
    let input = json!({ "hotelId": "14", "file": null });
    let send = |bytes| {
        crate::helpers::upload_png_keyed(&app, &token, Some("up-1"), UPLOAD, input.clone(), bytes)
    };

    let first = send(samples::png(640, 480)).await;
    let journal_after_first = journal(&app).await;
    let retry = send(samples::png(640, 480)).await;
    let other_file = send(samples::png(800, 600)).await;

    // Fingerprinting the file did not consume it: the upload read and measured all of it.
    let image = &first.body["data"]["uploadImage"]["image"];
    assert_eq!(
        (image["width"].as_i64(), image["height"].as_i64()),
        (Some(640), Some(480)),
        "{:#}",
        first.body
    );
    assert_eq!(retry.body, first.body, "the retry gets the first answer");
    assert!(replayed(&retry));
    assert_eq!(other_file.status, 422, "{:#}", other_file.body);
    assert_eq!(other_file.error_codes(), ["IDEMPOTENCY_KEY_REUSED"]);
    assert_eq!(journal(&app).await, journal_after_first, "applied once");
}
