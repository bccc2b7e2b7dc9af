//! Fuzzing the HTTP layer with generated and mutated GraphQL: whatever a client sends, the
//! server answers, never with a 5xx other than 503 (load shedding, shutdown), and always with
//! JSON.
//!
//! One app (SQLite unless `TEST_DATABASE_URL` says otherwise) receives, per case:
//! - a document of random tokens of the GraphQL alphabet: the schema's names, punctuators,
//!   strings, block strings, numbers, comments, stray characters;
//! - a deeply nested document: brackets of one or mixed kinds, or nested selection sets;
//! - a consumer operation from `schema/operations/` with random bytes or tokens inserted,
//!   deleted or duplicated;
//! - the JSON body itself mutated the same way;
//!
//! sent as a POST (with random variables and operation name), a GET or a small batch.
//!
//! Deterministic: the seed is fixed (`FUZZ_SEED` changes it) and `PROPTEST_CASES` scales the
//! number of cases (300 by default, a few seconds in a debug build).

use std::sync::Arc;

use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

const DEFAULT_CASES: u32 = 300;
const DEFAULT_SEED: u64 = 0x1a6e_5eed;

const PUNCTUATORS: &[&str] = &[
    "{", "}", "[", "]", "(", ")", ":", "$", "@", "...", "!", "=", "|", "&", ",",
];
const KEYWORDS: &[&str] = &[
    "query",
    "mutation",
    "subscription",
    "fragment",
    "on",
    "true",
    "false",
    "null",
    "__typename",
    "__schema",
    "__type",
    "include",
    "skip",
    "if",
];

/// A consumer operation and the variables its header comment gives.
#[derive(Debug, Clone)]
struct Operation {
    document: String,
    variables: Value,
}

/// What the cases are made of.
struct Alphabet {
    /// Every name in `schema.graphql`, plus the keywords.
    names: Vec<String>,
    operations: Vec<Operation>,
}

impl Alphabet {
    fn load() -> Self {
        let root = env!("CARGO_MANIFEST_DIR");
        let schema = std::fs::read_to_string(format!("{root}/schema.graphql")).expect("schema");
        let mut names: Vec<String> = schema
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| word.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'))
            .map(str::to_owned)
            .chain(KEYWORDS.iter().map(|k| (*k).to_owned()))
            .collect();
        names.sort();
        names.dedup();
        let mut operations = Vec::new();
        collect_operations(
            std::path::Path::new(&format!("{root}/schema/operations")),
            &mut operations,
        );
        assert!(operations.len() >= 4, "the consumer operations are found");
        Self { names, operations }
    }
}

fn collect_operations(dir: &std::path::Path, out: &mut Vec<Operation>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("operations dir")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_operations(&path, out);
        } else if path.extension().is_some_and(|e| e == "graphql") {
            let document = std::fs::read_to_string(&path).expect("operation");
            let variables = document
                .lines()
                .find_map(|line| line.trim().strip_prefix("# variables:"))
                .and_then(|v| serde_json::from_str(v.trim()).ok())
                .unwrap_or(Value::Null);
            out.push(Operation {
                document,
                variables,
            });
        }
    }
}

fn token(names: Arc<Vec<String>>) -> impl Strategy<Value = String> {
    prop_oneof![
        8 => select((*names).clone()),
        6 => select(PUNCTUATORS).prop_map(str::to_owned),
        1 => "[A-Za-z_][A-Za-z0-9_]{0,8}",
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|f| f.to_string()),
        1 => "-?[0-9]{1,30}(\\.[0-9]{0,5})?([eE][+-]?[0-9]{1,4})?",
        1 => "\"([^\"\\\\\n]|\\\\[\"\\\\/bfnrtu]|\\\\u[0-9a-fA-F]{0,4}){0,12}\"?",
        1 => "\"\"\"[^\"]{0,12}(\"\"\")?",
        1 => "#[^\n]{0,12}\n",
        1 => any::<char>().prop_map(String::from),
    ]
}

