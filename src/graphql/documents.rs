//! Parsed documents by query text. The frontend sends the same few operations over and over;
//! parsing each one again costs more than copying the parsed tree, so the parse is kept.
//!
//! What is kept is bounded by memory, not by count, and holds only what earned it:
//! - a document is parsed on a miss and handed out, but only [`Documents::keep`] stores it,
//!   which the HTTP layer calls once the request passed the limits and the library's validation
//!   (anonymous clients could otherwise fill the cache with documents that are refused anyway);
//! - entries are weighed by an estimate of their memory ([`weight`]) against a byte budget, so
//!   that a thousand 8 KB one-offs cannot take what a count bound would allow;
//! - only small texts are kept (the hot operations are small; a large one-off document would
//!   only evict them), and a syntax error is left to the executor, which reports it.

use async_graphql::parser::types::ExecutableDocument;

/// Estimated memory the cache may hold, in bytes.
const BUDGET: u64 = 16 << 20;
/// Longest query text kept, in bytes.
const MAX_TEXT: usize = 8 * 1024;
/// Memory of a parsed document per byte of its text, estimated: every name, value and
/// selection of the tree is a positioned node (a few words each) and the text is kept as the
/// key. Erring high only keeps fewer documents.
const BYTES_PER_TEXT_BYTE: u64 = 16;

#[derive(Clone)]
pub struct Documents(moka::sync::Cache<String, ExecutableDocument>);

/// A document parsed for a request; [`Documents::keep`] stores it once it proved valid.
pub struct Parsed {
    pub document: ExecutableDocument,
    /// The text and a copy of the tree to store: `None` when it came from the cache or is too
    /// large to keep.
    to_keep: Option<(String, ExecutableDocument)>,
}

impl Default for Documents {
    fn default() -> Self {
        Self::with_budget(BUDGET)
    }
}

/// The estimated memory of a cached document whose text is `query`.
fn weight(query: &str, _document: &ExecutableDocument) -> u32 {
    u32::try_from((query.len() as u64).saturating_mul(BYTES_PER_TEXT_BYTE)).unwrap_or(u32::MAX)
}

impl Documents {
    /// A cache holding about `budget` bytes.
    pub fn with_budget(budget: u64) -> Self {
        Self(
            moka::sync::Cache::builder()
                .max_capacity(budget)
                .weigher(|query: &String, document| weight(query, document))
                .build(),
        )
    }

    /// The parsed document of `query`, from the cache or parsed now; `None` when it does not
    /// parse (the executor reports the syntax error).
    pub fn parse(&self, query: &str) -> Option<Parsed> {
        if query.is_empty() {
            return None;
        }
        if let Some(document) = self.0.get(query) {
            return Some(Parsed {
                document,
                to_keep: None,
            });
        }
        let document = async_graphql::parser::parse_query(query).ok()?;
        let to_keep = (query.len() <= MAX_TEXT).then(|| (query.to_owned(), document.clone()));
        Some(Parsed { document, to_keep })
    }

    /// Stores a document that passed the limits and validation.
    pub fn keep(&self, parsed: Option<(String, ExecutableDocument)>) {
        if let Some((query, document)) = parsed {
            self.0.insert(query, document);
        }
    }
}

impl Parsed {
    /// Hands the tree to the request; what [`Documents::keep`] needs stays here.
    pub fn attach(
        self,
        request: &mut async_graphql::Request,
    ) -> Option<(String, ExecutableDocument)> {
        request.set_parsed_query(self.document);
        self.to_keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text bytes of every cached document.
    fn cached_text(documents: &Documents) -> usize {
        documents.0.run_pending_tasks();
        documents.0.iter().map(|(query, _)| query.len()).sum()
    }

    #[test]
    fn a_parsed_document_is_kept_only_when_asked_to() {
        let documents = Documents::default();
        let query = "{ hotel(id: 1) { id } }";
        let parsed = documents.parse(query).expect("parses");
        assert_eq!(cached_text(&documents), 0, "parsing alone keeps nothing");
        let to_keep = parsed.attach(&mut async_graphql::Request::new(query));
        documents.keep(to_keep);
        assert_eq!(cached_text(&documents), query.len());
        let again = documents.parse(query).expect("cached");
        assert!(
            again.to_keep.is_none(),
            "a cached document is not kept twice"
        );
        assert!(documents.parse("{ hotel(").is_none());
    }

    #[test]
    fn kept_documents_stay_within_a_byte_budget() {
        let documents = Documents::default();
        for n in 0..2_000 {
            let head = format!("query Q{n} {{ hotel(id: 1) {{ id }} }}\n# ");
            let query = format!("{head}{}", "x".repeat(8 * 1024 - 1 - head.len()));
            let parsed = documents.parse(&query).expect("parses");
            documents.keep(parsed.to_keep);
        }
        let text = cached_text(&documents);
        assert!(text <= 2 << 20, "{text} bytes of query text kept");
    }
}
