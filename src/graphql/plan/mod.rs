//! Compiled plans for the hot read operations (issue 17, part A).
//!
//! async-graphql stays the schema, the validator and the general executor. For an operation
//! that asks only for plan-able fields — public fields whose value is a pure function of
//! catalog records and arguments — a plan is compiled once per document (and operation name)
//! and kept beside the parsed documents: which records to load at each level, and how to write
//! each field, with every response key escaped once, at compile time. Running a plan reads the
//! records through the same catalog calls the loaders batch into (L1, Redis, database; one
//! statement per table on a miss) and writes the JSON answer straight into a byte buffer: no
//! `Value` tree, no future per field.
//!
//! A plan never makes up an error: wherever the executor would answer one (a malformed
//! representation, `first` out of range, a foreign cursor, a failed read, a variable missing or
//! of the wrong shape), the plan *declines* and the request goes through `Schema::execute`,
//! which reports it. A plan is kept only for a document the executor has run once and that
//! passed the limits and the library's validation ([`Plans::keep`]), so validation stays the
//! library's. Duplicate response keys in one selection set (which the executor merges) and
//! directives other than `@skip`/`@include` are declined at compile time.
//!
//! The executor path uses the same analysis: [`Plan::load`] feeds the request's loaders before
//! `Schema::execute`, so that the records arrive in one batch per table whatever the scheduler
//! does (see [`super::execute`]).
//!
//! # Layout
//! - this file: the plan's shape, the compiler and the cache;
//! - [`run`]: loading the records and writing the answer.

mod run;

use std::sync::Arc;

use async_graphql::Positioned;
use async_graphql::parser::types::{
    Directive, DocumentOperations, ExecutableDocument, Field, OperationDefinition, OperationType,
    Selection, SelectionSet, VariableDefinition,
};
use async_graphql_value::{Name, Value as DocumentValue};

pub use run::Loaded;

/// The most list items the library's complexity counts for one list field (`first`, `ids`).
const MAX_LIST: usize = super::connection::MAX_PAGE as usize;
/// Plans kept (each is small: a few hundred bytes per field).
const MAX_PLANS: u64 = 2_000;

/// Why an operation or a request is left to the executor. (Not an error: the executor answers.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decline;

type Compiled<T> = Result<T, Decline>;

/// The compiled plans by query text and operation name; `None`: not plan-able (kept too, so
/// that it is not compiled again).
#[derive(Clone)]
pub struct Plans(moka::sync::Cache<(String, Option<String>), Option<Arc<Plan>>>);

impl Default for Plans {
    fn default() -> Self {
        Self(moka::sync::Cache::new(MAX_PLANS))
    }
}

impl Plans {
    /// The plan of a document that ran before: `Some(None)` when it is not plan-able, `None`
    /// when it never ran (or fell out of the cache).
    pub fn get(&self, query: &str, operation: Option<&str>) -> Option<Option<Arc<Plan>>> {
        // (The key is owned: the cache takes `&(String, Option<String>)`.)
        self.0
            .get(&(query.to_owned(), operation.map(str::to_owned)))
    }

    /// Keeps the plan of a document that passed the limits and the library's validation.
    pub fn keep(&self, query: &str, operation: Option<&str>, plan: Option<Arc<Plan>>) {
        self.0
            .insert((query.to_owned(), operation.map(str::to_owned)), plan);
    }
}

/// The compiled plan of one operation.
#[derive(Debug)]
pub struct Plan {
    roots: Selections<RootField>,
    /// The operation's variable definitions (for their defaults).
    variables: Vec<Positioned<VariableDefinition>>,
    /// Whether some hotel selection asks for `mainImage` (its image is loaded with the hotels').
    main_images: bool,
    /// The `(first, after)` of every `gallery` field: their windows are loaded in one batch.
    galleries: Vec<(Arg, Arg)>,
}

/// An argument as written: absent, a literal, or a value with variables.
#[derive(Debug, Clone)]
struct Arg(Option<DocumentValue>);

/// A condition of `@skip(if:)` / `@include(if:)`.
#[derive(Debug, Clone)]
enum Condition {
    Skip(Arg),
    Include(Arg),
}

