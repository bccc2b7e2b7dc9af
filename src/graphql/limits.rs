//! Limits on what one document may ask for, checked right after parsing (by
//! [`super::execute`]), before validation
//! and execution: aliases, root fields, repeats of one field in a selection set, and the number
//! of `_entities` representations (which `limit_complexity` does not see: 100,000 of them would
//! all be resolved). Depth, complexity and directives are the schema's own limits (see
//! [`super::build_schema`]); nesting and size are scanned before parsing by the HTTP layer.

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

/// The representations an `_entities` field is given through a variable (what gateways send).
pub(super) fn variable_representations<'a>(
    field: &async_graphql::parser::types::Field,
    variables: &'a Variables,
) -> &'a [async_graphql::Value] {
    let Some(argument) = field.get_argument("representations") else {
        return &[];
    };
    match &argument.node {
        DocumentValue::Variable(name) => match variables.get(name) {
            Some(async_graphql::Value::List(items)) => items,
            _ => &[],
        },
        _ => &[],
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
}
