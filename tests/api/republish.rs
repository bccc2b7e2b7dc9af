//! Operations on the outbox (issue 21 items 7 and 8): `republish` writes every hotel's
//! published state as `HotelSnapshot` events and resumes a run that stopped; retention deletes
//! old published events in batches and never an unpublished one.

use std::collections::HashMap;
use std::time::Duration;

use images_subgraph::service::republish::{RepublishPlan, Republisher};
use images_subgraph::service::retention::{self, Retention};
use serde_json::json;

use crate::events::{Schemas, outbox};
use crate::helpers::{TestApp, main_image, spawn_app_with};

fn republisher(app: &TestApp) -> Republisher {
    Republisher::new(app.core.writer.clone())
}

/// Snapshots per hotel in the outbox.
async fn snapshots(app: &TestApp) -> HashMap<String, usize> {
    let mut per_hotel = HashMap::new();
    for row in outbox(app).await {
        if row.event_type == "HotelSnapshot" {
            *per_hotel.entry(row.aggregate_id.clone()).or_default() += 1;
        }
    }
    per_hotel
}

#[tokio::test]
async fn republish_snapshots_every_hotel_once_and_resumes_a_run_that_stopped() {
    let app = spawn_app_with(|s| s.outbox_relay = false).await;
    let hotels = app.scalar("SELECT COUNT(*) FROM hotel").await as usize;
    let plan = RepublishPlan {
        batch: 100,
        rate: 250,
        restart: false,
    };
    // Stopped while it waits for its rate after the first batch.
    let first = {
        let republisher = republisher(&app);
        tokio::spawn(async move { republisher.run(plan, |_| {}).await })
    };
    tokio::time::sleep(Duration::from_millis(250)).await;
    first.abort();
    let _ = first.await;
    let after_stop = snapshots(&app).await;
    assert!(
        !after_stop.is_empty() && after_stop.len() < hotels,
        "{} of {hotels}",
        after_stop.len()
    );

    let unlimited = RepublishPlan { rate: 0, ..plan };
    let report = republisher(&app)
        .run(unlimited, |_| {})
        .await
        .expect("resumed");
    assert_eq!(report.resumed_after as usize, after_stop.len());
    assert_eq!(report.hotels as usize, hotels - after_stop.len());
    let all = snapshots(&app).await;
    assert_eq!(all.len(), hotels);
    assert!(all.values().all(|&n| n == 1), "one snapshot per hotel");

    // They validate, and show what the API shows.
    let schemas = Schemas::load();
    let rows = outbox(&app).await;
    for row in rows.iter().filter(|r| r.event_type == "HotelSnapshot") {
        schemas.check(row).expect("a valid HotelSnapshot");
    }
    let one = rows
        .iter()
        .find(|r| r.event_type == "HotelSnapshot" && r.aggregate_id == "7")
        .expect("hotel 7");
    assert_eq!(
        one.payload["mainImageId"].as_str().map(str::to_owned),
        main_image(&app, 7).await
    );

    // A finished run is not resumed: the next one starts over.
    let again = republisher(&app)
        .run(unlimited, |_| {})
        .await
        .expect("a new run");
    assert_ne!(again.run, report.run);
    assert_eq!((again.resumed_after, again.hotels as usize), (0, hotels));
}

/// Marks the first `old` events published long ago, leaves the rest unpublished and backdates
/// them too.
async fn age_the_outbox(app: &TestApp, old: i64) {
    // The `old`th event's seq (auto-increment values may have gaps, on MariaDB).
    let last_old = app
        .scalar(&format!(
            "SELECT seq FROM outbox ORDER BY seq LIMIT 1 OFFSET {}",
            old - 1
        ))
        .await;
    let backend = app.core.db.get_database_backend();
    for sql in [
        "UPDATE outbox SET created_at = '2020-01-01 00:00:00'".to_owned(),
        format!("UPDATE outbox SET published_at = '2020-01-01 00:00:00' WHERE seq <= {last_old}"),
    ] {
        use sea_orm::ConnectionTrait;
        app.core
            .db
            .execute_raw(sea_orm::Statement::from_string(backend, sql))
            .await
            .expect("aged");
    }
}

async fn make_events(app: &TestApp) {
    let admin = app.admin();
    for hotel in 1..=5 {
        let data = app
            .graphql_as(
                &admin,
                "mutation($input: ResetMainImageInput!) { resetMainImage(input: $input) { userErrors { code } } }",
                json!({ "input": { "hotelId": hotel.to_string() } }),
            )
            .await
            .ok();
        assert_eq!(data["resetMainImage"]["userErrors"], json!([]));
    }
    let plan = RepublishPlan {
        batch: 50,
        rate: 0,
        restart: false,
    };
    republisher(app).run(plan, |_| {}).await.expect("snapshots");
}

#[tokio::test]
async fn retention_deletes_old_published_events_in_batches_and_never_an_unpublished_one() {
    let app = spawn_app_with(|s| s.outbox_relay = false).await;
    make_events(&app).await;
    let total = app.scalar("SELECT COUNT(*) FROM outbox").await;
    assert!(total > 100, "{total} events");
    age_the_outbox(&app, 60).await;
    let mut batches = Vec::new();
    let retention = Retention {
        age: Duration::from_secs(3600),
        batch: 25,
        pause: Duration::ZERO,
    };
    let deleted = retention::prune(&app.core.store, retention, |n| batches.push(n))
        .await
        .expect("pruned");
    assert_eq!(deleted, 60);
    assert_eq!(batches, [25, 25, 10]);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM outbox").await, total - 60);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
            .await,
        total - 60,
        "every unpublished event is kept, however old"
    );
}

#[tokio::test]
async fn serve_prunes_the_outbox_periodically_when_retention_is_configured() {
    let app = spawn_app_with(|s| {
        s.outbox_relay = false;
        s.outbox_retention_hours = Some(1);
        s.outbox_retention_interval_secs = 1;
    })
    .await;
    make_events(&app).await;
    let total = app.scalar("SELECT COUNT(*) FROM outbox").await;
    age_the_outbox(&app, 30).await;
    for _ in 0..60 {
        if app.scalar("SELECT COUNT(*) FROM outbox").await == total - 30 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{} of {total} events left",
        app.scalar("SELECT COUNT(*) FROM outbox").await
    );
}
