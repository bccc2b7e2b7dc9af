//! Limits on what one document may ask for, checked right after parsing (by
//! [`super::execute`]), before validation
//! and execution: aliases, root fields, repeats of one field in a selection set, and the number
//! of `_entities` representations (which `limit_complexity` does not see: 100,000 of them would
//! all be resolved). Depth, complexity and directives are the schema's own limits (see
//! [`super::build_schema`]); nesting and size are scanned before parsing by the HTTP layer.
//!
//! [`cost`] estimates what an operation will resolve, counting `_entities` per representation,
//! which the library's complexity does not: its selection is counted once whether 1 or 500
//! representations come. The HTTP layer adds the costs of a batch's operations and refuses the
//! request before anything runs when the sum passes the one budget (`QUERY_MAX_COMPLEXITY`).

use std::collections::{HashMap, HashSet};

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult, Variables};
use async_graphql_value::Value as DocumentValue;

/// The code of every limit violation.
pub const LIMIT_EXCEEDED: &str = "LIMIT_EXCEEDED";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentLimits {
    /// Aliased fields in the whole document.
    pub max_aliases: usize,
    /// Fields at the root of an operation.
    pub max_root_fields: usize,
    /// How often one response key may be selected in one selection set.
    pub max_repeats: usize,
    /// Representations one `_entities` call may resolve.
    pub max_entities: usize,
}

impl Default for DocumentLimits {
    fn default() -> Self {
        Self {
            max_aliases: 30,
            max_root_fields: 20,
            max_repeats: 3,
            max_entities: 500,
        }
    }
}

fn exceeded(message: String) -> ServerError {
    let mut error = ServerError::new(message, None);
    let mut extensions = async_graphql::ErrorExtensionValues::default();
    extensions.set("code", LIMIT_EXCEEDED);
    error.extensions = Some(extensions);
    error
}

/// Checks `document` against `limits`; `variables` give the size of a representations list
/// passed as a variable.
pub fn check(
    document: &ExecutableDocument,
    variables: &Variables,
    limits: &DocumentLimits,
) -> ServerResult<()> {
    let mut aliases = 0;
    let sets = document
        .operations
        .iter()
        .map(|(_, op)| &op.node.selection_set.node)
        .chain(
            document
                .fragments
                .values()
                .map(|f| &f.node.selection_set.node),
        );
    for set in sets {
        walk(set, &mut |set| {
            aliases += set
                .items
                .iter()
                .filter(|s| matches!(&s.node, Selection::Field(f) if f.node.alias.is_some()))
                .count();
            check_repeats(set, limits.max_repeats)
        })?;
    }
    if aliases > limits.max_aliases {
        return Err(exceeded(format!(
            "the document has {aliases} aliases; at most {} are allowed",
            limits.max_aliases
        )));
    }
    for (_, operation) in document.operations.iter() {
        let mut roots = Vec::new();
        root_fields(
            document,
            &operation.node.selection_set.node,
            &mut HashSet::new(),
            &mut roots,
        );
        if roots.len() > limits.max_root_fields {
            return Err(exceeded(format!(
                "an operation selects {} root fields; at most {} are allowed",
                roots.len(),
                limits.max_root_fields
            )));
        }
        for field in roots.iter().filter(|f| f.name.node.as_str() == "_entities") {
            let count = representations(field, variables);
            if count > limits.max_entities {
                return Err(exceeded(format!(
                    "`_entities` got {count} representations; at most {} are allowed",
                    limits.max_entities
                )));
            }
        }
    }
    Ok(())
}

/// Calls `visit` on `set` and every selection set nested in it (fragment spreads are not
/// followed: fragment definitions are walked on their own). Selection sets nest at most a few
/// dozen levels (the parser and the pre-parse scan cap them), so recursion is bounded.
fn walk(
    set: &SelectionSet,
    visit: &mut impl FnMut(&SelectionSet) -> ServerResult<()>,
) -> ServerResult<()> {
    visit(set)?;
    for item in &set.items {
        match &item.node {
            Selection::Field(field) => walk(&field.node.selection_set.node, visit)?,
            Selection::InlineFragment(fragment) => walk(&fragment.node.selection_set.node, visit)?,
            Selection::FragmentSpread(_) => {}
        }
    }
    Ok(())
}

