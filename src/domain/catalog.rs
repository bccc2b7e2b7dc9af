//! The catalog's vocabulary as validated types: IDs, image categories, partner kinds, statuses
//! and tag origins. Every enum has one stable text form, used in the database and in events.
//! And the identity of the catalog itself ([`CatalogId`]).

use std::fmt;
use std::str::FromStr;

/// The identity of a catalog (one database): a random UUID its database drew when the schema
/// was created. What the service keeps in a shared Redis is named after it, so that catalogs
/// sharing a Redis, or a database created again behind a warm one, never read each other's
/// entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CatalogId(uuid::Uuid);

impl CatalogId {
    /// A UUID with or without dashes, as the database stored it.
    pub fn parse(text: &str) -> Option<Self> {
        uuid::Uuid::try_parse(text.trim()).ok().map(Self)
    }
}

/// 32 lower-case hex digits (no dashes): the form used in Redis names.
impl fmt::Display for CatalogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.simple())
    }
}

/// A text form did not name any variant of an enum (or an ID was not a positive integer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {what}")]
pub struct ParseError {
    pub what: &'static str,
    pub value: String,
}

macro_rules! positive_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(i64);

        impl $name {
            /// Accepts only positive values: zero and negatives are never valid IDs.
            pub fn new(value: i64) -> Option<Self> {
                (value > 0).then_some(Self(value))
            }
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                s.parse::<i64>().ok().and_then(Self::new).ok_or_else(|| ParseError {
                    what: $what,
                    value: s.to_owned(),
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_i64(self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = i64::deserialize(deserializer)?;
                Self::new(value).ok_or_else(|| {
                    serde::de::Error::custom(format!("{value} is not a valid {}", $what))
                })
            }
        }
    };
}

