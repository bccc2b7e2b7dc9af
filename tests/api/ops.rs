//! The on-call files of `schema/ops/`: the Grafana dashboard is valid JSON, and every metric
//! that its expressions and the alert rules (`schema/ops/prometheus/alerts.yml`) name is one the
//! service exports, as scraped from a running app after some traffic. (`promtool` checks the
//! rules and runs their unit tests in `.ci/run`.)

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::helpers::{TestApp, operation, sample, spawn_app, spawn_app_with};

#[tokio::test]
async fn every_metric_of_the_alerts_and_the_dashboard_is_one_the_service_exports() {
    // With a worker: the processing figures are exported by replicas that process.
    let app = spawn_app_with(|s| {
        s.process_workers = 1;
        s.process_poll_ms = 50;
    })
    .await;
    traffic(&app).await;
    // The worker tries the imported image (its host does not resolve) and reports the queue.
    let mut exported = BTreeSet::new();
    for _ in 0..100 {
        exported = exported_names(&app.metrics().await);
        if exported.contains("process_fetches_total")
            && exported.contains("process_oldest_due_seconds")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let rules = ops_file("prometheus/alerts.yml");
    let alerts = alert_expressions(&rules);
    assert_eq!(
        alerts.len(),
        rules.matches("- alert:").count(),
        "one expression per alert"
    );
    let dashboard: Value =
        serde_json::from_str(&ops_file("grafana/images-subgraph.json")).expect("valid JSON");
    let panels = dashboard_expressions(&dashboard);
    assert!(panels.len() >= 10, "{} panel queries", panels.len());

    for expr in alerts.iter().chain(&panels) {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no metric in {expr}");
        for name in names {
            assert!(
                exported.contains(&name),
                "{name} (in {expr}) is not exported; /metrics has {exported:?}"
            );
        }
    }
}

#[tokio::test]
async fn metrics_count_imported_items_by_outcome_and_show_the_pool_size() {
    let app = spawn_app().await;
    traffic(&app).await;
    let metrics = app.metrics().await;
    let value = |series: &str| sample(&metrics, series).unwrap_or_else(|| panic!("{series}"));
    assert_eq!(value(r#"import_items_total{outcome="CREATED"}"#), 1.0);
    assert_eq!(value(r#"import_items_total{outcome="REJECTED"}"#), 1.0);
    assert_eq!(
        sample(&metrics, r#"import_items_total{outcome="LINKED"}"#),
        None
    );
    assert_eq!(
        value("db_pool_max_connections"),
        f64::from(app.settings.database_max_connections)
    );
}

/// Requests that make every kind of figure appear: a known operation, a loader batch, an
/// error, and an import with an accepted and a rejected item.
async fn traffic(app: &TestApp) {
    app.graphql(
        &operation("frontend/HotelGallery.graphql"),
        json!({ "id": "1", "first": 5 }),
    )
    .await
    .ok();
    app.graphql("{ hotels(ids: [1, 2, 3]) { id } }", json!({}))
        .await
        .ok();
    let refused = app.graphql("{ hotel(id: 1) { version } }", json!({})).await;
    assert_eq!(refused.error_codes(), ["UNAUTHENTICATED"]);
    let items = json!([
        { "hotelId": "1", "url": "https://img.partner.example/ops/a.jpg" },
        { "hotelId": "1", "url": "mailto:someone@example.com" },
    ]);
    app.graphql_as(
        &app.importer(2),
        &operation("pipelines/ImportImages.graphql"),
        json!({ "input": { "partnerId": "2", "items": items } }),
    )
    .await
    .ok();
}

fn ops_file(path: &str) -> String {
    let full = format!("{}/schema/ops/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// The names of the samples of a Prometheus text exposition (histograms as `_bucket`, `_sum`,
/// `_count`).
fn exported_names(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// The `expr` of each rule of a rules file: on its line, or in the indented block after
/// `expr: |`.
fn alert_expressions(rules: &str) -> Vec<String> {
    let indent = |line: &str| line.len() - line.trim_start().len();
    let lines: Vec<&str> = rules.lines().collect();
    let mut exprs = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        if rest.trim() != "|" {
            exprs.push(rest.trim().to_owned());
            continue;
        }
        let block: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|next| next.trim().is_empty() || indent(next) > indent(line))
            .copied()
            .collect();
        exprs.push(block.join("\n"));
    }
    exprs
}

/// Every `expr` of the dashboard's panel queries.
fn dashboard_expressions(dashboard: &Value) -> Vec<String> {
    let mut exprs = Vec::new();
    let mut stack = vec![dashboard];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(fields) => {
                if let Some(Value::String(expr)) = fields.get("expr") {
                    exprs.push(expr.clone());
                }
                stack.extend(fields.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    exprs
}

/// The metric names a PromQL expression selects: its identifiers, less label matchers
/// (`{...}`), ranges (`[...]`), grouping labels (`by (...)`, `on (...)`, ...), functions (a
/// name before `(`), aggregations and keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    // Aggregations may take their grouping first: `sum by (code) (...)`.
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
    ];
    let text = strip_between(&strip_between(expr, '{', '}'), '[', ']');
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find(|c: char| is_name(c)) {
        let after = &rest[start..];
        let end = after.find(|c: char| !is_name(c)).unwrap_or(after.len());
        let (word, tail) = after.split_at(end);
        let called = tail.trim_start().starts_with('(');
        rest = tail;
        if GROUPING.contains(&word) && called {
            // Skip the label list.
            rest = rest.split_once(')').map_or("", |(_, tail)| tail);
        } else if !called
            && !word.starts_with(|c: char| c.is_ascii_digit())
            && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str())
        {
            names.insert(word.to_owned());
        }
    }
    names
}

/// `text` without its `open`...`close` parts (not nested in PromQL).
fn strip_between(text: &str, open: char, close: char) -> String {
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    for c in text.chars() {
        match c {
            c if c == open => inside = true,
            c if c == close && inside => inside = false,
            c if !inside => out.push(c),
            _ => {}
        }
    }
    out
}

#[test]
fn metric_names_are_found_in_promql_and_grafana_expressions() {
    let cases: &[(&str, &[&str])] = &[
        ("max(outbox_lag_seconds) > 60", &["outbox_lag_seconds"]),
        (
            r#"sum by (code) (rate(graphql_errors_total{code!="X"}[10m])) / on () group_left () clamp_min(sum(rate(graphql_operation_duration_seconds_count[10m])), 1e-9) > 0.10"#,
            &[
                "graphql_errors_total",
                "graphql_operation_duration_seconds_count",
            ],
        ),
        (
            r#"histogram_quantile(0.99, sum by (operation, le) (rate(a_bucket{instance=~"$instance"}[$__rate_interval])))"#,
            &["a_bucket"],
        ),
        (
            "(db_pool_connections - db_pool_idle_connections) / clamp_min(db_pool_max_connections, 1)",
            &[
                "db_pool_connections",
                "db_pool_idle_connections",
                "db_pool_max_connections",
            ],
        ),
        (
            "sum(rate(x_total[30m])) > 0.2 and sum(increase(x_total[30m])) > 100",
            &["x_total"],
        ),
    ];
    for (expr, names) in cases {
        let found: Vec<String> = metric_names(expr).into_iter().collect();
        assert_eq!(found, *names, "{expr}");
    }
}