fn check_repeats(set: &SelectionSet, max_repeats: usize) -> ServerResult<()> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for item in &set.items {
        if let Selection::Field(field) = &item.node {
            let key = field.node.response_key().node.as_str();
            let count = seen.entry(key).or_default();
            *count += 1;
            if *count > max_repeats {
                return Err(exceeded(format!(
                    "`{key}` is selected {count} times in one selection set; at most {max_repeats} are allowed"
                )));
            }
        }
    }
    Ok(())
}

/// The fields at the root of an operation, through inline fragments and fragment spreads
/// (each fragment once, so a cycle cannot loop; validation reports cycles).
pub(super) fn root_fields<'a>(
    document: &'a ExecutableDocument,
    set: &'a SelectionSet,
    visited: &mut HashSet<&'a str>,
    out: &mut Vec<&'a async_graphql::parser::types::Field>,
) {
    for item in &set.items {
        match &item.node {
            Selection::Field(field) => out.push(&field.node),
            Selection::InlineFragment(fragment) => {
                root_fields(document, &fragment.node.selection_set.node, visited, out)
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                if visited.insert(name)
                    && let Some(fragment) = document.fragments.get(&spread.node.fragment_name.node)
                {
                    root_fields(document, &fragment.node.selection_set.node, visited, out);
                }
            }
        }
    }
}

/// How many representations an `_entities` field is given, inline or through a variable.
fn representations(field: &async_graphql::parser::types::Field, variables: &Variables) -> usize {
    let Some(argument) = field.get_argument("representations") else {
        return 0;
    };
    match &argument.node {
        DocumentValue::List(items) => items.len(),
        DocumentValue::Variable(name) => match variables.get(name) {
            Some(async_graphql::Value::List(items)) => items.len(),
            _ => 0,
        },
        _ => 0,
    }
}

/// What one field of a connection counts when no `first` is given: the schema's smallest
/// default page (`Hotel.gallery`); `Hotel.images` and `Image.hotels` default to 50, which the
/// estimate may undercount without `first` (the library's own complexity check still applies).
const DEFAULT_PAGE: usize = 20;
/// The largest page (`MAX_PAGE` of the connections; a `first` out of range counts as it, as
/// in `page_complexity`) and the most IDs of `hotels(ids:)` / `images(ids:)`.
const MAX_LIST: usize = 100;

/// The estimated cost of the operation that `document` runs (the one named `operation_name`,
/// or its only one): a field counts 1 plus its children times its multiplier, which is
/// - for `_entities`, the number of representations (the library counts them once);
/// - for a field with `first` (a connection), the page size, as the schema's
///   `page_complexity`; without `first`, a field selecting `edges` or `nodes` counts a default
///   page;
/// - for a field with `ids` (`hotels`, `images`), the number of IDs (at most 100);
/// - 1 otherwise.
///
/// This follows the schema's complexity attributes without its registry, so that it can run
/// in the HTTP layer on every operation of a batch before any of them executes. A fragment is
/// costed once and reused (a chain of fragments each spread twice would otherwise cost an
/// exponential walk); a fragment cycle counts 0 here (validation refuses it). An operation
/// that cannot be told costs 0: the library reports why it cannot run.
pub fn cost(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
) -> usize {
    let Some(operation) = selected_operation(document, operation_name) else {
        return 0;
    };
    let mut costing = Costing {
        document,
        variables,
        defaults: &operation.variable_definitions,
        fragments: HashMap::new(),
    };
    costing.set(&operation.selection_set.node)
}

/// The operation a request runs: the named one, or the only one.
fn selected_operation<'a>(
    document: &'a ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<&'a async_graphql::parser::types::OperationDefinition> {
    use async_graphql::parser::types::DocumentOperations;
    match (&document.operations, operation_name) {
        (DocumentOperations::Single(operation), _) => Some(&operation.node),
        (DocumentOperations::Multiple(operations), Some(name)) => {
            operations.get(name).map(|operation| &operation.node)
        }
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            operations.values().next().map(|operation| &operation.node)
        }
        _ => None,
    }
}

/// Whether any operation of `document` selects `name` at its root (through fragments too,
/// under any alias).
pub fn selects_root_field(document: &ExecutableDocument, name: &str) -> bool {
    document.operations.iter().any(|(_, operation)| {
        let mut roots = Vec::new();
        root_fields(
            document,
            &operation.node.selection_set.node,
            &mut HashSet::new(),
            &mut roots,
        );
        roots.iter().any(|field| field.name.node.as_str() == name)
    })
}

