//! The consumer teams' query operations (`schema/operations/`) against the seeded catalog,
//! checking what each answer contains.

use serde_json::json;

use crate::helpers::{operation, spawn_app, spawn_app_with};

#[tokio::test]
async fn hotel_gallery_returns_the_curated_gallery_main_image_first() {
    let app = spawn_app().await;
    let data = app
        .graphql(
            &operation("frontend/HotelGallery.graphql"),
            json!({ "id": "1", "first": 30 }),
        )
        .await
        .ok();
    let hotel = &data["hotel"];
    assert_eq!(hotel["id"], "1");
    let main = hotel["mainImage"]["id"].clone();
    assert!(
        hotel["mainImage"]["url"]
            .as_str()
            .unwrap()
            .contains("/w1600/"),
        "XLARGE"
    );
    let gallery = &hotel["gallery"];
    let edges = gallery["edges"].as_array().unwrap();
    assert!(!edges.is_empty());
    assert_eq!(edges[0]["node"]["id"], main);
    assert!(gallery["totalCount"].as_i64().unwrap() >= edges.len() as i64);
    assert!(hotel["imageCount"].as_i64().unwrap() >= gallery["totalCount"].as_i64().unwrap());
    for edge in edges {
        let node = &edge["node"];
        assert!(edge["cursor"].is_string());
        assert!(
            node["thumb"].as_str().unwrap().contains("/c160/"),
            "square thumbnail"
        );
        assert!(node["large"].as_str().unwrap().contains("/w1024/"));
        let (w, h) = (
            node["width"].as_i64().unwrap(),
            node["height"].as_i64().unwrap(),
        );
        assert!(w.min(h) >= 300, "eligible size: {node}");
        let ratio = node["aspectRatio"].as_f64().unwrap();
        assert!((ratio - w as f64 / h as f64).abs() < 1e-9);
        assert!(!["LOGO", "MAP"].contains(&node["category"].as_str().unwrap()));
    }
}

