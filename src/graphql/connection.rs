//! Relay paging: opaque cursors, validated `first`/`after`, `PageInfo`, and the complexity of a
//! page. The connection objects themselves live beside their nodes in [`super::types`].
//!
//! A cursor is the base64url text of `<kind>:<number>`: the kind stops a cursor of one list
//! being replayed on another, the number is a gallery position or an ID. Clients must treat it
//! as opaque.

use async_graphql::{Result, SimpleObject};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::error::bad_input;
use crate::store::Window;

/// The largest `first` a client may ask for.
pub const MAX_PAGE: i32 = 100;

/// Which list a cursor belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorKind {
    /// Position in a hotel's published gallery.
    Gallery,
    /// Image ID in a hotel's linked images.
    HotelImages,
    /// Hotel ID in an image's hotels.
    ImageHotels,
    /// Row ID in the audit log (newest first).
    AuditLog,
    /// Hotel ID in the hotels without a main image.
    HotelsWithoutMainImage,
    /// Image ID in an image search (highest first).
    SearchImages,
}

impl CursorKind {
    fn prefix(self) -> &'static str {
        match self {
            CursorKind::Gallery => "g",
            CursorKind::HotelImages => "i",
            CursorKind::ImageHotels => "h",
            CursorKind::AuditLog => "a",
            CursorKind::HotelsWithoutMainImage => "m",
            CursorKind::SearchImages => "s",
        }
    }

    pub fn encode(self, value: i64) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{value}", self.prefix()))
    }

    fn decode(self, cursor: &str) -> Option<i64> {
        let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
        let text = std::str::from_utf8(&bytes).ok()?;
        let (prefix, value) = text.split_once(':')?;
        if prefix != self.prefix() {
            return None;
        }
        value.parse().ok().filter(|v: &i64| *v >= 0)
    }
}

/// The complexity of a page: its size times the complexity of one item. A `first` out of range
/// counts as the largest page (the resolver refuses it anyway).
pub fn page_complexity(first: i32, child_complexity: usize) -> usize {
    let size = if (1..=MAX_PAGE).contains(&first) {
        first
    } else {
        MAX_PAGE
    };
    size as usize * child_complexity
}

/// Validated paging arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageArgs {
    pub first: u64,
    pub after: Option<i64>,
}

impl PageArgs {
    /// Checks `first` (1..=100) and decodes `after`; a bad value is a `BAD_USER_INPUT` error.
    pub fn parse(first: i32, after: Option<&str>, kind: CursorKind) -> Result<Self> {
        if !(1..=MAX_PAGE).contains(&first) {
            return Err(bad_input(format!(
                "`first` must be between 1 and {MAX_PAGE}"
            )));
        }
        let after = match after {
            None => None,
            Some(cursor) => Some(
                kind.decode(cursor)
                    .ok_or_else(|| bad_input("`after` is not a cursor of this list"))?,
            ),
        };
        Ok(Self {
            first: first as u64,
            after,
        })
    }

    /// The rows to read: those after the cursor, one more than asked, which tells whether
    /// there is a next page.
    pub fn window(self) -> Window {
        Window {
            after: self.after,
            limit: self.first + 1,
        }
    }

    /// The page of the rows read through [`Self::window`], and whether there is a next one.
    pub fn split<T>(self, mut rows: Vec<T>) -> (Vec<T>, bool) {
        let has_next_page = rows.len() as u64 > self.first;
        rows.truncate(self.first as usize);
        (rows, has_next_page)
    }
}

// Relay's `PageInfo`, `@shareable`: nearly every subgraph with connections declares the same.
#[derive(SimpleObject, Debug, Clone)]
#[graphql(shareable)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
}

pub fn page_info<N>(
    edges: &[(String, N)],
    has_next_page: bool,
    has_previous_page: bool,
) -> PageInfo {
    PageInfo {
        has_next_page,
        has_previous_page,
        start_cursor: edges.first().map(|(c, _)| c.clone()),
        end_cursor: edges.last().map(|(c, _)| c.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_are_bound_to_their_list() {
        let cursor = CursorKind::Gallery.encode(7);
        assert_eq!(CursorKind::Gallery.decode(&cursor), Some(7));
        assert_eq!(CursorKind::HotelImages.decode(&cursor), None);
        assert_eq!(CursorKind::Gallery.decode("not a cursor"), None);
        assert_eq!(
            CursorKind::Gallery.decode(&URL_SAFE_NO_PAD.encode("g:-1")),
            None
        );
    }

    #[test]
    fn first_is_bounded() {
        for (first, ok) in [
            (0, false),
            (1, true),
            (100, true),
            (101, false),
            (-3, false),
        ] {
            assert_eq!(
                PageArgs::parse(first, None, CursorKind::Gallery).is_ok(),
                ok,
                "{first}"
            );
        }
    }
}
