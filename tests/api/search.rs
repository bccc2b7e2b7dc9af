//! `searchImages` (issue 21 item 2): the admin tool's image search, newest (highest ID) first,
//! keyset-paged, each page examining a bounded number of rows. Its answers are checked against
//! an oracle: the demo catalog read whole from the database and filtered in memory.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use entity::{hotel_image, image, image_source, image_tag};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

const SEARCH: &str = "query($filter: SearchImagesFilter, $first: Int, $after: String) {
    searchImages(filter: $filter, first: $first, after: $after) {
        edges { cursor node { id } }
        pageInfo { hasNextPage hasPreviousPage endCursor } } }";

/// One page: the IDs, whether there is more, and where it goes on.
async fn page(
    app: &TestApp,
    filter: &Value,
    first: i64,
    after: Option<String>,
) -> (Vec<i64>, bool, Option<String>) {
    let answer = app
        .graphql_as(
            &app.admin(),
            SEARCH,
            json!({ "filter": filter, "first": first, "after": after }),
        )
        .await
        .ok();
    let connection = &answer["searchImages"];
    let ids = connection["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| {
            e["node"]["id"]
                .as_str()
                .expect("an ID")
                .parse()
                .expect("a number")
        })
        .collect();
    let info = &connection["pageInfo"];
    (
        ids,
        info["hasNextPage"].as_bool().expect("hasNextPage"),
        info["endCursor"].as_str().map(str::to_owned),
    )
}

/// The first `want` matches (or all, when fewer), following the pages, and how many pages
/// that took.
async fn search(app: &TestApp, filter: &Value, first: i64, want: usize) -> (Vec<i64>, usize) {
    let mut found = Vec::new();
    let mut after = None;
    for pages in 1..=400 {
        let (ids, more, end) = page(app, filter, first, after).await;
        found.extend(ids);
        if !more || found.len() >= want {
            found.truncate(want);
            return (found, pages);
        }
        assert!(end.is_some(), "a page with a next one has an end cursor");
        after = end;
    }
    panic!("{filter} did not end in 400 pages");
}

/// The catalog as the filters see it.
struct Oracle {
    images: Vec<image::Model>,
    tagged: HashSet<i64>,
    sources: HashSet<(i64, i64)>,
    links: HashSet<(i64, i64)>,
}

impl Oracle {
    async fn load(app: &TestApp) -> Self {
        let db = &app.core.db;
        let mut images = image::Entity::find().all(db).await.expect("images");
        images.sort_by_key(|i| std::cmp::Reverse(i.id));
        let tagged = image_tag::Entity::find()
            .all(db)
            .await
            .expect("tags")
            .into_iter()
            .map(|t| t.image_id)
            .collect();
        let sources = image_source::Entity::find()
            .all(db)
            .await
            .expect("sources")
            .into_iter()
            .map(|s| (s.image_id, s.partner_id))
            .collect();
        let links = hotel_image::Entity::find()
            .all(db)
            .await
            .expect("links")
            .into_iter()
            .map(|l| (l.hotel_id, l.image_id))
            .collect();
        Self {
            images,
            tagged,
            sources,
            links,
        }
    }

