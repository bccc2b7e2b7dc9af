//! Compiled plans answer exactly as the executor does (issue 17, part A).
//!
//! A differential test: one app with compiled plans on, and a replica of it (same database, same
//! Redis prefix) with `COMPILED_PLANS=off`, which sends everything through `Schema::execute`.
//! Random operations over the plan-able fields — random subsets, aliases, inline and named
//! fragments, `@skip`/`@include` with literals and variables, variables with and without
//! defaults, representations with unknown, malformed, duplicate and image entries, gallery
//! pages and cursors (good, foreign, garbage) — run against random catalog states (images
//! taken offline everywhere or for some hotels), and every answer must be the same: status,
//! `Cache-Control`, and the JSON body, errors included. The plan may decline (the executor
//! answers then): the test counts the answers plans gave, to be sure they did answer.
//!
//! `PLAN_CASES` sets the number of random operations per catalog state (default 700) and
//! `PLAN_SEED` the seed.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::helpers::{TestApp, operation, sample, spawn_app, spawn_replica_of_with};
use images_subgraph::config::Switch;

/// Posts `query` with `variables` and returns (status, Cache-Control, body).
async fn post(
    app: &TestApp,
    query: &str,
    variables: &Value,
    token: Option<&str>,
) -> (u16, String, Value) {
    let mut request = app
        .client
        .post(app.url("/graphql"))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut body: Value = response.json().await.expect("a JSON body");
    // The library's validation errors come in no fixed order (it collects them in a hash map).
    if body["data"].is_null()
        && let Some(errors) = body.get_mut("errors").and_then(Value::as_array_mut)
    {
        errors.sort_by_key(Value::to_string);
    }
    (status, cache, body)
}

async fn planned_answers(app: &TestApp) -> f64 {
    sample(&app.metrics().await, "graphql_planned_answers_total").unwrap_or(0.0)
}

/// Runs `query` on the planning app twice (the first run compiles and keeps the plan, the
/// second uses it) and once on the executor-only replica; all three must be the same.
async fn same_answer(
    planning: &TestApp,
    executor: &TestApp,
    query: &str,
    variables: &Value,
    token: Option<&str>,
) {
    let reference = post(executor, query, variables, token).await;
    for run in ["first", "second"] {
        let answer = post(planning, query, variables, token).await;
        assert_eq!(
            answer, reference,
            "the {run} run differs from the executor's\nquery: {query}\nvariables: {variables}"
        );
    }
}

/// What the catalog holds, for generating arguments.
struct Catalog {
    images: Vec<i64>,
}

struct Generator {
    rng: SmallRng,
    images: Vec<i64>,
    /// Variables of the operation being generated: (definition, value or absent).
    definitions: Vec<String>,
    values: serde_json::Map<String, Value>,
    fragments: Vec<String>,
    names: usize,
}