/// One field of a selection set: its response key (escaped, with the colon), the conditions
/// that keep it, and what it is.
#[derive(Debug)]
struct Entry<F> {
    key: Box<[u8]>,
    conditions: Vec<Condition>,
    field: F,
}

type Selections<F> = Vec<Entry<F>>;

#[derive(Debug)]
enum RootField {
    Typename,
    Entities {
        representations: Arg,
        hotel: Selections<HotelField>,
        image: Selections<ImageField>,
    },
    Hotel(Arg, Selections<HotelField>),
    Hotels(Arg, Selections<HotelField>),
    Image(Arg, Selections<ImageField>),
    Images(Arg, Selections<ImageField>),
}

#[derive(Debug)]
enum HotelField {
    Typename,
    Id,
    ImageCount,
    MainImage(Selections<ImageField>),
    /// Its index in [`Plan::galleries`], and the connection's selection.
    Gallery(usize, Selections<ConnectionField>),
}

#[derive(Debug)]
enum ConnectionField {
    Typename,
    TotalCount,
    PageInfo(Selections<PageInfoField>),
    Edges(Selections<EdgeField>),
    Nodes(Selections<ImageField>),
}

#[derive(Debug)]
enum PageInfoField {
    Typename,
    HasNextPage,
    HasPreviousPage,
    StartCursor,
    EndCursor,
}

#[derive(Debug)]
enum EdgeField {
    Typename,
    Cursor,
    Node(Selections<ImageField>),
}

#[derive(Debug)]
enum ImageField {
    Typename,
    Id,
    Url(Arg),
    Width,
    Height,
    AspectRatio,
    Caption,
    Category,
    QualityScore,
    Status,
}

/// Compiles the operation `operation_name` selects in `document` (already parsed; kept by
/// [`Plans::keep`] only once the library validated it). `max_complexity`: the schema's limit,
/// which depends on the values of `first` and `ids`: when the worst case of a plan passes it,
/// any values do, else the plan is compiled only when those values are literals (validated
/// with the document).
pub fn compile(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    max_complexity: usize,
) -> Option<Arc<Plan>> {
    let operation = select_operation(document, operation_name)?;
    let mut compiler = Compiler {
        document,
        main_images: false,
        galleries: Vec::new(),
        worst_complexity: 0,
        variable_lists: false,
    };
    let roots = compiler.roots(&operation.selection_set.node).ok()?;
    if compiler.variable_lists && compiler.worst_complexity > max_complexity {
        return None;
    }
    Some(Arc::new(Plan {
        roots,
        variables: operation.variable_definitions.clone(),
        main_images: compiler.main_images,
        galleries: compiler.galleries,
    }))
}

/// The operation a request runs (as the library picks it); `None` for anything but a query
/// without directives.
fn select_operation<'a>(
    document: &'a ExecutableDocument,
    name: Option<&str>,
) -> Option<&'a OperationDefinition> {
    let operation = match (&document.operations, name) {
        (DocumentOperations::Single(operation), None) => &operation.node,
        (DocumentOperations::Single(_), Some(_)) => return None,
        (DocumentOperations::Multiple(operations), Some(name)) => &operations.get(name)?.node,
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            &operations.values().next()?.node
        }
        _ => return None,
    };
    (operation.ty == OperationType::Query && operation.directives.is_empty()).then_some(operation)
}

/// A field found in a selection set with its fragments spread: the field and the conditions
/// of the fragments around it and of itself.
struct Found<'a> {
    field: &'a Field,
    conditions: Vec<Condition>,
}

struct Compiler<'a> {
    document: &'a ExecutableDocument,
    main_images: bool,
    galleries: Vec<(Arg, Arg)>,
    /// The complexity with every list at its largest (an upper bound of the library's).
    worst_complexity: usize,
    /// Whether a `first` or `ids` is given through a variable.
    variable_lists: bool,
}

impl<'a> Compiler<'a> {
    /// The fields of `set` as an object of type `ty` sees them, fragments spread, in order.
    /// Duplicate response keys are declined (the executor merges them).
    fn fields(&self, set: &'a SelectionSet, ty: &str) -> Compiled<Vec<Found<'a>>> {
        let mut found = Vec::new();
        self.spread(set, ty, &[], &mut Vec::new(), &mut found)?;
        let mut keys: Vec<&str> = found.iter().map(|f| response_key(f.field)).collect();
        keys.sort_unstable();
        if keys.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(Decline);
        }
        Ok(found)
    }

