//! The federation SDL as published: what async-graphql exports, plus the directives a router
//! reads that async-graphql cannot emit. It is the one text `export-schema` prints, the schema
//! registry receives (`schema.graphql`) and `_service { sdl }` answers.
//!
//! async-graphql links federation v2.5 and knows neither `@authenticated` (authorization) nor
//! `@cost` / `@listSize` (demand control, federation v2.9) nor `@cacheTag` (the router's
//! response cache, federation v2.12). So the exported SDL is processed here, in one place:
//! 1. the `@link` is raised to [`FEDERATION_URL`] and imports every directive
//!    [`FIELD_DIRECTIVES`] and [`TYPE_DIRECTIVES`] use;
//! 2. each field named in [`FIELD_DIRECTIVES`] gets its directives, appended after its type;
//! 3. each type named in [`TYPE_DIRECTIVES`] gets its directives, before the `{` of its
//!    definition.
//!
//! Fields are found with the GraphQL parser, not by matching text, and the result is parsed
//! again to check every directive landed on its field: a renamed field or a table entry for a
//! field that does not exist is an error at start-up (and in the tests), never a silently
//! missing rule. Composition with the neighbouring subgraphs is checked by `schema/compose.mjs`.
//!
//! `_service { sdl }` is answered with the published text by [`ServePublishedSdl`], which
//! replaces the library's text in the response. The alternative, dropping `enable_federation()`
//! and writing `_service` by hand, would also mean writing `_entities` (representation parsing,
//! `_Entity` union, `_Any` scalar) by hand. It is not an async-graphql extension: with any
//! extension installed the library resolves every field through the extension chain, which
//! cost the hot operations a sizeable share of their CPU (see BENCHMARKS.md).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_graphql::Value;
use async_graphql::parser::parse_schema;
use async_graphql::parser::types::{FieldDefinition, TypeKind, TypeSystemDefinition};

/// The federation version async-graphql links.
const LIBRARY_FEDERATION_URL: &str = "https://specs.apollo.dev/federation/v2.5";
/// The federation version published: v2.12 is the first with `@cacheTag` (v2.9 brought `@cost`
/// and `@listSize`).
pub const FEDERATION_URL: &str = "https://specs.apollo.dev/federation/v2.12";

/// Any valid token (the subgraph checks the token itself too; DESIGN "Who may do what").
const AUTHENTICATED: &str = "@authenticated";
/// Image internals (provenance, legacy IDs, every hotel showing an image): admins only.
const ADMIN: &str = r#"@requiresScopes(scopes: [["images:admin"]])"#;
/// Hotel internals: admins, and hoteliers (the subgraph checks that the hotel is theirs).
const ADMIN_OR_HOTELIER: &str =
    r#"@requiresScopes(scopes: [["images:admin"], ["images:hotelier"]])"#;
/// A Relay connection: as many edges and nodes as `first` asks for.
const CONNECTION: &str =
    r#"@listSize(slicingArguments: ["first"], sizedFields: ["edges", "nodes"])"#;
/// A list of at most 100 entries (the most IDs a list query accepts).
const UP_TO_100: &str = "@listSize(assumedSize: 100)";
/// A short list that is not paged: a handful per image.
const A_FEW: &str = "@listSize(assumedSize: 5)";
/// The tagging pipeline (or an admin).
const CLASSIFIER: &str = r#"@requiresScopes(scopes: [["images:admin"], ["images:classify"]])"#;
/// The partner-ingestion pipeline (or an admin).
const IMPORTER: &str = r#"@requiresScopes(scopes: [["images:admin"], ["images:import"]])"#;
/// A windowed read of the link table plus a count, per parent: dearer than a curated read.
const LINK_SCAN: &str = "@cost(weight: 5)";

