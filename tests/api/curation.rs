//! Publishing curation through the store: a change to the source data shows in the published
//! view once its hotels are curated, with a version bump; recomputing changes nothing else.

use images_subgraph::domain::catalog::HotelId;
use images_subgraph::service::curation::RecomputePlan;
use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::helpers::spawn_app;

async fn main_and_version(app: &crate::helpers::TestApp, hotel: i64) -> (String, i64) {
    let data = app
        .graphql_as(
            &app.admin(),
            "query($id: ID!) { hotel(id: $id) { version mainImage { id } } }",
            json!({ "id": hotel.to_string() }),
        )
        .await
        .ok();
    (
        data["hotel"]["mainImage"]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
        data["hotel"]["version"].as_i64().unwrap(),
    )
}

#[tokio::test]
async fn deactivating_the_main_images_link_publishes_a_new_main_image_and_version() {
    let app = spawn_app().await;
    let (main, version) = main_and_version(&app, 3).await;
    app.core
        .db
        .execute_unprepared(&format!(
            "UPDATE hotel_image SET status = 'INACTIVE' WHERE hotel_id = 3 AND image_id = {main}"
        ))
        .await
        .unwrap();
    let changes = app
        .core
        .curator
        .curate(&[HotelId::new(3).unwrap()])
        .await
        .unwrap();
    assert_eq!(changes.len(), 1);
    assert!(changes[0].main_changed() && changes[0].gallery_changed);

    let (new_main, new_version) = main_and_version(&app, 3).await;
    assert_ne!(new_main, main);
    assert_eq!(new_version, version + 1);

    // Curating again with nothing changed is a no-op.
    let again = app
        .core
        .curator
        .curate(&[HotelId::new(3).unwrap()])
        .await
        .unwrap();
    assert!(again.is_empty());
    assert_eq!(main_and_version(&app, 3).await.1, new_version);
}

#[tokio::test]
async fn recompute_changes_only_the_hotels_whose_inputs_changed() {
    let app = spawn_app_small().await;
    let plan = RecomputePlan {
        chunk_size: 7,
        parallelism: 3,
    };
    let unchanged = app.core.curator.recompute_all(plan, |_| {}).await.unwrap();
    assert_eq!(unchanged, 0, "a freshly seeded catalog is already curated");

    let (main, _) = main_and_version(&app, 5).await;
    app.core
        .db
        .execute_unprepared(&format!(
            "UPDATE image SET quality_score = 0.01 WHERE id = {main}"
        ))
        .await
        .unwrap();
    let mut done = 0;
    let changed = app
        .core
        .curator
        .recompute_all(plan, |n| done += n)
        .await
        .unwrap();
    assert_eq!(changed, 1);
    assert_eq!(done, app.core.curator.hotel_count().await.unwrap());
    assert_ne!(main_and_version(&app, 5).await.0, main);
}

/// The app without the demo seed, with a 40-hotel catalog.
async fn spawn_app_small() -> crate::helpers::TestApp {
    let app = crate::helpers::spawn_app_with(|s| s.seed_demo = Some(false)).await;
    images_subgraph::seed::generate(
        &app.core.db,
        app.core.curator.rules(),
        &images_subgraph::seed::Plan::uniform(40, 12, 9),
        |_| {},
    )
    .await
    .unwrap();
    app
}