/// The hotel page's hotel, main image and gallery images are read before execution and handed
/// to the request's loaders: no loader batch runs (so no field waits for the batch delay),
/// whether the hotel ID comes through a variable or inline.
#[tokio::test]
async fn a_hotel_page_is_answered_from_records_read_before_execution_without_loader_batches() {
    let app = spawn_app_with(|settings| settings.loader_delay_us = 5_000_000).await;
    let (answer, statements) = app
        .count_statements(app.graphql(
            &operation("frontend/HotelGallery.graphql"),
            json!({ "id": "3", "first": 30 }),
        ))
        .await;
    let data = answer.ok();
    assert!(data["hotel"]["mainImage"]["url"].is_string());
    assert!(
        !data["hotel"]["gallery"]["edges"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(statements <= 2, "{statements} statements");
    let inline = app
        .graphql(
            "{ hotel(id: 4) { mainImage { id } gallery(first: 5) { edges { node { id } } } } }",
            json!({}),
        )
        .await
        .ok();
    assert!(inline["hotel"]["mainImage"]["id"].is_string());
    assert_eq!(
        inline["hotel"]["gallery"]["edges"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    app.assert_no_record_loader_batches().await;
}

#[tokio::test]
async fn hotel_gallery_of_thirty_images_costs_one_statement_per_table() {
    let app = spawn_app().await;
    let (answer, statements) = app
        .count_statements(app.graphql(
            &operation("frontend/HotelGallery.graphql"),
            json!({ "id": "2", "first": 30 }),
        ))
        .await;
    answer.ok();
    // `hotel` (main image, gallery and counts are one row) and `image`.
    assert!(statements <= 2, "{statements} statements");
}

#[tokio::test]
async fn hotel_images_overview_shows_every_link_with_its_provenance() {
    let app = spawn_app().await;
    let data = app
        .graphql_as(
            &app.admin(),
            &operation("admin/HotelImagesOverview.graphql"),
            json!({ "id": "7" }),
        )
        .await
        .ok();
    let hotel = &data["hotel"];
    assert!(hotel["version"].as_i64().unwrap() >= 1);
    assert_eq!(hotel["mainImageChoice"]["origin"], "COMPUTED");
    assert_eq!(
        hotel["mainImageChoice"]["chosenBy"],
        serde_json::Value::Null
    );
    let images = &hotel["images"];
    let nodes = images["nodes"].as_array().unwrap();
    assert_eq!(images["totalCount"].as_u64().unwrap() as usize, nodes.len());
    assert_eq!(images["pageInfo"]["hasNextPage"], false);
    for node in nodes {
        let sources = node["sources"].as_array().unwrap();
        assert!(!sources.is_empty(), "every image has a source: {node}");
        for source in sources {
            assert!(source["partner"]["name"].is_string());
            assert!(
                source["sourceUrl"]
                    .as_str()
                    .unwrap()
                    .to_lowercase()
                    .starts_with("https://img.")
            );
        }
        assert!(!node["tags"].as_array().unwrap().is_empty());
        let id: i64 = node["id"].as_str().unwrap().parse().unwrap();
        let expected_legacy = if id % 5 == 0 {
            json!([format!("L-{id}")])
        } else {
            json!([])
        };
        assert_eq!(node["legacyIds"], expected_legacy);
    }
    assert!(
        nodes
            .iter()
            .any(|n| n["sources"].as_array().unwrap().len() == 2),
        "some image of hotel 7 came from two partners"
    );
}

#[tokio::test]
async fn image_lookup_finds_an_image_by_legacy_id_and_by_any_spelling_of_its_url() {
    let app = spawn_app().await;
    // Pick an image of hotel 7 that has a legacy ID, and respell one of its source URLs.
    let overview = app
        .graphql_as(
            &app.admin(),
            "{ hotel(id: 7) { images(first: 100) { nodes { id legacyIds sources { sourceUrl } } } } }",
            json!({}),
        )
        .await
        .ok();
    let nodes = overview["hotel"]["images"]["nodes"]
        .as_array()
        .unwrap()
        .clone();
    let image = nodes
        .iter()
        .find(|n| !n["legacyIds"].as_array().unwrap().is_empty())
        .expect("hotel 7 has an image with a legacy ID");
    let legacy = image["legacyIds"][0].as_str().unwrap();
    let source = image["sources"][0]["sourceUrl"]
        .as_str()
        .unwrap()
        .to_lowercase();
    let (scheme_host, path) = source.split_at(source.find("/h7/").unwrap());
    let respelled = format!(
        "{}:443/x/..{path}?utm_source=lookup#top",
        scheme_host.to_uppercase()
    );

    let data = app
        .graphql_as(
            &app.admin(),
            &operation("admin/ImageLookup.graphql"),
            json!({ "legacyId": legacy, "url": respelled }),
        )
        .await
        .ok();
    let by_legacy = &data["byLegacy"];
    assert_eq!(by_legacy["id"], image["id"]);
    assert_eq!(by_legacy["status"], "ACTIVE");
    let hotels = &by_legacy["hotels"];
    assert!(hotels["totalCount"].as_i64().unwrap() >= 1);
    assert!(
        hotels["nodes"]
            .as_array()
            .unwrap()
            .contains(&json!({ "id": "7" }))
    );
    assert_eq!(
        data["byUrl"]["id"], image["id"],
        "found through {respelled}"
    );
    assert_eq!(data["byUrl"]["legacyIds"], image["legacyIds"]);

    let missing = app
        .graphql_as(
            &app.admin(),
            &operation("admin/ImageLookup.graphql"),
            json!({ "legacyId": "L-nope", "url": "https://nowhere.example/x.jpg" }),
        )
        .await
        .ok();
    assert_eq!(missing, json!({ "byLegacy": null, "byUrl": null }));
}