    fn spread(
        &self,
        set: &'a SelectionSet,
        ty: &str,
        around: &[Condition],
        visiting: &mut Vec<&'a str>,
        found: &mut Vec<Found<'a>>,
    ) -> Compiled<()> {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    let mut conditions = around.to_vec();
                    conditions.extend(conditions_of(&field.node.directives)?);
                    found.push(Found {
                        field: &field.node,
                        conditions,
                    });
                }
                Selection::InlineFragment(fragment) => {
                    let fragment = &fragment.node;
                    let on = fragment.type_condition.as_ref();
                    if applies(on.map(|c| c.node.on.node.as_str()), ty) {
                        let mut conditions = around.to_vec();
                        conditions.extend(conditions_of(&fragment.directives)?);
                        self.spread(
                            &fragment.selection_set.node,
                            ty,
                            &conditions,
                            visiting,
                            found,
                        )?;
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    let fragment = &self.document.fragments.get(name).ok_or(Decline)?.node;
                    if visiting.contains(&name) {
                        return Err(Decline);
                    }
                    if applies(Some(fragment.type_condition.node.on.node.as_str()), ty) {
                        let mut conditions = around.to_vec();
                        conditions.extend(conditions_of(&spread.node.directives)?);
                        conditions.extend(conditions_of(&fragment.directives)?);
                        visiting.push(name);
                        self.spread(
                            &fragment.selection_set.node,
                            ty,
                            &conditions,
                            visiting,
                            found,
                        )?;
                        visiting.pop();
                    }
                }
            }
        }
        Ok(())
    }

    /// Compiles the fields of `set` for type `ty` with `compile_field`, adding their worst
    /// complexity to `weight`.
    fn selections<F>(
        &mut self,
        set: &'a SelectionSet,
        ty: &str,
        weight: &mut usize,
        mut compile_field: impl FnMut(&mut Self, &'a Field, &mut usize) -> Compiled<F>,
    ) -> Compiled<Selections<F>> {
        let mut entries = Vec::new();
        for found in self.fields(set, ty)? {
            let mut field_weight = 1;
            let field = compile_field(self, found.field, &mut field_weight)?;
            *weight = weight.saturating_add(field_weight);
            entries.push(Entry {
                key: escaped_key(response_key(found.field)),
                conditions: found.conditions,
                field,
            });
        }
        Ok(entries)
    }

    fn roots(&mut self, set: &'a SelectionSet) -> Compiled<Selections<RootField>> {
        let mut weight = 0;
        let roots = self.selections(set, "Query", &mut weight, |c, field, weight| {
            c.root(field, weight)
        })?;
        self.worst_complexity = weight;
        Ok(roots)
    }

    fn root(&mut self, field: &'a Field, weight: &mut usize) -> Compiled<RootField> {
        let children = &field.selection_set.node;
        Ok(match field.name.node.as_str() {
            "__typename" => leaf(field, RootField::Typename)?,
            "_entities" => {
                let representations = arguments(field, &["representations"])?.remove(0);
                let hotel = self.hotel_selections(children, weight)?;
                let image = self.image_selections(children, "Image", weight)?;
                RootField::Entities {
                    representations,
                    hotel,
                    image,
                }
            }
            "hotel" => {
                let id = arguments(field, &["id"])?.remove(0);
                RootField::Hotel(id, self.hotel_selections(children, weight)?)
            }
            "hotels" => {
                let ids = self.list_argument(field, "ids", weight)?;
                RootField::Hotels(ids, self.hotel_selections(children, weight)?)
            }
            "image" => {
                let id = arguments(field, &["id"])?.remove(0);
                RootField::Image(id, self.image_selections(children, "Image", weight)?)
            }
            "images" => {
                let ids = self.list_argument(field, "ids", weight)?;
                RootField::Images(ids, self.image_selections(children, "Image", weight)?)
            }
            _ => return Err(Decline),
        })
    }

    /// The argument `name` of a list field (its only one); scales `weight` to the largest list.
    fn list_argument(&mut self, field: &Field, name: &str, weight: &mut usize) -> Compiled<Arg> {
        let arg = arguments(field, &[name])?.remove(0);
        self.note_list(&arg, weight);
        Ok(arg)
    }

    fn note_list(&mut self, arg: &Arg, weight: &mut usize) {
        self.variable_lists |= !matches!(
            arg.0.as_ref().map(|v| v.clone().into_const()),
            Some(Some(_)) | None
        );
        *weight = weight.saturating_mul(MAX_LIST);
    }

    fn hotel_selections(
        &mut self,
        set: &'a SelectionSet,
        weight: &mut usize,
    ) -> Compiled<Selections<HotelField>> {
        self.selections(set, "Hotel", weight, |c, field, weight| {
            let children = &field.selection_set.node;
            Ok(match field.name.node.as_str() {
                "__typename" => leaf(field, HotelField::Typename)?,
                "id" => leaf(field, HotelField::Id)?,
                "imageCount" => leaf(field, HotelField::ImageCount)?,
                "mainImage" => {
                    no_arguments(field)?;
                    c.main_images = true;
                    HotelField::MainImage(c.image_selections(children, "Image", weight)?)
                }
                "gallery" => {
                    let mut args = arguments(field, &["first", "after"])?;
                    let after = args.pop().ok_or(Decline)?;
                    let first = args.pop().ok_or(Decline)?;
                    let mut inner = 0;
                    let connection = c.connection_selections(children, &mut inner)?;
                    c.note_list(&first, &mut inner);
                    *weight = weight.saturating_add(inner);
                    c.galleries.push((first, after));
                    HotelField::Gallery(c.galleries.len() - 1, connection)
                }
                _ => return Err(Decline),
            })
        })
    }

    fn connection_selections(
        &mut self,
        set: &'a SelectionSet,
        weight: &mut usize,
    ) -> Compiled<Selections<ConnectionField>> {
        self.selections(set, "ImageConnection", weight, |c, field, weight| {
            let children = &field.selection_set.node;
            Ok(match field.name.node.as_str() {
                "__typename" => leaf(field, ConnectionField::Typename)?,
                "totalCount" => leaf(field, ConnectionField::TotalCount)?,
                "pageInfo" => {
                    no_arguments(field)?;
                    ConnectionField::PageInfo(c.selections(
                        children,
                        "PageInfo",
                        weight,
                        |_, field, _| {
                            leaf(
                                field,
                                match field.name.node.as_str() {
                                    "__typename" => PageInfoField::Typename,
                                    "hasNextPage" => PageInfoField::HasNextPage,
                                    "hasPreviousPage" => PageInfoField::HasPreviousPage,
                                    "startCursor" => PageInfoField::StartCursor,
                                    "endCursor" => PageInfoField::EndCursor,
                                    _ => return Err(Decline),
                                },
                            )
                        },
                    )?)
                }
                "edges" => {
                    no_arguments(field)?;
                    ConnectionField::Edges(c.selections(
                        children,
                        "ImageEdge",
                        weight,
                        |c, field, weight| {
                            Ok(match field.name.node.as_str() {
                                "__typename" => leaf(field, EdgeField::Typename)?,
                                "cursor" => leaf(field, EdgeField::Cursor)?,
                                "node" => {
                                    no_arguments(field)?;
                                    EdgeField::Node(c.image_selections(
                                        &field.selection_set.node,
                                        "Image",
                                        weight,
                                    )?)
                                }
                                _ => return Err(Decline),
                            })
                        },
                    )?)
                }
                "nodes" => {
                    no_arguments(field)?;
                    ConnectionField::Nodes(c.image_selections(children, "Image", weight)?)
                }
                _ => return Err(Decline),
            })
        })
    }

    fn image_selections(
        &mut self,
        set: &'a SelectionSet,
        ty: &str,
        weight: &mut usize,
    ) -> Compiled<Selections<ImageField>> {
        self.selections(set, ty, weight, |_, field, _| {
            if field.name.node.as_str() == "url" {
                if !field.selection_set.node.items.is_empty() {
                    return Err(Decline);
                }
                return Ok(ImageField::Url(arguments(field, &["size"])?.remove(0)));
            }
            leaf(
                field,
                match field.name.node.as_str() {
                    "__typename" => ImageField::Typename,
                    "id" => ImageField::Id,
                    "width" => ImageField::Width,
                    "height" => ImageField::Height,
                    "aspectRatio" => ImageField::AspectRatio,
                    "caption" => ImageField::Caption,
                    "category" => ImageField::Category,
                    "qualityScore" => ImageField::QualityScore,
                    "status" => ImageField::Status,
                    _ => return Err(Decline),
                },
            )
        })
    }
}

