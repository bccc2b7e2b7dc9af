//! What a hotelier does to their own hotel's images (issue 19 item 4, issue 21 item 5): the
//! hotel's own caption and alt text (its link's, never the shared image's), hiding and showing
//! an image for the hotel, removing the hotel's upload. Admins may do the same for any hotel;
//! another hotel's hotelier may not.

use images_subgraph::domain::upload::samples;
use serde_json::{Value, json};

use crate::helpers::{Answer, TestApp, gallery, spawn_app, upload_png};

const UPLOAD: &str = "mutation($input: UploadImageInput!) { uploadImage(input: $input) {
    image { id caption } userErrors { code field message } } }";
const HIDE: &str = "mutation($input: HideImageInput!) { hideImage(input: $input) {
    image { id status } userErrors { code field message } } }";
const SHOW: &str = "mutation($input: ShowImageInput!) { showImage(input: $input) {
    image { id status } userErrors { code field message } } }";
const TEXTS: &str = "mutation($input: UpdateHotelImageInput!) { updateHotelImage(input: $input) {
    image { id caption altText } userErrors { code field message } } }";
const REMOVE: &str = "mutation($input: RemoveUploadInput!) { removeUpload(input: $input) {
    bytesDeleted userErrors { code field message } } }";

/// Uploads `bytes` for `hotel` with `caption`; returns the payload.
async fn upload(app: &TestApp, token: &str, hotel: i64, bytes: Vec<u8>, caption: &str) -> Value {
    let input = json!({ "hotelId": hotel.to_string(), "file": null, "caption": caption });
    let payload = upload_png(app, token, UPLOAD, input, bytes).await.ok()["uploadImage"].clone();
    assert_eq!(payload["userErrors"], json!([]), "{payload:#}");
    payload
}

/// Runs one of the mutations above with `input`; returns the answer.
async fn run(app: &TestApp, token: Option<&str>, mutation: &str, input: Value) -> Answer {
    app.graphql_with(mutation, json!({ "input": input }), token)
        .await
}

/// The payload of an answer without top-level errors.
fn payload(answer: Answer, field: &str) -> Value {
    answer.ok()[field].clone()
}

/// `image` in `hotel`'s public gallery (caption, alt text), or `None` when not shown there.
async fn in_gallery(app: &TestApp, hotel: i64, image: &str) -> Option<Value> {
    let data = app
        .graphql(
            "query($id: ID!) { hotel(id: $id) { gallery(first: 100) { nodes { id caption altText } } } }",
            json!({ "id": hotel.to_string() }),
        )
        .await
        .ok();
    data["hotel"]["gallery"]["nodes"]
        .as_array()
        .expect("a gallery")
        .iter()
        .find(|n| n["id"] == image)
        .cloned()
}

/// The image's own caption and alt text (outside any hotel).
async fn own_texts(app: &TestApp, image: &str) -> Value {
    app.graphql(
        "query($id: ID!) { image(id: $id) { caption altText } }",
        json!({ "id": image }),
    )
    .await
    .ok()["image"]
        .clone()
}

async fn version(app: &TestApp, hotel: i64) -> i64 {
    let data = app
        .graphql_as(
            &app.admin(),
            "query($id: ID!) { hotel(id: $id) { version } }",
            json!({ "id": hotel.to_string() }),
        )
        .await
        .ok();
    data["hotel"]["version"].as_i64().expect("a version")
}

async fn events_of(app: &TestApp, event_type: &str) -> i64 {
    app.scalar(&format!(
        "SELECT COUNT(*) FROM outbox WHERE type = '{event_type}'"
    ))
    .await
}

async fn audits_of(app: &TestApp, operation: &str) -> i64 {
    app.scalar(&format!(
        "SELECT COUNT(*) FROM audit_log WHERE operation = '{operation}'"
    ))
    .await
}

