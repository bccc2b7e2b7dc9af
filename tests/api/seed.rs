//! The `seed` command's COPY path (PostgreSQL) writes exactly the catalog its insert path
//! writes, curation included. Runs on PostgreSQL; elsewhere there is only the insert path.

use images_subgraph::app::{Core, curation_rules};
use images_subgraph::config::Settings;
use images_subgraph::seed::{Plan, generate};
use images_subgraph::store::objects::Objects;
use sea_orm::{ConnectionTrait, Statement};

use crate::helpers::ScratchDatabase;

/// Every table the seed writes, as text, without the columns that differ by nature
/// (timestamps, and serial IDs, which depend on the order chunks commit in).
const TABLES: [(&str, &str); 8] = [
    (
        "partner",
        "SELECT id, name, kind, url_rewrites FROM partner",
    ),
    (
        "image",
        "SELECT id, url_key, canonical_url, storage_key, width, height, caption, category, \
         quality_score, content_sha256, perceptual_hash, measured_quality, status, status_reason \
         FROM image",
    ),
    (
        "hotel_image",
        "SELECT hotel_id, image_id, status, status_reason FROM hotel_image",
    ),
    (
        "image_source",
        "SELECT image_id, partner_id, source_url, partner_image_ref, status FROM image_source",
    ),
    (
        "delivery",
        "SELECT hotel_id, image_id, partner_id FROM delivery",
    ),
    (
        "image_tag",
        "SELECT image_id, origin, category, confidence FROM image_tag",
    ),
    (
        "legacy_image_id",
        "SELECT legacy_id, image_id FROM legacy_image_id",
    ),
    (
        "hotel",
        "SELECT id, version, main_image_id, main_image_origin, main_image_chosen_by, \
         image_count, gallery FROM hotel",
    ),
];

async fn seeded(plan: &Plan) -> (ScratchDatabase, Core) {
    let database = ScratchDatabase::new().await;
    let settings = Settings::for_database(&database.url);
    let core = Core::open(&settings).await.expect("open");
    generate(&core.db, &curation_rules(&settings), plan, |_| {})
        .await
        .expect("seed");
    (database, core)
}

async fn dump(core: &Core, select: &str) -> String {
    let sql = format!("SELECT string_agg(t::text, E'\\n' ORDER BY t::text) FROM ({select}) t");
    let row = core
        .db
        .query_one_raw(Statement::from_string(core.db.get_database_backend(), sql))
        .await
        .expect("dump")
        .expect("a row");
    row.try_get_by_index::<Option<String>>(0)
        .expect("text")
        .unwrap_or_default()
}

/// Seeds `plan` by `COPY` and by inserts, each into a database of its own, and compares every
/// table.
async fn assert_same_catalog(plan: Plan) {
    let (_a, by_copy) = seeded(&plan).await;
    let (_b, by_insert) = seeded(&Plan {
        copy: false,
        ..plan.clone()
    })
    .await;
    for (table, select) in TABLES {
        let copied = dump(&by_copy, select).await;
        assert!(!copied.is_empty(), "{table} is empty");
        assert_eq!(copied, dump(&by_insert, select).await, "{table} differs");
    }
}

#[tokio::test]
async fn the_copy_path_seeds_the_same_catalog_as_the_insert_path() {
    if !ScratchDatabase::new().await.is_postgres() {
        return;
    }
    // Chunks of 7: some chunks start at a hotel that shares an image with the hotel before it,
    // in the chunk before (hotels 50 and 75 share with 49 and 74).
    assert_same_catalog(Plan {
        hotels: 80,
        images_per_hotel: (5, 25),
        chunk: 7,
        random_seed: 11,
        copy: true,
        pictures: None,
    })
    .await;
}

/// With pictures, the rows carry measured values (perceptual hashes, which curation compares,
/// among them): both paths curate them alike.
#[tokio::test]
async fn with_pictures_the_copy_path_seeds_the_same_catalog_as_the_insert_path() {
    if !ScratchDatabase::new().await.is_postgres() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let url = url::Url::from_directory_path(dir.path()).expect("a URL");
    let objects = Objects::open(url.as_str()).expect("a store");
    // Chunks of 5: hotel 25 shares an image of hotel 24 in its own chunk. (Across chunks, the
    // insert path's parallel chunks may curate hotel 25 before hotel 24's chunk has committed
    // the shared image: drawing pictures makes chunk times vary enough for that to happen.)
    assert_same_catalog(Plan {
        hotels: 26,
        images_per_hotel: (1, 5),
        chunk: 5,
        random_seed: 11,
        copy: true,
        pictures: Some(objects),
    })
    .await;
}