fn separator() -> impl Strategy<Value = &'static str> {
    select(&[" ", " ", " ", "", "\n", ",", "\t"][..])
}

/// Random tokens of the GraphQL alphabet.
fn token_soup(names: Arc<Vec<String>>) -> impl Strategy<Value = String> {
    prop::collection::vec((token(names), separator()), 0..120).prop_map(|tokens| {
        tokens
            .into_iter()
            .flat_map(|(token, sep)| [token, sep.to_owned()])
            .collect()
    })
}

/// Nesting: the same bracket many times, a mix of brackets, or nested selections.
fn deep(names: Arc<Vec<String>>) -> impl Strategy<Value = String> {
    let brackets = (
        select(&["[", "{", "(", "{a ", "{ hotel(id: ", "[{a: "][..]),
        1..300usize,
        any::<bool>(),
    )
        .prop_map(|(open, depth, closed)| {
            let close: String = open
                .chars()
                .rev()
                .filter_map(|c| match c {
                    '[' => Some(']'),
                    '{' => Some('}'),
                    '(' => Some(')'),
                    _ => None,
                })
                .collect();
            let tail = if closed {
                close.repeat(depth)
            } else {
                String::new()
            };
            format!("{{ hotel(id: 1) {{ id }} }} {}1{tail}", open.repeat(depth))
        });
    let mixed = prop::collection::vec(
        select(&["[", "{", "(", "]", "}", ")", "a", ":", "1"][..]),
        0..400,
    )
    .prop_map(|parts| parts.concat());
    let leaf = select((*names).clone());
    let selections = leaf
        .clone()
        .prop_recursive(12, 200, 4, move |inner| {
            (
                select((*names).clone()),
                prop::option::of((select((*names).clone()), any::<i16>())),
                prop::collection::vec(inner, 1..4),
            )
                .prop_map(|(name, argument, children)| {
                    let argument = argument
                        .map(|(arg, value)| format!("({arg}: {value})"))
                        .unwrap_or_default();
                    format!("{name}{argument} {{ {} }}", children.join(" "))
                })
        })
        .prop_map(|selection| format!("{{ {selection} }}"));
    prop_oneof![brackets, mixed, selections]
}

/// One change to a text.
#[derive(Debug, Clone)]
enum Mutation {
    InsertByte(Index, u8),
    InsertToken(Index, String),
    Delete(Index, usize),
    Duplicate(Index, usize),
}

