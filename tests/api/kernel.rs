//! The write kernel seen from the schema: what a client gets when the schema lacks a service a
//! mutation needs (a bug of the process, never the caller's fault).

use async_graphql::{Request, UploadValue, Variables};
use images_subgraph::service::write::Caller;
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
