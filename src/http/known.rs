//! The operations the consumer teams ship (`schema/operations/`), compiled in: their names are
//! the only operation names `/metrics` labels as such (see
//! [`crate::telemetry::Metrics::label_only_operations`]). Operation names are chosen by
//! clients; with any name becoming a label, a few hundred made-up names used up the label
//! budget for good and the real operations were counted as `other` from then on.
//!
//! A test checks that this list holds every file of `schema/operations/`: a new consumer
//! operation gets its line here.

use async_graphql::parser::types::DocumentOperations;

/// Every document of `schema/operations/`.
const DOCUMENTS: &[&str] = &[
    include_str!("../../schema/operations/admin/DeactivateImage.graphql"),
    include_str!("../../schema/operations/admin/HotelImagesOverview.graphql"),
    include_str!("../../schema/operations/admin/ImageLookup.graphql"),
    include_str!("../../schema/operations/frontend/HotelGallery.graphql"),
    include_str!("../../schema/operations/frontend/SearchResultsMainImages.graphql"),
    include_str!("../../schema/operations/pipelines/ClassifyImages.graphql"),
    include_str!("../../schema/operations/pipelines/ImportImages.graphql"),
    include_str!("../../schema/operations/studio/SetMainImage.graphql"),
];

/// The names of the known operations.
pub fn operation_names() -> Vec<String> {
    DOCUMENTS
        .iter()
        .filter_map(|text| async_graphql::parser::parse_query(text).ok())
        .flat_map(|document| match document.operations {
            DocumentOperations::Single(_) => Vec::new(),
            DocumentOperations::Multiple(operations) => operations
                .into_keys()
                .map(|name| name.to_string())
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_consumer_operation_is_known_by_name() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/operations");
        let mut files = 0;
        // A test reading the repository's own files: a missing or unreadable one is the
        // failure to report.
        let read_dir =
            |dir: &std::path::Path| std::fs::read_dir(dir).expect("schema/operations is readable");
        for team in read_dir(&root) {
            for file in read_dir(&team.expect("a team folder").path()) {
                let path = file.expect("an operation file").path();
                let text = std::fs::read_to_string(&path).expect("an operation is UTF-8 text");
                assert!(DOCUMENTS.contains(&text.as_str()), "{text}");
                files += 1;
            }
        }
        assert_eq!(files, DOCUMENTS.len());
        let names = operation_names();
        assert_eq!(
            names.len(),
            DOCUMENTS.len(),
            "one named operation each: {names:?}"
        );
        assert!(names.iter().any(|n| n == "SearchResultsMainImages"));
    }
}
