//! Cache isolation (issue 18, item 1): catalogs that share one Redis with the default
//! `REDIS_PREFIX` never serve each other's records, a database re-created behind a warm Redis
//! does not read what the old one left there, and neither does one restored from a backup once
//! it got a new identity. All use the local Redis whatever the engine (`..._with_redis`).

use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, EntityTrait as _, IntoActiveModel as _,
    QueryFilter as _, QueryOrder as _,
};
use serde_json::{Value, json};

use crate::cache::{set_main, two_eligible_images};
use crate::helpers::{
    ScratchDatabase, StoppableApp, TestApp, redis_url, spawn_app_with, spawn_replica_of,
    spawn_stoppable_app_with,
};

/// The hotels each check reads (a search page's worth).
const HOTELS: std::ops::RangeInclusive<i64> = 1..=30;

/// What a catalog shows of a hotel: its main image and the size of its gallery.
type Shown = (Option<String>, i64);

/// Redis at the default prefix, as a deployment that never set `REDIS_PREFIX` has it.
fn on_default_prefix(settings: &mut images_subgraph::config::Settings) {
    settings.redis_url = Some(redis_url().parse().expect("Redis URL"));
    settings.redis_prefix = "isg".to_owned();
}

/// What the app serves for [`HOTELS`] (through both cache levels).
async fn served(app: &TestApp) -> Vec<Shown> {
    let representations: Vec<Value> = HOTELS
        .map(|id| json!({ "__typename": "Hotel", "id": id.to_string() }))
        .collect();
    let data = app
        .graphql(
            "query($r: [_Any!]!) { _entities(representations: $r) { ... on Hotel { \
             mainImage { id } gallery(first: 1) { totalCount } } } }",
            json!({ "r": representations }),
        )
        .await
        .ok();
    data["_entities"]
        .as_array()
        .expect("entities")
        .iter()
        .map(|hotel| {
            (
                hotel["mainImage"]["id"].as_str().map(str::to_owned),
                hotel["gallery"]["totalCount"].as_i64().expect("a count"),
            )
        })
        .collect()
}

/// What the app's own database holds for [`HOTELS`] (hotels it does not know show nothing).
async fn truth(app: &TestApp) -> Vec<Shown> {
    let rows = entity::hotel::Entity::find()
        .filter(entity::hotel::Column::Id.between(*HOTELS.start(), *HOTELS.end()))
        .order_by_asc(entity::hotel::Column::Id)
        .all(&app.core.db)
        .await
        .expect("hotels");
    HOTELS
        .map(|id| match rows.iter().find(|row| row.id == id) {
            Some(row) => {
                let gallery = row.gallery.split(',').filter(|s| !s.is_empty()).count();
                (row.main_image_id.map(|id| id.to_string()), gallery as i64)
            }
            None => (None, 0),
        })
        .collect()
}

#[tokio::test]
async fn two_catalogs_sharing_one_redis_and_the_default_prefix_serve_only_their_own_records_with_redis()
 {
    // X: the demo catalog; Y: an empty catalog on a database of its own. Same Redis, same prefix.
    let x = spawn_app_with(on_default_prefix).await;
    let y = spawn_app_with(|s| {
        on_default_prefix(s);
        s.seed_demo = Some(false);
    })
    .await;
    let x_truth = truth(&x).await;
    assert!(
        x_truth.iter().filter(|(main, _)| main.is_some()).count() > 20,
        "the demo catalog has main images: {x_truth:?}"
    );
    let nothing = vec![(None, 0); HOTELS.count()];
    assert_eq!(truth(&y).await, nothing);

    // Y reads first (its "nothing" lands in Redis), then X, then Y again: each sees its own.
    assert_eq!(served(&y).await, nothing, "Y before X");
    assert_eq!(served(&x).await, x_truth, "X after Y");
    assert_eq!(served(&y).await, nothing, "Y after X");
    // Y's L1 holds its own records now; a fresh replica of Y reads Redis alone.
    let y_replica = spawn_replica_of(&y).await;
    assert_eq!(served(&y_replica).await, nothing, "a new replica of Y");
}

/// Stops the app and closes every pool it had on its database.
async fn stop(app: StoppableApp) {
    let db = app.app.core.db.clone();
    app.stop.send(()).expect("the app runs");
    app.server.await.expect("joined").expect("stopped cleanly");
    db.close().await.expect("closed");
}

#[tokio::test]
async fn a_database_re_created_behind_a_warm_redis_does_not_read_the_old_records_with_redis() {
    let database = ScratchDatabase::new().await;
    let at_database = |s: &mut images_subgraph::config::Settings| {
        on_default_prefix(s);
        s.database_url = Some(database.url.parse().expect("URL"));
    };
    let old = spawn_stoppable_app_with(at_database).await;
    let old_truth = truth(&old.app).await;
    assert!(old_truth.iter().any(|(main, _)| main.is_some()));
    assert_eq!(
        served(&old.app).await,
        old_truth,
        "the old catalog warms Redis"
    );
    stop(old).await;

    database.recreate().await;
    let new = spawn_app_with(|s| {
        at_database(s);
        s.seed_demo = Some(false);
    })
    .await;
    assert_eq!(
        served(&new).await,
        vec![(None, 0); HOTELS.count()],
        "the re-created (empty) catalog served the old one's records"
    );
}

#[tokio::test]
async fn a_database_restored_from_a_backup_and_given_a_new_identity_does_not_read_the_newer_state_with_redis()
 {
    let database = ScratchDatabase::new().await;
    let at_database = |s: &mut images_subgraph::config::Settings| {
        on_default_prefix(s);
        s.database_url = Some(database.url.parse().expect("URL"));
    };
    let live = spawn_stoppable_app_with(at_database).await;
    let hotel = 1;
    let backup = entity::hotel::Entity::find_by_id(hotel)
        .one(&live.app.core.db)
        .await
        .expect("read")
        .expect("hotel 1");
    // After the backup, a change; Redis holds the newer state.
    let (_, other) = two_eligible_images(&live.app, hotel).await;
    set_main(&live.app, hotel, &other).await;
    let newer = served(&live.app).await;
    assert_eq!(newer[0].0.as_deref(), Some(other.as_str()));
    stop(live).await;

    // The restore puts the backup's rows back (with the backup's identity), then the
    // operator runs `new-catalog-identity` before starting the replicas.
    let (db, _) = images_subgraph::store::connect(&database.url, 2, std::time::Duration::ZERO)
        .await
        .expect("connect");
    backup
        .clone()
        .into_active_model()
        .reset_all()
        .update(&db)
        .await
        .expect("restored");
    images_subgraph::store::identity::renew_catalog_id(&db)
        .await
        .expect("renewed");
    db.close().await.expect("closed");

    let restored = spawn_app_with(at_database).await;
    let shown = served(&restored).await;
    assert_eq!(shown, truth(&restored).await);
    assert_eq!(
        shown[0].0,
        backup.main_image_id.map(|id| id.to_string()),
        "the restored catalog served the newer main image it no longer has"
    );
}