/// Whether a fragment with type condition `on` applies to an object of type `ty`.
fn applies(on: Option<&str>, ty: &str) -> bool {
    match on {
        None => true,
        Some(on) => on == ty || (on == "_Entity" && matches!(ty, "Hotel" | "Image")),
    }
}

fn response_key(field: &Field) -> &str {
    field
        .alias
        .as_ref()
        .map_or(field.name.node.as_str(), |alias| alias.node.as_str())
}

/// `"key":`, escaped as JSON.
fn escaped_key(key: &str) -> Box<[u8]> {
    let mut out = serde_json::to_vec(key).unwrap_or_default();
    out.push(b':');
    out.into_boxed_slice()
}

/// The conditions of `@skip`/`@include`; any other directive declines.
fn conditions_of(directives: &[Positioned<Directive>]) -> Compiled<Vec<Condition>> {
    directives
        .iter()
        .map(|directive| {
            let directive = &directive.node;
            let arg = Arg(directive.get_argument("if").map(|v| v.node.clone()));
            if directive.arguments.len() != 1 || arg.0.is_none() {
                return Err(Decline);
            }
            match directive.name.node.as_str() {
                "skip" => Ok(Condition::Skip(arg)),
                "include" => Ok(Condition::Include(arg)),
                _ => Err(Decline),
            }
        })
        .collect()
}