impl Generator {
    fn name(&mut self, prefix: &str) -> String {
        self.names += 1;
        format!("{prefix}{}", self.names)
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    /// A variable of `ty` holding `value` (absent from the request when `None`), with an
    /// optional default.
    fn variable(&mut self, ty: &str, value: Option<Value>, default: Option<&str>) -> String {
        let name = self.name("v");
        let definition = match default {
            Some(default) => format!("${name}: {ty} = {default}"),
            None => format!("${name}: {ty}"),
        };
        self.definitions.push(definition);
        if let Some(value) = value {
            self.values.insert(name.clone(), value);
        }
        format!("${name}")
    }

    /// `@skip`/`@include` (or nothing), literal or through a variable.
    fn directive(&mut self) -> String {
        if !self.chance(0.2) {
            return String::new();
        }
        let which = if self.chance(0.5) { "skip" } else { "include" };
        let flag = self.chance(0.5);
        let arg = if self.chance(0.5) {
            flag.to_string()
        } else {
            self.variable("Boolean!", Some(json!(flag)), None)
        };
        format!(" @{which}(if: {arg})")
    }

    fn alias(&mut self) -> String {
        if self.chance(0.25) {
            format!("{}: ", self.name("a"))
        } else if self.chance(0.03) {
            // Sometimes a key used twice (merged by the executor; declined by plans).
            "dup: ".to_owned()
        } else {
            String::new()
        }
    }

    /// Picks a random subset of `fields`, each maybe aliased and conditioned, and wraps some in
    /// fragments on `ty`.
    fn selection(&mut self, ty: &str, fields: Vec<String>) -> String {
        let mut picked: Vec<String> = Vec::new();
        for field in fields {
            if self.chance(0.5) {
                let alias = self.alias();
                let directive = self.directive();
                picked.push(format!("{alias}{field}{directive}"));
            }
        }
        if picked.is_empty() {
            picked.push("__typename".to_owned());
        }
        let mut out = Vec::new();
        for field in picked {
            let roll = self.rng.random_range(0..10);
            if roll == 0 {
                let directive = self.directive();
                out.push(format!("... on {ty}{directive} {{ {field} }}"));
            } else if roll == 1 {
                let name = self.name("F");
                self.fragments
                    .push(format!("fragment {name} on {ty} {{ {field} }}"));
                let directive = self.directive();
                out.push(format!("...{name}{directive}"));
            } else if roll == 2 {
                out.push(format!("... {{ {field} }}"));
            } else {
                out.push(field);
            }
        }
        format!("{{ {} }}", out.join(" "))
    }

    fn image(&mut self) -> String {
        let sizes = [
            "THUMBNAIL",
            "SMALL",
            "MEDIUM",
            "LARGE",
            "XLARGE",
            "ORIGINAL",
        ];
        let size = sizes[self.rng.random_range(0..sizes.len())];
        let url = match self.rng.random_range(0..4) {
            0 => "url".to_owned(),
            1 => format!("url(size: {size})"),
            2 => {
                let var = self.variable("ImageSize", Some(json!(size)), None);
                format!("url(size: {var})")
            }
            _ => {
                let var = self.variable("ImageSize", None, Some(size));
                format!("url(size: {var})")
            }
        };
        let fields = [
            "id",
            "__typename",
            &url,
            "width",
            "height",
            "aspectRatio",
            "caption",
            "category",
            "qualityScore",
            "status",
        ];
        self.selection("Image", fields.iter().map(|f| (*f).to_owned()).collect())
    }

    fn cursor(&mut self) -> Value {
        match self.rng.random_range(0..6) {
            0 => json!("not a cursor"),
            1 => json!(URL_SAFE_NO_PAD.encode(format!("i:{}", self.rng.random_range(0..5)))),
            _ => json!(URL_SAFE_NO_PAD.encode(format!("g:{}", self.rng.random_range(0..25)))),
        }
    }

    fn gallery(&mut self) -> String {
        let firsts = [1, 2, 3, 5, 20, 1, 2, 100, 0, 101, -1];
        let first = firsts[self.rng.random_range(0..firsts.len())];
        let mut args = Vec::new();
        match self.rng.random_range(0..4) {
            0 => {}
            1 => args.push(format!("first: {first}")),
            2 => {
                let var = self.variable("Int", Some(json!(first)), None);
                args.push(format!("first: {var}"));
            }
            _ => {
                let var = self.variable("Int", None, Some("3"));
                args.push(format!("first: {var}"));
            }
        }
        if self.chance(0.4) {
            let cursor = self.cursor();
            if self.chance(0.4) {
                args.push(format!("after: {cursor}"));
            } else if self.chance(0.3) {
                // Declared, not given: absent.
                let var = self.variable("String", None, None);
                args.push(format!("after: {var}"));
            } else {
                let var = self.variable("String", Some(cursor), None);
                args.push(format!("after: {var}"));
            }
        }
        let args = if args.is_empty() {
            String::new()
        } else {
            format!("({})", args.join(", "))
        };
        let page_info = self.selection(
            "PageInfo",
            [
                "hasNextPage",
                "hasPreviousPage",
                "startCursor",
                "endCursor",
                "__typename",
            ]
            .iter()
            .map(|f| (*f).to_owned())
            .collect(),
        );
        let node = self.image();
        let edge = self.selection(
            "ImageEdge",
            vec![
                "cursor".to_owned(),
                "__typename".to_owned(),
                format!("node {node}"),
            ],
        );
        let nodes = self.image();
        let connection = self.selection(
            "ImageConnection",
            vec![
                "totalCount".to_owned(),
                "__typename".to_owned(),
                format!("pageInfo {page_info}"),
                format!("edges {edge}"),
                format!("nodes {nodes}"),
            ],
        );
        format!("gallery{args} {connection}")
    }

    fn hotel(&mut self) -> String {
        let main = self.image();
        let gallery = self.gallery();
        self.selection(
            "Hotel",
            vec![
                "id".to_owned(),
                "__typename".to_owned(),
                "imageCount".to_owned(),
                format!("mainImage {main}"),
                gallery,
            ],
        )
    }

    fn hotel_id(&mut self) -> Value {
        match self.rng.random_range(0..12) {
            0 => json!(format!("{}", self.rng.random_range(600..700))),
            1 => json!(
                ["abc", "-1", "0", "", "1.5", "99999999999999999999"][self.rng.random_range(0..6)]
            ),
            2 => json!(self.rng.random_range(1..40)),
            _ => json!(format!("{}", self.rng.random_range(1..40))),
        }
    }

    fn image_id(&mut self) -> Value {
        match self.rng.random_range(0..8) {
            0 => json!("x"),
            1 => json!("99999999"),
            _ => json!(self.images[self.rng.random_range(0..self.images.len())].to_string()),
        }
    }

    fn representation(&mut self) -> Value {
        match self.rng.random_range(0..30) {
            0 => json!({ "__typename": "Hotel" }),
            1 => json!({ "__typename": "Hotel", "id": 3 }),
            2 => json!({ "__typename": "Partner", "id": "1" }),
            3 => json!({ "__typename": "Hotel", "id": "1", "extra": true }),
            4..=8 => json!({ "__typename": "Image", "id": self.image_id() }),
            _ => {
                let mut id = self.hotel_id();
                if !id.is_string() {
                    id = json!(id.to_string());
                }
                json!({ "__typename": "Hotel", "id": id })
            }
        }
    }

    fn root(&mut self) -> String {
        let alias = self.alias();
        let directive = self.directive();
        match self.rng.random_range(0..7) {
            0 => {
                let n = self.rng.random_range(0..8);
                let representations: Vec<Value> = (0..n).map(|_| self.representation()).collect();
                let var = self.variable("[_Any!]!", Some(json!(representations)), None);
                let hotel = self.hotel();
                let image = self.image();
                format!(
                    "{alias}_entities(representations: {var}){directive} {{ __typename ... on Hotel {hotel} ... on Image {image} }}"
                )
            }
            1 | 2 => {
                let id = self.hotel_id();
                let arg = if self.chance(0.5) {
                    self.variable("ID!", Some(id), None)
                } else {
                    id.to_string()
                };
                let hotel = self.hotel();
                format!("{alias}hotel(id: {arg}){directive} {hotel}")
            }
            3 => {
                let n = if self.chance(0.05) {
                    101
                } else {
                    self.rng.random_range(0..6)
                };
                let ids: Vec<Value> = (0..n).map(|_| self.hotel_id()).collect();
                let var = self.variable("[ID!]!", Some(json!(ids)), None);
                let hotel = self.hotel();
                format!("{alias}hotels(ids: {var}){directive} {hotel}")
            }
            4 => {
                let id = self.image_id();
                let arg = if self.chance(0.5) {
                    self.variable("ID!", Some(id), None)
                } else {
                    id.to_string()
                };
                let image = self.image();
                format!("{alias}image(id: {arg}){directive} {image}")
            }
            5 => {
                let n = self.rng.random_range(0..6);
                let ids: Vec<Value> = (0..n).map(|_| self.image_id()).collect();
                let var = self.variable("[ID!]!", Some(json!(ids)), None);
                let image = self.image();
                format!("{alias}images(ids: {var}){directive} {image}")
            }
            _ => format!("{alias}__typename{directive}"),
        }
    }

    /// A random operation and its variables.
    fn operation(&mut self) -> (String, Value) {
        self.definitions.clear();
        self.values.clear();
        self.fragments.clear();
        let roots: Vec<String> = (0..self.rng.random_range(1..3))
            .map(|_| self.root())
            .collect();
        // Only what the picked fields use: the library refuses unused fragments and variables.
        let mut text = roots.join(" ");
        let mut fragments: Vec<&String> = Vec::new();
        let mut grew = true;
        while grew {
            grew = false;
            for fragment in &self.fragments {
                let name = fragment.split(' ').nth(1).unwrap_or_default();
                if !fragments.contains(&fragment) && mentions(&text, &format!("...{name}")) {
                    fragments.push(fragment);
                    text.push(' ');
                    text.push_str(fragment);
                    grew = true;
                }
            }
        }
        let definitions: Vec<&String> = self
            .definitions
            .iter()
            .filter(|d| mentions(&text, d.split(':').next().unwrap_or_default()))
            .collect();
        self.values
            .retain(|name, _| mentions(&text, &format!("${name}")));
        let definitions = if definitions.is_empty() {
            String::new()
        } else {
            format!(
                "({})",
                definitions
                    .iter()
                    .map(|d| d.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let body = roots.join(" ");
        let fragments: Vec<&str> = fragments.iter().map(|f| f.as_str()).collect();
        let query = format!("query Q{definitions} {{ {body} }} {}", fragments.join(" "));
        (query, Value::Object(self.values.clone()))
    }
}

/// Whether `text` holds `token` not followed by more of a name.
fn mentions(text: &str, token: &str) -> bool {
    text.match_indices(token).any(|(at, _)| {
        !text[at + token.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// Image IDs of the first hotels' galleries.
async fn catalog(app: &TestApp) -> Catalog {
    let ids: Vec<String> = (1..=40).map(|i| i.to_string()).collect();
    let data = app
        .graphql(
            "query($ids: [ID!]!) { hotels(ids: $ids) { gallery(first: 20) { nodes { id } } } }",
            json!({ "ids": ids }),
        )
        .await
        .ok();
    let mut images: Vec<i64> = data["hotels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|h| {
            h["gallery"]["nodes"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|n| n["id"].as_str().and_then(|id| id.parse().ok()))
        .collect();
    images.sort_unstable();
    images.dedup();
    assert!(!images.is_empty(), "the demo catalog has images");
    Catalog { images }
}

/// A new catalog state: some images offline everywhere, some for one hotel only; hotels' own
/// captions of some of their images, and images' own captions (with characters to escape).
async fn change_catalog(app: &TestApp, rng: &mut SmallRng, images: &[i64]) {
    let admin = app.admin();
    for n in 0..8 {
        let hotel = rng.random_range(1..40).to_string();
        let shown = app
            .graphql(
                "query($id: ID!) { hotel(id: $id) { gallery(first: 5) { nodes { id } } } }",
                json!({ "id": hotel }),
            )
            .await
            .ok();
        let Some(image) = shown["hotel"]["gallery"]["nodes"][rng.random_range(0..5)]["id"].as_str()
        else {
            continue;
        };
        let caption = format!("hotel \"{n}\" caption \u{e9}\n\u{1F600}");
        app.graphql_as(
            &admin,
            "mutation($input: UpdateHotelImageInput!) { updateHotelImage(input: $input) { userErrors { code } } }",
            json!({ "input": { "hotelId": hotel, "imageId": image, "caption": caption } }),
        )
        .await
        .ok();
        let other = images[rng.random_range(0..images.len())].to_string();
        app.graphql_as(
            &admin,
            "mutation($input: UpdateImageInput!) { updateImage(input: $input) { userErrors { code } } }",
            json!({ "input": { "imageId": other, "caption": format!("own <{n}> \\ caption") } }),
        )
        .await
        .ok();
    }
    let deactivate = operation("admin/DeactivateImage.graphql");
    for _ in 0..6 {
        let image = images[rng.random_range(0..images.len())];
        let hotels = if rng.random_bool(0.5) {
            Value::Null
        } else {
            json!([rng.random_range(1..40).to_string()])
        };
        app.graphql_as(
            &admin,
            &deactivate,
            json!({ "input": { "imageId": image.to_string(), "reason": "test", "hotelIds": hotels } }),
        )
        .await;
    }
}

#[tokio::test]
async fn compiled_plans_answer_as_the_executor_does() {
    let planning = spawn_app().await;
    let cases: usize = std::env::var("PLAN_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(700);
    let seed: u64 = std::env::var("PLAN_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(17);
    let Catalog { images } = catalog(&planning).await;
    let mut rng = SmallRng::seed_from_u64(seed);

    for state in 0..3 {
        if state > 0 {
            change_catalog(&planning, &mut rng, &images).await;
        }
        // A replica started now reads the current state (its caches are empty).
        let executor = spawn_replica_of_with(&planning, |s| s.compiled_plans = Switch::Off).await;
        // The consumers' operations are fixed cases, with their documented variables.
        let fixed = [
            (
                "frontend/HotelGallery.graphql",
                json!({ "id": "1", "first": 30 }),
                None,
            ),
            ("frontend/HotelGallery.graphql", json!({ "id": "2" }), None),
            (
                "frontend/SearchResultsMainImages.graphql",
                json!({ "representations": (1..=50).map(|i| json!({ "__typename": "Hotel", "id": i.to_string() })).collect::<Vec<_>>() }),
                None,
            ),
            (
                "admin/HotelImagesOverview.graphql",
                json!({ "id": "1" }),
                Some(planning.admin()),
            ),
            (
                "admin/ImageLookup.graphql",
                json!({ "legacyId": "L-1001", "url": "https://images.example.com/a/b.jpg" }),
                Some(planning.admin()),
            ),
        ];
        for (path, variables, token) in &fixed {
            same_answer(
                &planning,
                &executor,
                &operation(path),
                variables,
                token.as_deref(),
            )
            .await;
        }
        let mut generator = Generator {
            rng: SmallRng::seed_from_u64(seed.wrapping_add(state)),
            images: images.clone(),
            definitions: Vec::new(),
            values: serde_json::Map::new(),
            fragments: Vec::new(),
            names: 0,
        };
        for _ in 0..cases {
            let (query, variables) = generator.operation();
            same_answer(&planning, &executor, &query, &variables, None).await;
        }
        assert_eq!(
            planned_answers(&executor).await,
            0.0,
            "with COMPILED_PLANS=off nothing is planned"
        );
    }
    let planned = planned_answers(&planning).await;
    eprintln!(
        "{} random operations per state, 3 states: {planned} answers by plans",
        cases
    );
    assert!(
        planned >= cases as f64,
        "plans answered only {planned} requests"
    );
}
