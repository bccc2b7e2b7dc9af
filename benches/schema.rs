//! S1 (`SearchResultsMainImages`, 50 hotels) on a small in-memory SQLite catalog with a warm
//! L1 cache: the CPU cost of one search page with no I/O in the way, through its compiled plan
//! (`s1_plan_warm_l1`, what serves it) and through `Schema::execute` (`s1_execute_warm_l1`, the
//! general path and the reference). A guard against CPU regressions of the hot path (plans,
//! GraphQL execution, loaders, the cache, URL building, serialization); the load benchmark
//! (`benches/load.sh`) measures the rest.
//!
//! `cargo bench --bench schema`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use images_subgraph::app::{Core, curation_rules, schema};
use images_subgraph::config::Settings;
use images_subgraph::graphql::{Answer, AppSchema, answer, documents::Documents, execute, prepare};
use images_subgraph::seed::{Plan, generate};
use images_subgraph::service::auth::Actor;
use images_subgraph::telemetry::Metrics;
use serde_json::json;

const HOTELS: u64 = 200;

const S1: &str = "query SearchResultsMainImages($representations: [_Any!]!) {
  _entities(representations: $representations) {
    ... on Hotel { id mainImage { id url(size: SMALL) width height category } }
  }
}";

async fn setup() -> AppSchema {
    // One connection: every connection to `:memory:` would be a database of its own.
    let mut settings = Settings::for_database("sqlite::memory:");
    settings.database_max_connections = 1;
    settings.seed_demo = Some(false);
    // No batch delay: it is a timer wait, not CPU, and would be most of what is measured.
    settings.loader_delay_us = 0;
    let core = Core::open(&settings)
        .await
        .expect("open the in-memory catalog");
    generate(
        &core.db,
        &curation_rules(&settings),
        &Plan::uniform(HOTELS, 20, 100),
        |_| {},
    )
    .await
    .expect("seed");
    schema(
        &settings,
        core.catalog.clone(),
        core.freshness.clone(),
        Default::default(),
        Metrics::new(),
    )
    .expect("schema")
}

fn request(documents: &Documents, schema: &AppSchema, first: u64) -> async_graphql::Request {
    let representations: Vec<_> = (0..50)
        .map(|n| json!({ "__typename": "Hotel", "id": ((first + n) % HOTELS + 1).to_string() }))
        .collect();
    let mut request = async_graphql::Request::new(S1).variables(
        async_graphql::Variables::from_json(json!({ "representations": representations })),
    );
    // As the HTTP layer does: the cached parse, kept once (S1 is valid and within the limits).
    if let Some(parsed) = documents.parse(S1) {
        documents.keep(parsed.attach(&mut request));
    }
    prepare(schema, request, Actor::anonymous(), None)
}

fn s1(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let schema = runtime.block_on(setup());
    let documents = Documents::default();
    // Warm the cache with every hotel and main image.
    for first in (0..HOTELS).step_by(50) {
        let response = runtime.block_on(execute(&schema, request(&documents, &schema, first)));
        assert!(response.errors.is_empty(), "{:?}", response.errors);
    }
    let mut first = 0;
    // The first run of the document compiled its plan: these are answered by it.
    let planned = runtime.block_on(answer(&schema, request(&documents, &schema, 0)));
    assert!(matches!(planned, Answer::Planned(_)), "S1 is plan-able");
    c.bench_function("s1_plan_warm_l1", |b| {
        b.iter(|| {
            first = (first + 7) % HOTELS;
            let answer = runtime.block_on(answer(&schema, request(&documents, &schema, first)));
            let mut body = Vec::new();
            answer.write_json(&mut body).expect("serialize");
            black_box(body)
        })
    });
    c.bench_function("s1_execute_warm_l1", |b| {
        b.iter(|| {
            first = (first + 7) % HOTELS;
            let response = runtime.block_on(execute(&schema, request(&documents, &schema, first)));
            black_box(serde_json::to_vec(&response).expect("serialize"))
        })
    });
}

criterion_group!(benches, s1);
criterion_main!(benches);