    /// The first `want` IDs matching `filter` (the GraphQL input), highest first.
    fn expect(&self, filter: &Value, want: usize) -> Vec<i64> {
        let text = |key: &str| filter.get(key).and_then(Value::as_str);
        let number = |key: &str| text(key).map(|v| v.parse::<i64>().expect("an ID"));
        let float = |key: &str| filter.get(key).and_then(Value::as_f64);
        let time = |key: &str| text(key).map(|v| v.parse::<DateTime<Utc>>().expect("a time"));
        self.images
            .iter()
            .filter(|i| text("status").is_none_or(|s| i.status == s))
            .filter(|i| text("processingState").is_none_or(|s| i.processing_state == s))
            .filter(|i| text("category").is_none_or(|c| i.category == c))
            .filter(|i| {
                let quality = i.quality_score.or(i.measured_quality).unwrap_or(0.0);
                float("minQuality").is_none_or(|q| quality >= q)
                    && float("maxQuality").is_none_or(|q| quality <= q)
            })
            .filter(|i| {
                filter
                    .get("unclassified")
                    .and_then(Value::as_bool)
                    .is_none_or(|u| u != self.tagged.contains(&i.id))
            })
            .filter(|i| number("partnerId").is_none_or(|p| self.sources.contains(&(i.id, p))))
            .filter(|i| number("hotelId").is_none_or(|h| self.links.contains(&(h, i.id))))
            .filter(|i| time("createdAfter").is_none_or(|t| i.created_at >= t))
            .filter(|i| time("createdBefore").is_none_or(|t| i.created_at < t))
            .map(|i| i.id)
            .take(want)
            .collect()
    }
}

/// Spreads the demo catalog over what the filters look at: every 13th image inactive, every
/// 17th untagged, every 3rd a day older, every 11th pending and every 19th failed processing; returns the time between old and new.
async fn vary_the_catalog(app: &TestApp) -> DateTime<Utc> {
    let db = &app.core.db;
    image::Entity::update_many()
        .col_expr(image::Column::Status, Expr::value("INACTIVE"))
        .filter(Expr::cust("id % 13 = 0"))
        .exec(db)
        .await
        .expect("deactivate");
    for (state, every) in [("PENDING", 11), ("FAILED", 19)] {
        image::Entity::update_many()
            .col_expr(image::Column::ProcessingState, Expr::value(state))
            .filter(Expr::cust(format!("id % {every} = 0")))
            .exec(db)
            .await
            .expect("processing state");
    }
    image_tag::Entity::delete_many()
        .filter(Expr::cust("image_id % 17 = 0"))
        .exec(db)
        .await
        .expect("untag");
    image::Entity::update_many()
        .col_expr(image::Column::Category, Expr::value("OTHER"))
        .filter(Expr::cust("id % 17 = 0"))
        .exec(db)
        .await
        .expect("uncategorize");
    let newest = image::Entity::find()
        .all(db)
        .await
        .expect("images")
        .into_iter()
        .map(|i| i.created_at)
        .max()
        .expect("a demo image");
    image::Entity::update_many()
        .col_expr(
            image::Column::CreatedAt,
            Expr::value(newest - Duration::days(1)),
        )
        .filter(Expr::cust("id % 3 = 0"))
        .exec(db)
        .await
        .expect("age");
    newest - Duration::hours(12)
}

#[tokio::test]
async fn each_filter_lists_the_matching_images_newest_first_across_pages() {
    let app = spawn_app().await;
    let between = vary_the_catalog(&app).await.to_rfc3339();
    let oracle = Oracle::load(&app).await;
    let cases = [
        json!({}),
        json!({ "status": "INACTIVE" }),
        json!({ "processingState": "PENDING" }),
        json!({ "processingState": "FAILED", "status": "ACTIVE" }),
        json!({ "status": "ACTIVE", "maxQuality": 0.4 }),
        json!({ "partnerId": "2" }),
        json!({ "partnerId": "3", "category": "BEDROOM", "minQuality": 0.5 }),
        json!({ "category": "POOL" }),
        json!({ "minQuality": 0.9 }),
        json!({ "minQuality": 0.3, "maxQuality": 0.35 }),
        json!({ "unclassified": true }),
        json!({ "unclassified": false, "category": "POOL" }),
        json!({ "unclassified": true, "status": "INACTIVE" }),
        json!({ "hotelId": "7" }),
        json!({ "hotelId": "26", "partnerId": "1", "status": "ACTIVE" }),
        json!({ "createdAfter": between }),
        json!({ "createdBefore": between, "category": "EXTERIOR" }),
        json!({ "createdAfter": between, "createdBefore": Utc::now().to_rfc3339() }),
    ];
    for filter in cases {
        let expected = oracle.expect(&filter, 120);
        assert!(!expected.is_empty(), "{filter} matches something");
        let (found, _) = search(&app, &filter, 50, 120).await;
        assert_eq!(found, expected, "{filter}");
    }
    let nothing = json!({ "hotelId": "999999" });
    assert_eq!(search(&app, &nothing, 50, 120).await.0, Vec::<i64>::new());
}

