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