/// A field without arguments or children.
fn leaf<F>(field: &Field, compiled: F) -> Compiled<F> {
    no_arguments(field)?;
    if !field.selection_set.node.items.is_empty() {
        return Err(Decline);
    }
    Ok(compiled)
}

fn no_arguments(field: &Field) -> Compiled<()> {
    if field.arguments.is_empty() {
        Ok(())
    } else {
        Err(Decline)
    }
}

/// The arguments `names` of `field`, in that order (absent ones as `Arg(None)`); any other
/// argument declines.
fn arguments(field: &Field, names: &[&str]) -> Compiled<Vec<Arg>> {
    if field
        .arguments
        .iter()
        .any(|(name, _)| !names.contains(&name.node.as_str()))
    {
        return Err(Decline);
    }
    Ok(names
        .iter()
        .map(|name| Arg(field.get_argument(name).map(|v| v.node.clone())))
        .collect())
}

impl Arg {
    /// The value with variables replaced; `Ok(None)` when the argument is absent, or is a
    /// variable that was not given and has no default (the field's default applies: declined
    /// where it matters). A variable missing without default inside a list or object declines.
    fn value(
        &self,
        variables: &async_graphql::Variables,
        definitions: &[Positioned<VariableDefinition>],
    ) -> Compiled<Option<async_graphql::Value>> {
        let lookup = |name: Name| -> Compiled<async_graphql::Value> {
            variables
                .get(&name)
                .cloned()
                .or_else(|| {
                    definitions
                        .iter()
                        .find(|d| d.node.name.node == name)
                        .and_then(|d| d.node.default_value.as_ref())
                        .map(|v| v.node.clone())
                })
                .ok_or(Decline)
        };
        match &self.0 {
            None => Ok(None),
            Some(value) => value.clone().into_const_with(lookup).map(Some),
        }
    }

    /// As [`Arg::value`], for an argument without a default whose absence and null mean the
    /// same (`after`): a variable not given and without default is absent too.
    fn value_or_absent(
        &self,
        variables: &async_graphql::Variables,
        definitions: &[Positioned<VariableDefinition>],
    ) -> Compiled<Option<async_graphql::Value>> {
        if let Some(DocumentValue::Variable(name)) = &self.0
            && variables.get(name).is_none()
            && !definitions
                .iter()
                .any(|d| d.node.name.node == *name && d.node.default_value.is_some())
        {
            return Ok(None);
        }
        self.value(variables, definitions)
    }
}