#[tokio::test]
async fn a_page_whose_filter_matches_few_of_the_rows_it_reads_ends_early_and_goes_on() {
    let app = spawn_app().await;
    let oracle = Oracle::load(&app).await;
    // The demo's qualities start at 0.3: the 20 oldest images get 0.01.
    let oldest: Vec<i64> = oracle.images.iter().rev().take(20).map(|i| i.id).collect();
    image::Entity::update_many()
        .col_expr(image::Column::QualityScore, Expr::value(0.01))
        .filter(image::Column::Id.is_in(oldest.clone()))
        .exec(&app.core.db)
        .await
        .expect("worsen");
    let filter = json!({ "maxQuality": 0.05 });

    // 10 asked: at most 500 rows read, far fewer than the catalog's.
    let (ids, more, end) = page(&app, &filter, 10, None).await;
    assert!(ids.is_empty(), "{ids:?}");
    assert!(more, "the scan stopped, the search did not");
    let (found, pages) = search(&app, &filter, 10, 100).await;
    let mut expected = oldest;
    expected.reverse();
    assert_eq!(found, expected);
    let catalog = oracle.images.len();
    assert!(
        pages >= catalog / 500 && pages <= catalog / 500 + 3,
        "{pages} pages for {catalog} images"
    );
    // Going on from an empty page's cursor skips what it read.
    let (after_end, _, _) = page(&app, &filter, 10, end).await;
    assert!(after_end.iter().all(|id| expected.contains(id)));
}

#[tokio::test]
async fn only_admins_search_and_bad_filters_are_refused() {
    let app = spawn_app().await;
    let query = "{ searchImages(first: 1) { nodes { id } } }";
    let hotelier = app.token("images:hotelier", &[1]);
    assert_eq!(
        app.graphql(query, json!({})).await.error_codes(),
        ["UNAUTHENTICATED"]
    );
    assert_eq!(
        app.graphql_as(&hotelier, query, json!({}))
            .await
            .error_codes(),
        ["FORBIDDEN"]
    );
    app.graphql_as(&app.admin(), query, json!({})).await.ok();

    // `a:5`: an audit log cursor.
    let audit_cursor = json!("YTo1");
    let now = Utc::now().to_rfc3339();
    for (filter, first, after) in [
        (json!({ "minQuality": 1.5 }), 10, Value::Null),
        (json!({ "maxQuality": -0.1 }), 10, Value::Null),
        (
            json!({ "minQuality": 0.8, "maxQuality": 0.2 }),
            10,
            Value::Null,
        ),
        (
            json!({ "createdAfter": now, "createdBefore": now }),
            10,
            Value::Null,
        ),
        (json!({ "hotelId": "seven" }), 10, Value::Null),
        (json!({ "partnerId": "-1" }), 10, Value::Null),
        (json!({}), 101, Value::Null),
        (json!({}), 0, Value::Null),
        (json!({}), 10, json!("bm90IGEgY3Vyc29y")),
        (json!({}), 10, audit_cursor),
    ] {
        let answer = app
            .graphql_as(
                &app.admin(),
                SEARCH,
                json!({ "filter": filter, "first": first, "after": after }),
            )
            .await;
        assert_eq!(answer.error_codes(), ["BAD_USER_INPUT"], "{filter} {first}");
    }
    let counted = app
        .graphql_as(
            &app.admin(),
            "{ searchImages(first: 1) { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(counted.error_codes(), ["BAD_USER_INPUT"]);
}