fn mutations(names: Arc<Vec<String>>) -> impl Strategy<Value = Vec<Mutation>> {
    let mutation = prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::InsertByte(at, byte)),
        (any::<Index>(), token(names)).prop_map(|(at, token)| Mutation::InsertToken(at, token)),
        (any::<Index>(), 1..16usize).prop_map(|(at, len)| Mutation::Delete(at, len)),
        (any::<Index>(), 1..64usize).prop_map(|(at, len)| Mutation::Duplicate(at, len)),
    ];
    prop::collection::vec(mutation, 1..8)
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for mutation in mutations {
        let at = |index: &Index| index.index(bytes.len() + 1);
        match mutation {
            Mutation::InsertByte(i, byte) => {
                let at = at(i);
                bytes.insert(at, *byte);
            }
            Mutation::InsertToken(i, token) => {
                let at = at(i);
                bytes.splice(at..at, token.bytes());
            }
            Mutation::Delete(i, len) => {
                let at = at(i);
                let end = (at + len).min(bytes.len());
                bytes.drain(at..end);
            }
            Mutation::Duplicate(i, len) => {
                let at = at(i);
                let end = (at + len).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                bytes.splice(end..end, copy);
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Small random JSON: what variables might hold.
fn json_value(names: Arc<Vec<String>>) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::from),
        (1..600i64).prop_map(|id| Value::from(id.to_string())),
    ];
    leaf.prop_recursive(4, 32, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::vec((select((*names).clone()), inner), 0..4)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// How a document reaches the server.
#[derive(Debug, Clone)]
enum Send {
    Post {
        document: String,
        variables: Value,
        operation_name: Option<String>,
    },
    Get(String),
    Batch(Vec<String>),
    /// A body that may not even be JSON any more.
    RawBody(String),
}

fn cases(alphabet: &Alphabet) -> impl Strategy<Value = Send> + use<> {
    let names = Arc::new(alphabet.names.clone());
    let operations = alphabet.operations.clone();
    let document = prop_oneof![
        3 => token_soup(names.clone()),
        2 => deep(names.clone()),
        4 => (select(operations.clone()), mutations(names.clone()))
            .prop_map(|(op, changes)| mutate(&op.document, &changes)),
    ];
    let operation_name = prop::option::of(prop_oneof![
        select((*names).clone()),
        Just("HotelGallery".to_owned()),
        "[ -~]{0,10}",
    ]);
    let variables = prop_oneof![
        Just(Value::Null),
        json_value(names.clone()),
        select(operations.clone()).prop_map(|op| op.variables),
    ];
    let post = (document.clone(), variables, operation_name).prop_map(
        |(document, variables, operation_name)| Send::Post {
            document,
            variables,
            operation_name,
        },
    );
    let raw = (select(operations), mutations(names)).prop_map(|(op, changes)| {
        let body = json!({ "query": op.document, "variables": op.variables }).to_string();
        Send::RawBody(mutate(&body, &changes))
    });
    prop_oneof![
        6 => post,
        1 => document.clone().prop_map(Send::Get),
        1 => prop::collection::vec(document, 1..4).prop_map(Send::Batch),
        2 => raw,
    ]
}

async fn send(app: &TestApp, case: &Send) -> Result<(), TestCaseError> {
    let request = match case {
        Send::Post {
            document,
            variables,
            operation_name,
        } => app.client.post(app.url("/graphql")).json(&json!({
            "query": document,
            "variables": variables,
            "operationName": operation_name,
        })),
        Send::Get(document) => app
            .client
            .get(app.url("/graphql"))
            .query(&[("query", document)]),
        Send::Batch(documents) => {
            let batch: Vec<Value> = documents.iter().map(|d| json!({ "query": d })).collect();
            app.client.post(app.url("/graphql")).json(&batch)
        }
        Send::RawBody(body) => app
            .client
            .post(app.url("/graphql"))
            .header("content-type", "application/json")
            .body(body.clone()),
    };
    let response = request
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| TestCaseError::fail(format!("no body: {e}")))?;
    if status.is_server_error() && status != reqwest::StatusCode::SERVICE_UNAVAILABLE {
        return Err(TestCaseError::fail(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body)
        )));
    }
    serde_json::from_slice::<Value>(&body).map_err(|e| {
        TestCaseError::fail(format!(
            "{status}, not JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        ))
    })?;
    Ok(())
}

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok()?.parse().ok()
}

#[test]
fn generated_and_mutated_documents_never_crash_the_server_nor_get_5xx_or_non_json() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let app = runtime.block_on(spawn_app());
    let alphabet = Alphabet::load();

    let config = Config {
        cases: env_number("PROPTEST_CASES").unwrap_or(DEFAULT_CASES),
        max_shrink_iters: 256,
        failure_persistence: None,
        ..Config::default()
    };
    let seed = env_number("FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let outcome = runner.run(&cases(&alphabet), |case| {
        runtime.block_on(send(&app, &case))
    });
    if let Err(failure) = outcome {
        panic!("seed {seed:#x}: {failure}");
    }

    // And it still serves a normal query.
    let data = runtime
        .block_on(app.graphql("{ hotel(id: 1) { id } }", json!({})))
        .ok();
    assert_eq!(data["hotel"]["id"], "1");
}