#[tokio::test]
async fn the_same_bytes_uploaded_by_two_hotels_show_each_hotels_own_caption() {
    let app = spawn_app().await;
    let bytes = samples::png(1500, 1000);
    let a = app.token("images:hotelier", &[14]);
    let b = app.token("images:hotelier", &[24]);
    let first = upload(&app, &a, 14, bytes.clone(), "A's terrace").await;
    let second = upload(&app, &b, 24, bytes, "B's pool").await;
    let id = first["image"]["id"].as_str().expect("an image").to_owned();
    assert_eq!(second["image"]["id"], id.as_str(), "one image per content");
    // B's answer shows B's caption: nothing of A's upload.
    assert_eq!(second["image"]["caption"], "B's pool");

    let in_24 = in_gallery(&app, 24, &id).await.expect("shown for hotel 24");
    assert_eq!(in_24["caption"], "B's pool");
    let in_14 = in_gallery(&app, 14, &id).await.expect("shown for hotel 14");
    assert_eq!(in_14["caption"], "A's terrace");
    // Outside a hotel, the image's own caption: no hotelier's.
    assert_eq!(
        app.graphql(
            "query($id: ID!) { image(id: $id) { caption } }",
            json!({ "id": id })
        )
        .await
        .ok()["image"]["caption"],
        Value::Null
    );
}

#[tokio::test]
async fn a_hotelier_writes_their_hotels_caption_and_alt_text_which_come_before_the_images_own() {
    let app = spawn_app().await;
    let hotelier = app.token("images:hotelier", &[14]);
    let image = gallery(&app, 14).await[2].clone();
    // The image's own texts, an admin's.
    let own = json!({ "imageId": image, "caption": "Room 12", "altText": "A double room" });
    let updated = payload(
        run(
            &app,
            Some(&app.admin()),
            "mutation($input: UpdateImageInput!) { updateImage(input: $input) { userErrors { code } } }",
            own,
        )
        .await,
        "updateImage",
    );
    assert_eq!(updated["userErrors"], json!([]));
    let before = version(&app, 14).await;
    let (events, audits) = (
        events_of(&app, "ImageUpdated").await,
        audits_of(&app, "updateHotelImage").await,
    );

    let texts = json!({ "hotelId": "14", "imageId": image, "caption": "Our sea-view room",
        "altText": "A bright double room facing the sea" });
    let changed = payload(
        run(&app, Some(&hotelier), TEXTS, texts).await,
        "updateHotelImage",
    );
    assert_eq!(changed["userErrors"], json!([]), "{changed:#}");
    assert_eq!(changed["image"]["caption"], "Our sea-view room");
    let shown = in_gallery(&app, 14, &image).await.expect("in the gallery");
    assert_eq!(
        (&shown["caption"], &shown["altText"]),
        (
            &json!("Our sea-view room"),
            &json!("A bright double room facing the sea")
        )
    );
    assert_eq!(
        own_texts(&app, &image).await,
        json!({ "caption": "Room 12", "altText": "A double room" })
    );
    // Texts are no curation change: the version stays; audited, with an event.
    assert_eq!(version(&app, 14).await, before);
    assert_eq!(events_of(&app, "ImageUpdated").await, events + 1);
    assert_eq!(audits_of(&app, "updateHotelImage").await, audits + 1);

    // Cleared, the caption falls back to the image's own; the alt text is left as it was.
    let cleared = json!({ "hotelId": "14", "imageId": image, "caption": null });
    let changed = payload(
        run(&app, Some(&hotelier), TEXTS, cleared).await,
        "updateHotelImage",
    );
    assert_eq!(changed["userErrors"], json!([]));
    let shown = in_gallery(&app, 14, &image).await.expect("in the gallery");
    assert_eq!(shown["caption"], "Room 12");
    assert_eq!(shown["altText"], "A bright double room facing the sea");

    // Too long, or an image the hotel does not show: refused, nothing changed.
    let long = json!({ "hotelId": "14", "imageId": image, "altText": "x".repeat(5000) });
    let refused = payload(
        run(&app, Some(&hotelier), TEXTS, long).await,
        "updateHotelImage",
    );
    assert_eq!(refused["userErrors"][0]["code"], "INVALID_INPUT");
    assert_eq!(refused["userErrors"][0]["field"], json!(["altText"]));
    let elsewhere = gallery(&app, 24).await[0].clone();
    let unlinked = json!({ "hotelId": "14", "imageId": elsewhere, "caption": "Mine" });
    let refused = payload(
        run(&app, Some(&hotelier), TEXTS, unlinked).await,
        "updateHotelImage",
    );
    assert_eq!(refused["userErrors"][0]["code"], "IMAGE_NOT_LINKED");
    assert_eq!(
        in_gallery(&app, 14, &image).await.expect("in the gallery")["altText"],
        "A bright double room facing the sea"
    );
}