struct Costing<'a> {
    document: &'a ExecutableDocument,
    variables: &'a Variables,
    defaults: &'a [async_graphql::Positioned<async_graphql::parser::types::VariableDefinition>],
    /// Costs of fragments already walked; `None` while one is being walked (a cycle).
    fragments: HashMap<&'a str, Option<usize>>,
}

impl<'a> Costing<'a> {
    fn set(&mut self, set: &'a SelectionSet) -> usize {
        set.items.iter().fold(0usize, |total, item| {
            let cost = match &item.node {
                Selection::Field(field) => self.field(&field.node),
                Selection::InlineFragment(fragment) => self.set(&fragment.node.selection_set.node),
                Selection::FragmentSpread(spread) => {
                    self.fragment(spread.node.fragment_name.node.as_str())
                }
            };
            total.saturating_add(cost)
        })
    }

    fn fragment(&mut self, name: &'a str) -> usize {
        match self.fragments.get(name) {
            Some(Some(cost)) => return *cost,
            Some(None) => return 0,
            None => {}
        }
        let Some(fragment) = self.document.fragments.get(name) else {
            return 0;
        };
        self.fragments.insert(name, None);
        let cost = self.set(&fragment.node.selection_set.node);
        self.fragments.insert(name, Some(cost));
        cost
    }

    fn field(&mut self, field: &'a async_graphql::parser::types::Field) -> usize {
        let children = &field.selection_set.node;
        if children.items.is_empty() {
            return 1;
        }
        let multiplier = self.multiplier(field, children);
        1usize.saturating_add(multiplier.saturating_mul(self.set(children)))
    }