positive_id!(
    /// A hotel of the platform; the accommodation domain owns the ID space.
    HotelId,
    "hotel ID"
);
positive_id!(
    /// The unified ID of one picture, whatever partners and URL spellings it came under.
    ImageId,
    "image ID"
);
positive_id!(
    /// A source of images (an OTA, a hotel chain, a content provider, or hoteliers).
    PartnerId,
    "partner ID"
);

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable text form stored in the database and sent in events.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(ParseError { what: $what, value: s.to_owned() }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

text_enum!(
    /// What an image shows. An image's category is its highest-confidence tag.
    Category, "image category" {
        Exterior => "EXTERIOR",
        Lobby => "LOBBY",
        Bedroom => "BEDROOM",
        Bathroom => "BATHROOM",
        Pool => "POOL",
        Restaurant => "RESTAURANT",
        Bar => "BAR",
        Spa => "SPA",
        Fitness => "FITNESS",
        Meeting => "MEETING",
        View => "VIEW",
        Beach => "BEACH",
        Amenity => "AMENITY",
        Food => "FOOD",
        Logo => "LOGO",
        Map => "MAP",
        Other => "OTHER",
    }
);

text_enum!(
    /// What kind of source a partner is; also how much its images are trusted (see [`PartnerKind::rank`]).
    PartnerKind, "partner kind" {
        Ota => "OTA",
        HotelChain => "HOTEL_CHAIN",
        ContentProvider => "CONTENT_PROVIDER",
        Hotelier => "HOTELIER",
    }
);

impl PartnerKind {
    /// Preference when images are otherwise equal: lower is better
    /// (HOTELIER, HOTEL_CHAIN, OTA, CONTENT_PROVIDER).
    pub fn rank(self) -> u8 {
        match self {
            PartnerKind::Hotelier => 0,
            PartnerKind::HotelChain => 1,
            PartnerKind::Ota => 2,
            PartnerKind::ContentProvider => 3,
        }
    }
}

text_enum!(
    /// Whether an image (everywhere) or a link (for one hotel) is shown.
    Status, "status" {
        Active => "ACTIVE",
        Inactive => "INACTIVE",
    }
);

text_enum!(
    /// Where an image is in processing (issue 16): its bytes fetched, stored and measured
    /// (`Ready`), not yet (`Pending`), or given up on (`Failed`, with a reason). Separate from
    /// [`Status`]: only a READY image is curated, whatever its status.
    ProcessingState, "processing state" {
        Pending => "PENDING",
        Ready => "READY",
        Failed => "FAILED",
    }
);

text_enum!(
    /// Who set a link's status last: a hotelier may show again only what a hotelier hid, never
    /// what an admin took offline (a link without a mark counts as an admin's).
    LinkStatusBy, "link status setter" {
        Hotelier => "HOTELIER",
        Admin => "ADMIN",
    }
);

text_enum!(
    /// Whether a partner still delivers an image: a snapshot import retires the sources its
    /// feed no longer contains.
    SourceStatus, "source status" {
        Active => "ACTIVE",
        Retired => "RETIRED",
    }
);

text_enum!(
    /// Who set a tag: the tagging model, or a person (manual tags beat model tags).
    TagOrigin, "tag origin" {
        Model => "MODEL",
        Manual => "MANUAL",
    }
);

text_enum!(
    /// Who chose a hotel's main image.
    MainImageOrigin, "main image origin" {
        Computed => "COMPUTED",
        Hotelier => "HOTELIER",
        Admin => "ADMIN",
    }
);

/// Longest caption or reason a person or a partner may write, in characters.
pub const MAX_TEXT_CHARS: usize = 1_000;

/// Whether `text` fits [`MAX_TEXT_CHARS`]: the one rule for captions and reasons, wherever
/// they come from (a mutation, a feed line, an upload).
pub fn text_fits(text: &str) -> bool {
    text.chars().count() <= MAX_TEXT_CHARS
}

/// A score in 0..=1: a quality score or a tag's confidence.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Score(f64);

impl Score {
    /// Accepts only values in 0..=1 (NaN is not one).
    pub fn new(value: f64) -> Option<Self> {
        (0.0..=1.0).contains(&value).then_some(Self(value))
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

/// One classification tag of an image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tag {
    pub category: Category,
    /// In 0..=1.
    pub confidence: f64,
    pub origin: TagOrigin,
}

/// An image's category: its highest-confidence tag, taken from its manual tags when it has any;
/// `OTHER` when it has no tag at all. Equal confidences break on the category's declaration
/// order, so the answer never depends on the order the tags were stored in.
pub fn effective_category(tags: &[Tag]) -> Category {
    let has_manual = tags.iter().any(|t| t.origin == TagOrigin::Manual);
    tags.iter()
        .filter(|t| !has_manual || t.origin == TagOrigin::Manual)
        .min_by(|a, b| {
            b.confidence
                .total_cmp(&a.confidence)
                .then(a.category.cmp(&b.category))
        })
        .map_or(Category::Other, |t| t.category)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(category: Category, confidence: f64, origin: TagOrigin) -> Tag {
        Tag {
            category,
            confidence,
            origin,
        }
    }

    #[test]
    fn ids_must_be_positive_integers() {
        let cases = [
            ("1", Some(1)),
            ("42", Some(42)),
            ("0", None),
            ("-5", None),
            ("x", None),
            ("", None),
            (" 1", None),
        ];
        for (text, want) in cases {
            assert_eq!(
                text.parse::<HotelId>().ok().map(HotelId::get),
                want,
                "{text:?}"
            );
        }
    }

    #[test]
    fn enums_round_trip_through_their_text_form() {
        for c in Category::ALL {
            assert_eq!(c.as_str().parse::<Category>(), Ok(*c));
        }
        assert!("pool".parse::<Category>().is_err());
    }

    #[test]
    fn effective_category_prefers_manual_tags_then_confidence_then_declaration_order() {
        use Category::*;
        use TagOrigin::*;
        let cases: &[(&[Tag], Category)] = &[
            (&[], Other),
            (&[tag(Pool, 0.9, Model)], Pool),
            (&[tag(Pool, 0.6, Model), tag(Bar, 0.8, Model)], Bar),
            (&[tag(Pool, 0.99, Model), tag(Bar, 0.1, Manual)], Bar),
            (
                &[tag(Pool, 0.5, Model), tag(Exterior, 0.5, Model)],
                Exterior,
            ),
            (
                &[tag(Exterior, 0.5, Model), tag(Pool, 0.5, Model)],
                Exterior,
            ),
        ];
        for (tags, want) in cases {
            assert_eq!(effective_category(tags), *want, "{tags:?}");
        }
    }
}