/// Rows of `("Type.field", directives)`.
pub type DirectiveTable = [(&'static str, &'static [&'static str])];

/// The directives of each field, as `("Type.field", directives)`. Public reads carry demand
/// control only; internal fields and mutations carry authorization too (DESIGN "Who may do
/// what"; the subgraph enforces every rule itself as well).
pub const FIELD_DIRECTIVES: &DirectiveTable = &[
    ("Query.hotels", &[UP_TO_100]),
    ("Query.images", &[UP_TO_100]),
    ("Query.partners", &[UP_TO_100]),
    ("Hotel.mainImageChoice", &[AUTHENTICATED, ADMIN_OR_HOTELIER]),
    ("Hotel.gallery", &[CONNECTION]),
    (
        "Hotel.images",
        &[AUTHENTICATED, ADMIN_OR_HOTELIER, CONNECTION, LINK_SCAN],
    ),
    ("Hotel.version", &[AUTHENTICATED, ADMIN_OR_HOTELIER]),
    ("Image.tags", &[A_FEW]),
    ("Image.statusReason", &[AUTHENTICATED, ADMIN]),
    ("Query.catalogStats", &[AUTHENTICATED, ADMIN]),
    ("Query.auditLog", &[AUTHENTICATED, ADMIN, CONNECTION]),
    ("Query.searchImages", &[AUTHENTICATED, ADMIN, CONNECTION]),
    (
        "Query.hotelsWithoutMainImage",
        &[AUTHENTICATED, ADMIN, CONNECTION],
    ),
    ("Image.legacyIds", &[AUTHENTICATED, ADMIN, A_FEW]),
    ("Image.sources", &[AUTHENTICATED, ADMIN, A_FEW]),
    (
        "Image.hotels",
        &[AUTHENTICATED, ADMIN, CONNECTION, LINK_SCAN],
    ),
    ("Mutation.setMainImage", &[AUTHENTICATED, ADMIN_OR_HOTELIER]),
    (
        "Mutation.resetMainImage",
        &[AUTHENTICATED, ADMIN_OR_HOTELIER],
    ),
    (
        "Mutation.setGalleryPins",
        &[AUTHENTICATED, ADMIN_OR_HOTELIER],
    ),
    ("Mutation.uploadImage", &[AUTHENTICATED, ADMIN_OR_HOTELIER]),
    ("Mutation.hideImage", &[AUTHENTICATED, ADMIN_OR_HOTELIER]),
    ("Mutation.showImage", &[AUTHENTICATED, ADMIN_OR_HOTELIER]),
    (
        "Mutation.updateHotelImage",
        &[AUTHENTICATED, ADMIN_OR_HOTELIER],
    ),
    ("Mutation.removeUpload", &[AUTHENTICATED, ADMIN_OR_HOTELIER]),
    ("Mutation.deactivateImage", &[AUTHENTICATED, ADMIN]),
    ("Mutation.activateImage", &[AUTHENTICATED, ADMIN]),
    ("Mutation.updateImage", &[AUTHENTICATED, ADMIN]),
    ("Mutation.purgeImage", &[AUTHENTICATED, ADMIN]),
    ("Mutation.classifyImages", &[AUTHENTICATED, CLASSIFIER]),
    ("Mutation.importImages", &[AUTHENTICATED, IMPORTER]),
    ("Mutation.upsertPartner", &[AUTHENTICATED, ADMIN]),
];

/// The directives of each entity type, as `("Type", directives)`: the router's response cache
/// tags what it caches of a hotel or an image with the entity's tag, which the relay
/// invalidates when the entity changes ([`crate::service::router_cache::cache_tag`] makes the
/// same tags).
pub const TYPE_DIRECTIVES: &DirectiveTable = &[
    ("Hotel", &[r#"@cacheTag(format: "hotel-{$key.id}")"#]),
    ("Image", &[r#"@cacheTag(format: "image-{$key.id}")"#]),
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SdlError {
    #[error("the exported SDL does not link {LIBRARY_FEDERATION_URL} with an import list")]
    NoLink,
    #[error("the SDL does not parse: {0}")]
    Unparsable(String),
    #[error("`{0}` is in the directive table but not in the schema")]
    UnknownField(String),
    #[error("type `{0}` is in the directive table but not in the schema")]
    UnknownType(String),
    #[error("`{0}` is not a `Type.field` name")]
    BadEntry(String),
    #[error("`{directive}` did not land on `{field}`")]
    NotApplied { field: String, directive: String },
}

/// The published SDL for the SDL async-graphql exported.
pub fn publishable(exported: &str) -> Result<String, SdlError> {
    publish(exported, FIELD_DIRECTIVES, TYPE_DIRECTIVES)
}

fn publish(
    exported: &str,
    fields: &DirectiveTable,
    types: &DirectiveTable,
) -> Result<String, SdlError> {
    let mut imports = directive_names(fields);
    imports.extend(directive_names(types));
    let linked = relink(exported, &imports)?;
    let directed = add_type_directives(&add_field_directives(&linked, fields)?, types)?;
    check(&directed, fields)?;
    check_types(&directed, types)?;
    Ok(directed)
}

/// `@cost(weight: 5)` → `@cost`.
fn directive_name(directive: &str) -> &str {
    directive.split('(').next().unwrap_or(directive).trim()
}

fn directive_names(table: &DirectiveTable) -> BTreeSet<&'static str> {
    table
        .iter()
        .flat_map(|(_, directives)| directives.iter().map(|d| directive_name(d)))
        .collect()
}

/// Raises the federation link and adds `imports` to its import list.
fn relink(sdl: &str, imports: &BTreeSet<&str>) -> Result<String, SdlError> {
    let link = sdl.find(LIBRARY_FEDERATION_URL).ok_or(SdlError::NoLink)?;
    let list_start =
        link + sdl[link..].find("import: [").ok_or(SdlError::NoLink)? + "import: [".len();
    let list_end = list_start + sdl[list_start..].find(']').ok_or(SdlError::NoLink)?;
    let mut names: Vec<String> = sdl[list_start..list_end]
        .split(',')
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect();
    for import in imports {
        let quoted = format!("\"{import}\"");
        if !names.contains(&quoted) {
            names.push(quoted);
        }
    }
    Ok(format!(
        "{}{FEDERATION_URL}{}{}{}",
        &sdl[..link],
        &sdl[link + LIBRARY_FEDERATION_URL.len()..list_start],
        names.join(", "),
        &sdl[list_end..]
    ))
}

fn split_entry(entry: &str) -> Result<(&str, &str), SdlError> {
    entry
        .split_once('.')
        .ok_or_else(|| SdlError::BadEntry(entry.to_owned()))
}

/// Every object field of `sdl` by `(type, field)`.
fn fields(sdl: &str) -> Result<BTreeMap<(String, String), FieldDefinition>, SdlError> {
    let document = parse_schema(sdl).map_err(|e| SdlError::Unparsable(e.to_string()))?;
    let mut fields = BTreeMap::new();
    for definition in document.definitions {
        let TypeSystemDefinition::Type(ty) = definition else {
            continue;
        };
        let TypeKind::Object(object) = ty.node.kind else {
            continue;
        };
        for field in object.fields {
            let key = (
                ty.node.name.node.to_string(),
                field.node.name.node.to_string(),
            );
            fields.insert(key, field.node);
        }
    }
    Ok(fields)
}

/// Appends each field's directives to the line that holds its type: async-graphql writes a
/// field's type and directives on one line, whether or not its arguments span several.
fn add_field_directives(sdl: &str, table: &DirectiveTable) -> Result<String, SdlError> {
    let fields = fields(sdl)?;
    let mut additions: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for (entry, directives) in table {
        let (ty, field) = split_entry(entry)?;
        let definition = fields
            .get(&(ty.to_owned(), field.to_owned()))
            .ok_or_else(|| SdlError::UnknownField((*entry).to_owned()))?;
        additions
            .entry(definition.ty.pos.line)
            .or_default()
            .extend(directives.iter().copied());
    }
    let mut out = String::with_capacity(sdl.len() + 2048);
    for (index, line) in sdl.split_inclusive('\n').enumerate() {
        match additions.get(&(index + 1)) {
            Some(directives) => {
                let (text, end) = match line.strip_suffix('\n') {
                    Some(text) => (text, "\n"),
                    None => (line, ""),
                };
                out.push_str(text);
                for directive in directives {
                    out.push(' ');
                    out.push_str(directive);
                }
                out.push_str(end);
            }
            None => out.push_str(line),
        }
    }
    Ok(out)
}

/// Object types of `sdl` by name: the line of their definition and their directives' names.
fn types(sdl: &str) -> Result<BTreeMap<String, (usize, BTreeSet<String>)>, SdlError> {
    let document = parse_schema(sdl).map_err(|e| SdlError::Unparsable(e.to_string()))?;
    let mut types = BTreeMap::new();
    for definition in document.definitions {
        let TypeSystemDefinition::Type(ty) = definition else {
            continue;
        };
        if !matches!(ty.node.kind, TypeKind::Object(_)) {
            continue;
        }
        let directives = ty
            .node
            .directives
            .iter()
            .map(|d| d.node.name.node.to_string())
            .collect();
        types.insert(ty.node.name.node.to_string(), (ty.pos.line, directives));
    }
    Ok(types)
}

/// Inserts each type's directives before the `{` that ends the line of its definition
/// (async-graphql writes `type Hotel @key(fields: "id") {` on one line).
fn add_type_directives(sdl: &str, table: &DirectiveTable) -> Result<String, SdlError> {
    let types = types(sdl)?;
    let mut additions: BTreeMap<usize, &[&str]> = BTreeMap::new();
    for (name, directives) in table {
        let (line, _) = types
            .get(*name)
            .ok_or_else(|| SdlError::UnknownType((*name).to_owned()))?;
        additions.insert(*line, directives);
    }
    let mut out = String::with_capacity(sdl.len() + 256);
    for (index, line) in sdl.split_inclusive('\n').enumerate() {
        let opening = additions
            .get(&(index + 1))
            .zip(line.trim_end().strip_suffix('{'));
        match opening {
            Some((directives, head)) => {
                out.push_str(head.trim_end());
                for directive in *directives {
                    out.push(' ');
                    out.push_str(directive);
                }
                out.push_str(" {\n");
            }
            None => out.push_str(line),
        }
    }
    Ok(out)
}

/// Parses the published SDL and checks that every type carries its directives.
fn check_types(sdl: &str, table: &DirectiveTable) -> Result<(), SdlError> {
    let types = types(sdl)?;
    for (name, directives) in table {
        let (_, present) = types
            .get(*name)
            .ok_or_else(|| SdlError::UnknownType((*name).to_owned()))?;
        if let Some(missing) = directives
            .iter()
            .map(|d| directive_name(d).trim_start_matches('@'))
            .find(|name| !present.contains(*name))
        {
            return Err(SdlError::NotApplied {
                field: (*name).to_owned(),
                directive: format!("@{missing}"),
            });
        }
    }
    Ok(())
}

/// Parses the published SDL and checks that every field carries its directives.
fn check(sdl: &str, table: &DirectiveTable) -> Result<(), SdlError> {
    let fields = fields(sdl)?;
    for (entry, directives) in table {
        let (ty, field) = split_entry(entry)?;
        let definition = fields
            .get(&(ty.to_owned(), field.to_owned()))
            .ok_or_else(|| SdlError::UnknownField((*entry).to_owned()))?;
        let present: BTreeSet<&str> = definition
            .directives
            .iter()
            .map(|d| d.node.name.node.as_str())
            .collect();
        if let Some(missing) = directives
            .iter()
            .map(|d| directive_name(d).trim_start_matches('@'))
            .find(|name| !present.contains(name))
        {
            return Err(SdlError::NotApplied {
                field: (*entry).to_owned(),
                directive: format!("@{missing}"),
            });
        }
    }
    Ok(())
}

/// Answers `_service { sdl }` with the published SDL instead of the library's export: after
/// execution, the library's SDL text, wherever the response carries it (under any alias), is
/// replaced by the published one. Only documents that mention `_service` are looked at.
#[derive(Clone)]
pub struct ServePublishedSdl {
    /// What async-graphql answers for `_service { sdl }`.
    library: Arc<str>,
    published: Arc<str>,
}

impl ServePublishedSdl {
    pub fn new(library: String, published: String) -> Self {
        Self {
            library: library.into(),
            published: published.into(),
        }
    }

    /// Whether a response to `query` may carry the library's SDL.
    pub fn concerns(query: &str) -> bool {
        query.contains("_service")
    }

    /// Replaces the library's SDL in `response` by the published one.
    pub fn patch(&self, response: &mut async_graphql::Response) {
        self.replace(&mut response.data);
    }

    fn replace(&self, value: &mut Value) {
        match value {
            Value::String(text) if *text == *self.library => {
                *text = self.published.to_string();
            }
            Value::Object(fields) => fields.values_mut().for_each(|v| self.replace(v)),
            Value::List(items) => items.iter_mut().for_each(|v| self.replace(v)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPORTED: &str = r#"type Hotel @key(fields: "id") {
	id: ID!
	"""
	images: not a field, a description
	"""
	images(
		"""
		Page size.
		"""
		first: Int! = 50
	): ImageConnection!
	version: Int!
}

type ImageConnection {
	nodes: [Hotel!]!
}

type Query {
	hotel(id: ID!): Hotel
}
extend schema @link(
	url: "https://specs.apollo.dev/federation/v2.5",
	import: ["@key", "@requiresScopes"]
)
"#;

    const TABLE: &DirectiveTable = &[
        ("Hotel.images", &[AUTHENTICATED, CONNECTION]),
        ("Hotel.version", &[ADMIN_OR_HOTELIER, LINK_SCAN]),
    ];

    #[test]
    fn directives_land_after_the_type_of_their_field_and_are_imported() {
        let published = publish(EXPORTED, TABLE, &[]).expect("published");
        let lines: Vec<&str> = published.lines().collect();
        assert_eq!(
            lines[10],
            format!("\t): ImageConnection! {AUTHENTICATED} {CONNECTION}")
        );
        assert_eq!(
            lines[11],
            format!("\tversion: Int! {ADMIN_OR_HOTELIER} {LINK_SCAN}")
        );
        assert_eq!(lines[3], "\timages: not a field, a description");
        assert!(published.contains(&format!("url: \"{FEDERATION_URL}\"")));
        assert!(published.contains(
            r#"import: ["@key", "@requiresScopes", "@authenticated", "@cost", "@listSize"]"#
        ));
        assert!(published.ends_with(")\n"));
        assert_eq!(
            published.lines().count(),
            EXPORTED.lines().count(),
            "only lines grow"
        );
    }

    #[test]
    fn a_table_entry_without_its_field_is_an_error() {
        let cases: &[(&DirectiveTable, SdlError)] = &[
            (
                &[("Hotel.vintage", &[AUTHENTICATED])],
                SdlError::UnknownField("Hotel.vintage".into()),
            ),
            (
                &[("Motel.images", &[AUTHENTICATED])],
                SdlError::UnknownField("Motel.images".into()),
            ),
            (
                &[("Hotel", &[AUTHENTICATED])],
                SdlError::BadEntry("Hotel".into()),
            ),
        ];
        for (table, error) in cases {
            assert_eq!(publish(EXPORTED, table, &[]).as_ref(), Err(error));
        }
    }

    #[test]
    fn an_sdl_without_the_library_link_is_an_error() {
        let other = EXPORTED.replace("v2.5", "v2.3");
        assert_eq!(publish(&other, TABLE, &[]), Err(SdlError::NoLink));
    }

    #[test]
    fn the_tables_name_only_directives_federation_v2_12_defines() {
        let known = [
            "@authenticated",
            "@requiresScopes",
            "@cost",
            "@listSize",
            "@cacheTag",
        ];
        for name in directive_names(FIELD_DIRECTIVES).union(&directive_names(TYPE_DIRECTIVES)) {
            assert!(known.contains(name), "{name}");
        }
    }

    #[test]
    fn the_cache_tags_are_those_the_relay_invalidates() {
        for (ty, directives) in TYPE_DIRECTIVES {
            let tag = crate::service::router_cache::cache_tag(ty, "{$key.id}").expect(ty);
            assert_eq!(
                *directives,
                [format!(r#"@cacheTag(format: "{tag}")"#).as_str()]
            );
        }
    }

    #[test]
    fn type_directives_land_before_the_brace_of_their_type_and_are_imported() {
        const CACHED: &DirectiveTable = &[("Hotel", &[r#"@cacheTag(format: "hotel-{$key.id}")"#])];
        let published = publish(EXPORTED, TABLE, CACHED).expect("published");
        assert_eq!(
            published.lines().next(),
            Some(r#"type Hotel @key(fields: "id") @cacheTag(format: "hotel-{$key.id}") {"#)
        );
        assert!(
            published.contains(r#""@authenticated", "@cacheTag", "@cost", "@listSize"]"#),
            "{published}"
        );
        assert_eq!(published.lines().count(), EXPORTED.lines().count());
        let unknown: &DirectiveTable = &[("Motel", &[r#"@cacheTag(format: "m")"#])];
        assert_eq!(
            publish(EXPORTED, TABLE, unknown),
            Err(SdlError::UnknownType("Motel".into()))
        );
    }
}
