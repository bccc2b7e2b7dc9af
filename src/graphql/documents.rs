//! Parsed documents by query text. The frontend sends the same few operations over and over;
//! parsing each one again costs more than copying the parsed tree, so the parse is kept.
//!
//! Only documents that parse are kept (a syntax error is left to the executor, which reports
//! it), and only small ones (the hot operations are small; a large one-off document would
//! only evict them).

use async_graphql::parser::types::ExecutableDocument;

/// Documents kept.
const ENTRIES: u64 = 1_000;
/// Longest query text kept, in bytes.
const MAX_TEXT: usize = 8 * 1024;

#[derive(Clone)]
pub struct Documents(moka::sync::Cache<String, ExecutableDocument>);

impl Default for Documents {
    fn default() -> Self {
        Self(moka::sync::Cache::new(ENTRIES))
    }
}

impl Documents {
    /// Gives `request` its parsed document, from the cache or parsed now.
    pub fn attach(&self, request: &mut async_graphql::Request) {
        if request.query.is_empty() || request.query.len() > MAX_TEXT {
            return;
        }
        if let Some(document) = self.0.get(&request.query) {
            request.set_parsed_query(document);
            return;
        }
        if let Ok(document) = async_graphql::parser::parse_query(&request.query) {
            self.0.insert(request.query.clone(), document.clone());
            request.set_parsed_query(document);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: String) -> async_graphql::Request {
        async_graphql::Request::new(query)
    }

    /// Text bytes of every cached document.
    fn cached_text(documents: &Documents) -> usize {
        documents.0.run_pending_tasks();
        documents.0.iter().map(|(query, _)| query.len()).sum()
    }

    #[test]
    fn a_document_over_the_limits_is_not_kept() {
        let documents = Documents::default();
        let aliases = (0..31)
            .map(|i| format!("a{i}: hotel(id: {i}) {{ id }}"))
            .collect::<Vec<_>>()
            .join(" ");
        documents.attach(&mut request(format!("{{ {aliases} }}")));
        assert_eq!(cached_text(&documents), 0);
    }

    #[test]
    fn kept_documents_stay_within_a_byte_budget() {
        let documents = Documents::default();
        for n in 0..2_000 {
            let head = format!("query Q{n} {{ hotel(id: 1) {{ id }} }}\n# ");
            let query = format!("{head}{}", "x".repeat(8 * 1024 - 1 - head.len()));
            documents.attach(&mut request(query));
        }
        let text = cached_text(&documents);
        assert!(text <= 2 << 20, "{text} bytes of query text kept");
    }
}
