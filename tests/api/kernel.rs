//! The write kernel seen from the schema: what a client gets when the schema lacks a service a
//! mutation needs (a bug of the process, never the caller's fault).

use async_graphql::{Request, UploadValue, Variables};
use images_subgraph::service::write::Caller;
use images_subgraph::store::StoreError;
use images_subgraph::store::bulk::insert_rows;
use images_subgraph::store::rows::empty_hotel;
use images_subgraph::telemetry::Metrics;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn an_upload_to_a_schema_built_without_the_uploader_is_an_internal_error_not_forbidden() {
    let app = spawn_app().await;
    // Built as `export-schema` builds it: no object store, so no uploader.
    let schema = images_subgraph::app::schema(
        &app.settings,
        app.core.catalog.clone(),
        app.core.freshness.clone(),
        Default::default(),
        Metrics::new(),
    )
    .expect("the schema builds");
    let mut request = Request::new(
        "mutation($file: Upload!) { uploadImage(input: { hotelId: \"1\", file: $file }) { userErrors { code } } }",
    )
    .variables(Variables::from_json(json!({ "file": null })))
    .data(Caller::system("an admin").actor);
    request.set_upload(
        "variables.file",
        UploadValue {
            filename: "a.png".to_owned(),
            content_type: Some("image/png".to_owned()),
            // Uploads arrive as temporary files.
            content: tempfile::tempfile().expect("a temporary file"),
        },
    );

    let response = schema.execute(request).await;

    assert_eq!(response.errors.len(), 1, "{:?}", response.errors);
    let error = &response.errors[0];
    let code = error
        .extensions
        .as_ref()
        .and_then(|e| e.get("code"))
        .cloned();
    assert_eq!(
        code,
        Some(async_graphql::Value::from("INTERNAL_SERVER_ERROR")),
        "{error:?}"
    );
    assert_eq!(error.message, "internal server error");
}

/// A row whose unique key is taken fails its change with `Conflict` (the transient error the
/// kernel runs a transaction again on), and nothing of that change stays; the connection is
/// fit for the next change. On PostgreSQL the rows travel by `COPY` on the change's own
/// transaction: this proves that a failed `COPY` aborts only its change.
#[tokio::test]
async fn a_taken_key_is_a_conflict_that_leaves_nothing_of_its_change() {
    let app = spawn_app().await;
    let writer = &app.core.writer;
    let hotels = "SELECT COUNT(*) FROM hotel WHERE id >= 9000000";
    let now = chrono::Utc::now();
    let rows = |ids: &[i64]| {
        ids.iter()
            .map(|id| empty_hotel(*id, now))
            .collect::<Vec<_>>()
    };

    let change = writer.begin().await.expect("a change");
    insert_rows(change.txn(), rows(&[9_000_001, 9_000_002]))
        .await
        .expect("new keys");
    let refused = insert_rows(change.txn(), rows(&[9_000_003, 9_000_002])).await;
    assert!(matches!(refused, Err(StoreError::Conflict)), "{refused:?}");
    drop(change);
    assert_eq!(app.scalar(hotels).await, 0);

    // A concurrent change that took the key first: the second one learns it when the first
    // commits (PostgreSQL, MariaDB: its insert waits on the key; SQLite: its change waits for
    // the write lock, then finds the row).
    let first = writer.begin().await.expect("a change");
    insert_rows(first.txn(), rows(&[9_000_010]))
        .await
        .expect("a new key");
    let second = tokio::spawn({
        let writer = writer.clone();
        let rows = rows(&[9_000_011, 9_000_010]);
        async move {
            let change = writer.begin().await?;
            insert_rows(change.txn(), rows).await?;
            change.commit(None).await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    first.commit(None).await.expect("the first commits");
    let second = second.await.expect("the second change ran");
    assert!(matches!(second, Err(StoreError::Conflict)), "{second:?}");
    assert_eq!(app.scalar(hotels).await, 1);

    let change = writer.begin().await.expect("a change after the failures");
    insert_rows(change.txn(), rows(&[9_000_020, 9_000_021]))
        .await
        .expect("new keys");
    change.commit(None).await.expect("it commits");
    assert_eq!(app.scalar(hotels).await, 3);
}