#[tokio::test]
async fn a_hotelier_hides_and_shows_an_image_for_their_hotel_but_not_what_an_admin_took_offline() {
    let app = spawn_app().await;
    let hotelier = app.token("images:hotelier", &[14]);
    let image = gallery(&app, 14).await[3].clone();
    let target = json!({ "hotelId": "14", "imageId": image, "reason": "renovated" });
    let (events, audits) = (
        events_of(&app, "ImageDeactivated").await,
        audits_of(&app, "hideImage").await,
    );

    let hidden = payload(
        run(&app, Some(&hotelier), HIDE, target.clone()).await,
        "hideImage",
    );
    assert_eq!(hidden["userErrors"], json!([]), "{hidden:#}");
    assert_eq!(
        hidden["image"]["status"], "ACTIVE",
        "the image itself stays active"
    );
    assert_eq!(in_gallery(&app, 14, &image).await, None);
    assert_eq!(events_of(&app, "ImageDeactivated").await, events + 1);
    assert_eq!(audits_of(&app, "hideImage").await, audits + 1);

    let target = json!({ "hotelId": "14", "imageId": image });
    let shown = payload(
        run(&app, Some(&hotelier), SHOW, target.clone()).await,
        "showImage",
    );
    assert_eq!(shown["userErrors"], json!([]));
    assert!(in_gallery(&app, 14, &image).await.is_some());

    // An admin takes it offline for the hotel: the hotelier cannot bring it back.
    let deactivate = json!({ "imageId": image, "hotelIds": ["14"], "reason": "copyright" });
    let answer = run(
        &app,
        Some(&app.admin()),
        "mutation($input: DeactivateImageInput!) { deactivateImage(input: $input) { userErrors { code } } }",
        deactivate,
    )
    .await;
    assert_eq!(payload(answer, "deactivateImage")["userErrors"], json!([]));
    let refused = payload(
        run(&app, Some(&hotelier), SHOW, target.clone()).await,
        "showImage",
    );
    assert_eq!(refused["userErrors"][0]["code"], "IMAGE_INACTIVE");
    // Hiding it then changes nothing either (the admin's mark stays).
    let hidden = payload(
        run(&app, Some(&hotelier), HIDE, target.clone()).await,
        "hideImage",
    );
    assert_eq!(hidden["userErrors"], json!([]));
    let refused = payload(
        run(&app, Some(&hotelier), SHOW, target.clone()).await,
        "showImage",
    );
    assert_eq!(refused["userErrors"][0]["code"], "IMAGE_INACTIVE");
    assert_eq!(in_gallery(&app, 14, &image).await, None);
    // An admin may.
    let shown = payload(
        run(&app, Some(&app.admin()), SHOW, target).await,
        "showImage",
    );
    assert_eq!(shown["userErrors"], json!([]));
    assert!(in_gallery(&app, 14, &image).await.is_some());
}

