//! The router's response cache: entities carry `@cacheTag`s in the published SDL, entity
//! answers carry a max-age, and the relay asks the router's invalidation endpoint (a local
//! stand-in here, speaking the format of Apollo Router's `response_cache` invalidation) to drop
//! every hotel and image whose events it publishes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::helpers::{TestApp, spawn_app_with};

const KEY: &str = "router-invalidation-key";

/// A stand-in for the router's invalidation endpoint: records each request's `Authorization`
/// header and JSON body, and answers `status`.
struct Router {
    url: String,
    requests: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Router {
    async fn start(status: StatusCode) -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let app = axum::Router::new().route(
            "/invalidation",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let seen = seen.clone();
                async move {
                    let authorization = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let body = serde_json::from_str(&body).unwrap_or(Value::Null);
                    seen.lock().unwrap().push((authorization, body));
                    (status, r#"{"count":1}"#)
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/invalidation", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, requests }
    }

    /// The cache tags invalidated so far, once `tag` is among them (or after 10 s).
    async fn tags_once_invalidated(&self, tag: &str) -> Vec<String> {
        for _ in 0..200 {
            let tags = self.tags();
            if tags.iter().any(|t| t == tag) {
                return tags;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{tag} was never invalidated: {:?}",
            self.requests.lock().unwrap()
        );
    }

    fn tags(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, body)| body.as_array().cloned().unwrap_or_default())
            .filter_map(|request| request["cache_tag"].as_str().map(str::to_owned))
            .collect()
    }
}

async fn app_with_router(router: &Router) -> TestApp {
    let url = router.url.clone();
    spawn_app_with(move |settings| {
        settings.router_invalidation_url = Some(url);
        settings.router_invalidation_key = Some(KEY.parse().expect("key"));
    })
    .await
}

/// An admin sets hotel `hotel`'s third gallery image as its main image; returns that image.
async fn change_main_image(app: &TestApp, hotel: &str) -> String {
    let admin = app.admin();
    let read = app
        .graphql_as(
            &admin,
            "query($id: ID!) { hotel(id: $id) { version gallery(first: 3) { nodes { id } } } }",
            json!({ "id": hotel }),
        )
        .await
        .ok();
    let chosen = read["hotel"]["gallery"]["nodes"][2]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let set = app
        .graphql_as(
            &admin,
            "mutation($input: SetMainImageInput!) { setMainImage(input: $input) { userErrors { code } } }",
            json!({ "input": { "hotelId": hotel, "imageId": chosen, "expectedVersion": read["hotel"]["version"] } }),
        )
        .await
        .ok();
    assert_eq!(set["setMainImage"]["userErrors"], json!([]));
    chosen
}

#[tokio::test]
async fn the_relay_asks_the_router_to_drop_every_changed_hotel_and_image() {
    let router = Router::start(StatusCode::ACCEPTED).await;
    let app = app_with_router(&router).await;
    change_main_image(&app, "1").await;
    let image = app
        .graphql(
            "{ hotel(id: 2) { gallery(first: 1) { nodes { id } } } }",
            json!({}),
        )
        .await
        .ok()["hotel"]["gallery"]["nodes"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let updated = app
        .graphql_as(
            &app.admin(),
            "mutation($input: UpdateImageInput!) { updateImage(input: $input) { userErrors { code } } }",
            json!({ "input": { "imageId": image, "caption": "Lobby at night" } }),
        )
        .await
        .ok();
    assert_eq!(updated["updateImage"]["userErrors"], json!([]));

    let tags = router
        .tags_once_invalidated(&format!("image-{image}"))
        .await;
    assert!(tags.contains(&"hotel-1".to_owned()), "{tags:?}");
    for (authorization, body) in router.requests.lock().unwrap().iter() {
        assert_eq!(authorization, KEY);
        for request in body.as_array().expect("a JSON array") {
            let tag = request["cache_tag"].as_str().unwrap();
            assert_eq!(
                *request,
                json!({ "kind": "cache_tag", "subgraphs": ["images"], "cache_tag": tag })
            );
            assert!(
                tag.starts_with("hotel-") || tag.starts_with("image-"),
                "{tag}"
            );
        }
    }
    let unpublished = app
        .scalar("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
        .await;
    assert_eq!(unpublished, 0, "invalidated once the events were published");
}

#[tokio::test]
async fn a_router_that_refuses_the_invalidation_does_not_hold_back_the_events() {
    let router = Router::start(StatusCode::INTERNAL_SERVER_ERROR).await;
    let app = app_with_router(&router).await;
    change_main_image(&app, "3").await;
    router.tags_once_invalidated("hotel-3").await;
    let unpublished = "SELECT COUNT(*) FROM outbox WHERE published_at IS NULL";
    assert!(
        app.eventually_zero(unpublished, 100).await,
        "the events stayed unpublished"
    );
}

#[tokio::test]
async fn entity_answers_carry_a_max_age_for_the_routers_cache() {
    let router = Router::start(StatusCode::ACCEPTED).await;
    let app = app_with_router(&router).await;
    let response = app
        .client
        .post(app.url("/graphql"))
        .json(&json!({
            "query": "query($r: [_Any!]!) { _entities(representations: $r) { ... on Hotel { id mainImage { id } } ... on Image { id url } } }",
            "variables": { "r": [{ "__typename": "Hotel", "id": "1" }, { "__typename": "Image", "id": "1" }] }
        }))
        .send()
        .await
        .unwrap();
    let cache_control = response.headers()["cache-control"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(cache_control, "public, max-age=60");
}