    fn multiplier(
        &self,
        field: &async_graphql::parser::types::Field,
        children: &SelectionSet,
    ) -> usize {
        if field.name.node.as_str() == "_entities" {
            return representations(field, self.variables).max(1);
        }
        if let Some(first) = field.get_argument("first") {
            return match self.resolve(&first.node) {
                Some(async_graphql::Value::Number(n)) => n
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|n| (1..=MAX_LIST).contains(n))
                    .unwrap_or(MAX_LIST),
                _ => MAX_LIST,
            };
        }
        if let Some(ids) = field.get_argument("ids") {
            return match self.resolve(&ids.node) {
                Some(async_graphql::Value::List(ids)) => ids.len().clamp(1, MAX_LIST),
                _ => MAX_LIST,
            };
        }
        let is_connection = children.items.iter().any(|item| {
            matches!(&item.node, Selection::Field(f)
                if matches!(f.node.name.node.as_str(), "edges" | "nodes"))
        });
        if is_connection { DEFAULT_PAGE } else { 1 }
    }

    /// An argument's value: a literal, or a variable's value or default.
    fn resolve(&self, value: &DocumentValue) -> Option<async_graphql::Value> {
        match value {
            DocumentValue::Variable(name) => self.variables.get(name).cloned().or_else(|| {
                self.defaults
                    .iter()
                    .find(|definition| definition.node.name.node == *name)
                    .and_then(|definition| definition.node.default_value.as_ref())
                    .map(|default| default.node.clone())
            }),
            literal => literal.clone().into_const(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(query: &str, variables: serde_json::Value) -> Result<(), String> {
        let document = async_graphql::parser::parse_query(query).map_err(|e| e.to_string())?;
        let variables = Variables::from_json(variables);
        check(&document, &variables, &DocumentLimits::default()).map_err(|e| e.message)
    }

    #[test]
    fn documents_within_limits_pass_and_others_are_refused() {
        let aliases = (0..31)
            .map(|i| format!("a{i}: hotel(id: {i}) {{ id }}"))
            .collect::<Vec<_>>();
        let roots = (0..21).map(|i| format!("f{i}")).collect::<Vec<_>>();
        let cases: Vec<(String, serde_json::Value, bool)> = vec![
            ("{ hotel(id: 1) { id gallery { nodes { id } } } }".into(), serde_json::json!({}), true),
            (format!("{{ {} }}", aliases[..20].join(" ")), serde_json::json!({}), true),
            (format!("{{ {} }}", aliases.join(" ")), serde_json::json!({}), false),
            (format!("{{ {} }}", roots[..20].join(" ")), serde_json::json!({}), true),
            (format!("{{ {} }}", roots.join(" ")), serde_json::json!({}), false),
            ("query { ...A } fragment A on Query { ...B } fragment B on Query { a b c d e f g h i j k l m n o p q r s t u }".into(), serde_json::json!({}), false),
            ("{ hotel(id: 1) { id id id } }".into(), serde_json::json!({}), true),
            ("{ hotel(id: 1) { id id id id } }".into(), serde_json::json!({}), false),
            ("fragment F on Hotel { x: id x: id x: id x: id } { hotel(id: 1) { ...F } }".into(), serde_json::json!({}), false),
            ("query($r: [_Any!]!) { _entities(representations: $r) { __typename } }".into(), serde_json::json!({ "r": vec![serde_json::json!({}); 500] }), true),
            ("query($r: [_Any!]!) { _entities(representations: $r) { __typename } }".into(), serde_json::json!({ "r": vec![serde_json::json!({}); 501] }), false),
            (format!("{{ _entities(representations: [{}]) {{ __typename }} }}", vec!["{}"; 501].join(",")), serde_json::json!({}), false),
        ];
        for (query, variables, ok) in cases {
            let result = run(&query, variables);
            assert_eq!(result.is_ok(), ok, "{query}: {result:?}");
        }
    }

    fn cost_of(query: &str, variables: serde_json::Value) -> usize {
        let document = async_graphql::parser::parse_query(query).expect("parses");
        cost(&document, None, &Variables::from_json(variables))
    }

    #[test]
    fn costs_count_pages_ids_and_each_representation() {
        let reps = |n: usize| serde_json::json!({ "r": vec![serde_json::json!({"__typename": "Hotel", "id": "1"}); n] });
        let entities = "query($r: [_Any!]!) { _entities(representations: $r) { ... on Hotel { id mainImage { id url(size: SMALL) } } } }";
        let cases: Vec<(&str, serde_json::Value, usize)> = vec![
            ("{ hotel(id: 1) { id } }", serde_json::json!({}), 2),
            (
                "{ hotel(id: 1) { gallery(first: 10) { nodes { id } } } }",
                serde_json::json!({}),
                1 + 1 + 10 * 2,
            ),
            (
                "{ hotel(id: 1) { gallery { nodes { id } } } }",
                serde_json::json!({}),
                1 + 1 + 20 * 2,
            ),
            (
                "{ hotel(id: 1) { gallery(first: 1000) { nodes { id } } } }",
                serde_json::json!({}),
                1 + 1 + 100 * 2,
            ),
            (
                "query($n: Int = 30) { hotel(id: 1) { gallery(first: $n) { nodes { id } } } }",
                serde_json::json!({}),
                1 + 1 + 30 * 2,
            ),
            (
                "query($n: Int = 30) { hotel(id: 1) { gallery(first: $n) { nodes { id } } } }",
                serde_json::json!({ "n": 5 }),
                1 + 1 + 5 * 2,
            ),
            (
                "{ hotels(ids: [1, 2, 3]) { id } }",
                serde_json::json!({}),
                1 + 3,
            ),
            (entities, reps(1), 1 + 4),
            (entities, reps(500), 1 + 500 * 4),
            (
                "query { ...A } fragment A on Query { hotel(id: 1) { id } }",
                serde_json::json!({}),
                2,
            ),
            (
                "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }",
                serde_json::json!({}),
                0,
            ),
        ];
        for (query, variables, want) in cases {
            assert_eq!(cost_of(query, variables), want, "{query}");
        }
    }

    #[test]
    fn fragments_spread_many_times_are_costed_without_walking_each_spread() {
        // 40 fragments each spreading the next twice: 2^40 paths, one walk each.
        let fragments: String = (0..40)
            .map(|i| format!("fragment F{i} on Query {{ ...F{n} ...F{n} }} ", n = i + 1))
            .collect();
        let query = format!(
            "query {{ ...F0 }} {fragments} fragment F40 on Query {{ hotel(id: 1) {{ id }} }}"
        );
        assert_eq!(cost_of(&query, serde_json::json!({})), 1 << 41);
    }
}