#[tokio::test]
async fn removing_an_upload_unlinks_it_and_deletes_its_bytes_once_no_hotel_shows_it() {
    let app = spawn_app().await;
    let hotelier = app.token("images:hotelier", &[14, 15]);
    let bytes = samples::png(1400, 900);
    let first = upload(&app, &hotelier, 14, bytes.clone(), "Terrace").await;
    upload(&app, &hotelier, 15, bytes.clone(), "Terrace").await;
    let id = first["image"]["id"].as_str().expect("an image").to_owned();
    let url = app
        .graphql(
            "query($id: ID!) { image(id: $id) { url(size: ORIGINAL) } }",
            json!({ "id": id }),
        )
        .await
        .ok()["image"]["url"]
        .as_str()
        .expect("a URL")
        .to_owned();
    let media = app.url(&format!(
        "/media{}",
        &url[url.find("/original/").expect("a path")..]
    ));
    let served = || async { app.client.get(&media).send().await.expect("sent").status() };
    assert_eq!(served().await, 200);

    let removed = payload(
        run(
            &app,
            Some(&hotelier),
            REMOVE,
            json!({ "hotelId": "14", "imageId": id }),
        )
        .await,
        "removeUpload",
    );
    assert_eq!(removed["userErrors"], json!([]), "{removed:#}");
    assert_eq!(removed["bytesDeleted"], false, "hotel 15 still shows it");
    assert_eq!(in_gallery(&app, 14, &id).await, None);
    assert!(in_gallery(&app, 15, &id).await.is_some());
    assert_eq!(served().await, 200);

    // Removing it again: it is no longer shown for the hotel.
    let again = payload(
        run(
            &app,
            Some(&hotelier),
            REMOVE,
            json!({ "hotelId": "14", "imageId": id }),
        )
        .await,
        "removeUpload",
    );
    assert_eq!(again["userErrors"][0]["code"], "IMAGE_NOT_LINKED");

    let removed = payload(
        run(
            &app,
            Some(&hotelier),
            REMOVE,
            json!({ "hotelId": "15", "imageId": id }),
        )
        .await,
        "removeUpload",
    );
    assert_eq!(removed["bytesDeleted"], true, "{removed:#}");
    assert_eq!(in_gallery(&app, 15, &id).await, None);
    assert_eq!(served().await, 404);
    assert_eq!(events_of(&app, "ImageUnlinked").await, 2);
    assert_eq!(audits_of(&app, "removeUpload").await, 2);

    // A partner's image is no upload of the hotel: refused.
    let partners = gallery(&app, 14).await[0].clone();
    let refused = payload(
        run(
            &app,
            Some(&hotelier),
            REMOVE,
            json!({ "hotelId": "14", "imageId": partners }),
        )
        .await,
        "removeUpload",
    );
    assert_eq!(refused["userErrors"][0]["code"], "NOT_AN_UPLOAD");
    assert!(in_gallery(&app, 14, &partners).await.is_some());

    // Uploaded again, the bytes come back.
    upload(&app, &hotelier, 14, bytes, "Terrace").await;
    assert_eq!(served().await, 200);
}

#[tokio::test]
async fn another_hotels_hotelier_cannot_hide_edit_or_remove_and_anonymous_callers_must_log_in() {
    let app = spawn_app().await;
    let owner = app.token("images:hotelier", &[24]);
    let uploaded = upload(&app, &owner, 24, samples::png(1300, 900), "Ours").await;
    let upload_id = uploaded["image"]["id"]
        .as_str()
        .expect("an image")
        .to_owned();
    let image = gallery(&app, 24).await[1].clone();
    let other = app.token("images:hotelier", &[14]);
    let audits = app.scalar("SELECT COUNT(*) FROM audit_log").await;
    let attempts = [
        (HIDE, json!({ "hotelId": "24", "imageId": image })),
        (SHOW, json!({ "hotelId": "24", "imageId": image })),
        (
            TEXTS,
            json!({ "hotelId": "24", "imageId": image, "caption": "Not yours" }),
        ),
        (REMOVE, json!({ "hotelId": "24", "imageId": upload_id })),
    ];
    for (mutation, input) in &attempts {
        let answer = run(&app, Some(&other), mutation, input.clone()).await;
        assert_eq!(answer.error_codes(), ["FORBIDDEN"], "{mutation}");
        let answer = run(&app, None, mutation, input.clone()).await;
        assert_eq!(answer.error_codes(), ["UNAUTHENTICATED"], "{mutation}");
    }
    assert_eq!(app.scalar("SELECT COUNT(*) FROM audit_log").await, audits);
    assert!(in_gallery(&app, 24, &image).await.is_some());
    assert_eq!(
        in_gallery(&app, 24, &upload_id).await.expect("still shown")["caption"],
        "Ours"
    );

    // An admin may, for any hotel.
    let admin = app.admin();
    let texts = json!({ "hotelId": "24", "imageId": image, "altText": "Checked by an admin" });
    let changed = payload(
        run(&app, Some(&admin), TEXTS, texts).await,
        "updateHotelImage",
    );
    assert_eq!(changed["userErrors"], json!([]));
    let removed = payload(
        run(
            &app,
            Some(&admin),
            REMOVE,
            json!({ "hotelId": "24", "imageId": upload_id }),
        )
        .await,
        "removeUpload",
    );
    assert_eq!(removed["userErrors"], json!([]));
    assert_eq!(in_gallery(&app, 24, &upload_id).await, None);
}

#[tokio::test]
async fn upgrading_moves_an_uploads_caption_to_its_first_uploaders_link() {
    use migration::MigratorTrait;
    use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
    use sea_orm::{ConnectionTrait, Database};

    let scratch = crate::helpers::ScratchDatabase::new().await;
    let db = Database::connect(&scratch.url).await.expect("connected");
    // The catalog as it was before the link texts: two migrations.
    migration::Migrator::up(&db, Some(2))
        .await
        .expect("old schema");
    let at = |day: u32| {
        chrono::DateTime::<chrono::Utc>::from_naive_utc_and_offset(
            chrono::NaiveDate::from_ymd_opt(2026, 11, day)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .expect("a date"),
            chrono::Utc,
        )
    };
    let images = [
        (1, "upload:aa", Some("A's terrace")),
        (2, "https://img.example/p.jpg", Some("Pool")),
    ];
    for (id, url, caption) in images {
        let insert = Query::insert()
            .into_table(Alias::new("image"))
            .columns(
                [
                    "id",
                    "url_key",
                    "canonical_url",
                    "storage_key",
                    "caption",
                    "category",
                    "status",
                    "created_at",
                    "updated_at",
                ]
                .map(Alias::new),
            )
            .values_panic([
                id.into(),
                format!("{id:064}").into(),
                url.into(),
                format!("k/{id}").into(),
                caption.into(),
                "OTHER".into(),
                "ACTIVE".into(),
                at(1).into(),
                at(1).into(),
            ])
            .to_owned();
        db.execute(&insert).await.expect("an image");
    }
    // Hotel 24 linked the upload first, hotel 14 later; the partner image is on hotel 14.
    for (hotel, image, day) in [(14, 1, 3), (24, 1, 2), (14, 2, 2)] {
        let insert = Query::insert()
            .into_table(Alias::new("hotel_image"))
            .columns(["hotel_id", "image_id", "status", "created_at", "updated_at"].map(Alias::new))
            .values_panic([
                hotel.into(),
                image.into(),
                "ACTIVE".into(),
                at(day).into(),
                at(day).into(),
            ])
            .to_owned();
        db.execute(&insert).await.expect("a link");
    }
    migration::Migrator::up(&db, None).await.expect("upgraded");

    let caption = |table: &str, filter: sea_orm::sea_query::SimpleExpr| {
        Query::select()
            .expr(Expr::col(Alias::new("caption")))
            .from(Alias::new(table))
            .and_where(filter)
            .to_owned()
    };
    let text = |row: Option<sea_orm::QueryResult>| -> Option<String> {
        row.expect("a row").try_get_by_index(0).expect("a text")
    };
    let link = |hotel: i64, image: i64| {
        caption(
            "hotel_image",
            Expr::col(Alias::new("hotel_id"))
                .eq(hotel)
                .and(Expr::col(Alias::new("image_id")).eq(image)),
        )
    };
    let image = |id: i64| caption("image", Expr::col(Alias::new("id")).eq(id));
    assert_eq!(
        text(db.query_one(&link(24, 1)).await.expect("read")).as_deref(),
        Some("A's terrace")
    );
    assert_eq!(text(db.query_one(&link(14, 1)).await.expect("read")), None);
    assert_eq!(text(db.query_one(&image(1)).await.expect("read")), None);
    // A partner's caption stays the image's.
    assert_eq!(
        text(db.query_one(&image(2)).await.expect("read")).as_deref(),
        Some("Pool")
    );
    assert_eq!(text(db.query_one(&link(14, 2)).await.expect("read")), None);
}

#[tokio::test]
async fn showing_an_untouched_image_or_changing_no_text_writes_nothing() {
    let app = spawn_app().await;
    let hotelier = app.token("images:hotelier", &[14]);
    let image = gallery(&app, 14).await[3].clone();
    let target = json!({ "hotelId": "14", "imageId": image });
    let before = (
        version(&app, 14).await,
        app.scalar("SELECT COUNT(*) FROM outbox").await,
        app.scalar("SELECT COUNT(*) FROM audit_log").await,
    );

    let shown = payload(
        run(&app, Some(&hotelier), SHOW, target.clone()).await,
        "showImage",
    );
    assert_eq!(shown["userErrors"], json!([]));
    assert_eq!(shown["image"]["status"], "ACTIVE");
    let texts = payload(
        run(&app, Some(&hotelier), TEXTS, target).await,
        "updateHotelImage",
    );
    assert_eq!(texts["userErrors"], json!([]));

    let after = (
        version(&app, 14).await,
        app.scalar("SELECT COUNT(*) FROM outbox").await,
        app.scalar("SELECT COUNT(*) FROM audit_log").await,
    );
    assert_eq!(after, before, "(version, events, audit rows)");
}
