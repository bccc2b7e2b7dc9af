//! Partner deliveries (pure: no I/O): turning one raw import item into a validated
//! [`Delivery`], and deciding every item's [`Outcome`] from what the catalog already holds and
//! what the earlier items of the same batch did ([`plan`]).
//!
//! # Outcomes (DESIGN section 3)
//! - `CREATED`: no image has the item's URL key yet: a new image.
//! - `LINKED`: the image exists, and is now also shown for the item's hotel.
//! - `DEDUPLICATED`: the image is already shown for the hotel; this partner becomes (another)
//!   source of it.
//! - `UNCHANGED`: this partner already delivered this image for this hotel.
//! - `REJECTED`: the item is invalid, or its legacy ID already belongs to another image;
//!   nothing of it is stored.
//!
//! Items are decided in order, each one seeing what the earlier ones did: a later item may
//! refer to an image an earlier item created.

use std::collections::{HashMap, HashSet};
use std::fmt;

use super::catalog::{Category, HotelId, ImageId, MAX_TEXT_CHARS, Score, Tag, TagOrigin};
use super::media::{StorageKeyError, check_storage_key};
use super::url::{
    CanonicalUrl, Rewrites, UrlError, UrlKey, canonicalize, require_public_or_allowed,
};

/// Longest URL accepted, in bytes.
pub const MAX_URL_BYTES: usize = 4_096;
/// Longest partner image reference or legacy ID, in characters (their columns' width).
pub const MAX_REF_CHARS: usize = 255;
/// Largest width or height accepted, in pixels.
pub const MAX_PIXELS: i64 = 100_000;

/// `status_reason` of an image that went inactive because a snapshot import retired its last
/// active source. Only such an image comes back to life when a partner delivers it again; an
/// image an admin took offline stays offline.
pub const NO_ACTIVE_SOURCE: &str = "no active source left (retired by a snapshot import)";

/// One item as a partner sends it, before validation (the fields of the feed and of the
/// `importImages` input).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawItem {
    /// The hotel's ID as text (a GraphQL `ID`, or the feed's number).
    pub hotel_id: String,
    pub url: String,
    pub partner_image_ref: Option<String>,
    pub legacy_id: Option<String>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub caption: Option<String>,
    pub tags: Vec<RawTag>,
    pub quality_score: Option<f64>,
    /// Hex SHA-256 of the image's bytes, any letter case.
    pub content_sha256: Option<String>,
    /// The key of an object in the object store that holds the image's bytes already (a
    /// catalog migrated from an older system): processing reads it instead of fetching `url`.
    pub storage_key: Option<String>,
}

/// A tag as sent: the category by its stable name (`POOL`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct RawTag {
    pub category: String,
    pub confidence: f64,
}

/// A validated item: one partner's delivery of one picture for one hotel.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub hotel: HotelId,
    pub canonical_url: CanonicalUrl,
    pub url_key: UrlKey,
    /// The URL as the partner sent it (trimmed).
    pub source_url: String,
    pub partner_image_ref: Option<String>,
    pub legacy_id: Option<String>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub caption: Option<String>,
    /// Model tags, each category at most once.
    pub tags: Vec<Tag>,
    pub quality_score: Option<f64>,
    /// Lower-case hex.
    pub content_sha256: Option<String>,
    /// A valid object key (see [`check_storage_key`]), trimmed.
    pub storage_key: Option<String>,
}

/// Why an item was rejected; the text is the `reason` clients see.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("hotel ID `{0}` is not a positive integer")]
    HotelId(String),
    #[error("{0}")]
    Url(#[from] UrlError),
    #[error("the URL is longer than {MAX_URL_BYTES} bytes")]
    UrlTooLong,
    #[error("{field} must be between 1 and {MAX_PIXELS} pixels, not {value}")]
    Pixels { field: &'static str, value: i64 },
    #[error("{field} must be between 0 and 1, not {value}")]
    UnitRange { field: String, value: f64 },
    #[error("`{0}` is not an image category")]
    Category(String),
    #[error("tag category {0} is given twice")]
    RepeatedCategory(Category),
    #[error("content_sha256 must be 64 hexadecimal characters")]
    ContentSha256,
    #[error("storage_key {0}: not a valid object key")]
    StorageKey(StorageKeyError),
    #[error("{field} is longer than {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error("legacy ID `{0}` already belongs to another image")]
    LegacyIdTaken(String),
    /// The picture (its URL key or its bytes' hash) was taken down by `purgeImage`.
    #[error("PURGED: the picture was taken down and cannot be imported again")]
    Purged,
}

/// Validates `item` and canonicalizes its URL under the partner's `rewrites`.
pub fn validate(item: &RawItem, rewrites: &Rewrites) -> Result<Delivery, Rejection> {
    validate_allowing(item, rewrites, &[])
}

/// [`validate`], taking URLs whose host is listed in `allow_hosts` (`FETCH_ALLOW_HOSTS`)
/// whatever address it is.
pub fn validate_allowing(
    item: &RawItem,
    rewrites: &Rewrites,
    allow_hosts: &[String],
) -> Result<Delivery, Rejection> {
    let hotel = item
        .hotel_id
        .trim()
        .parse::<HotelId>()
        .map_err(|_| Rejection::HotelId(item.hotel_id.clone()))?;
    let source_url = item.url.trim();
    if source_url.len() > MAX_URL_BYTES {
        return Err(Rejection::UrlTooLong);
    }
    let canonical_url = canonicalize(source_url, rewrites)?;
    // Both the URL as sent (stored as the source) and the one a partner's rules made of it.
    require_public_or_allowed(source_url, allow_hosts)?;
    require_public_or_allowed(canonical_url.as_str(), allow_hosts)?;
    let width = pixels(item.width, "width")?;
    let height = pixels(item.height, "height")?;
    let quality_score = item
        .quality_score
        .map(|q| unit(q, "quality_score".to_owned()))
        .transpose()?;
    Ok(Delivery {
        hotel,
        url_key: UrlKey::of(&canonical_url),
        canonical_url,
        source_url: source_url.to_owned(),
        partner_image_ref: text(&item.partner_image_ref, "partner_image_ref", MAX_REF_CHARS)?,
        legacy_id: text(&item.legacy_id, "legacy_id", MAX_REF_CHARS)?,
        width,
        height,
        caption: text(&item.caption, "caption", MAX_TEXT_CHARS)?,
        tags: tags(&item.tags)?,
        quality_score,
        content_sha256: sha256(item.content_sha256.as_deref())?,
        storage_key: storage_key(item.storage_key.as_deref())?,
    })
}

/// An optional text field: trimmed, absent when empty, at most `max` characters.
fn text(
    value: &Option<String>,
    field: &'static str,
    max: usize,
) -> Result<Option<String>, Rejection> {
    match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) if v.chars().count() > max => Err(Rejection::TooLong { field, max }),
        Some(v) => Ok(Some(v.to_owned())),
    }
}

fn pixels(value: Option<i64>, field: &'static str) -> Result<Option<i32>, Rejection> {
    match value {
        None => Ok(None),
        Some(v @ 1..=MAX_PIXELS) => Ok(i32::try_from(v).ok()),
        Some(value) => Err(Rejection::Pixels { field, value }),
    }
}

fn unit(value: f64, field: String) -> Result<f64, Rejection> {
    Score::new(value)
        .map(Score::get)
        .ok_or(Rejection::UnitRange { field, value })
}

fn tags(raw: &[RawTag]) -> Result<Vec<Tag>, Rejection> {
    let mut seen = HashSet::new();
    raw.iter()
        .enumerate()
        .map(|(i, tag)| {
            let category: Category = tag
                .category
                .trim()
                .parse()
                .map_err(|_| Rejection::Category(tag.category.clone()))?;
            if !seen.insert(category) {
                return Err(Rejection::RepeatedCategory(category));
            }
            Ok(Tag {
                category,
                confidence: unit(tag.confidence, format!("tags[{i}].confidence"))?,
                origin: TagOrigin::Model,
            })
        })
        .collect()
}

fn sha256(value: Option<&str>) -> Result<Option<String>, Rejection> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(Some(v.to_ascii_lowercase()))
        }
        Some(_) => Err(Rejection::ContentSha256),
    }
}

/// An optional object key: trimmed, absent when empty, else valid.
fn storage_key(value: Option<&str>) -> Result<Option<String>, Rejection> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(key) => {
            check_storage_key(key).map_err(Rejection::StorageKey)?;
            Ok(Some(key.to_owned()))
        }
    }
}

/// What happened to one item of an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Created,
    Linked,
    Deduplicated,
    Unchanged,
    Rejected,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Created,
        Outcome::Linked,
        Outcome::Deduplicated,
        Outcome::Unchanged,
        Outcome::Rejected,
    ];

    /// The stable name (as in the API).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "CREATED",
            Outcome::Linked => "LINKED",
            Outcome::Deduplicated => "DEDUPLICATED",
            Outcome::Unchanged => "UNCHANGED",
            Outcome::Rejected => "REJECTED",
        }
    }

    /// Whether the item changed the catalog (beyond "last seen" times).
    pub fn changes_catalog(self) -> bool {
        matches!(
            self,
            Outcome::Created | Outcome::Linked | Outcome::Deduplicated
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An image of the catalog that a batch's URL key already names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownImage {
    pub id: ImageId,
    /// Inactive only because a snapshot retired its last source ([`NO_ACTIVE_SOURCE`]): a new
    /// delivery brings it back.
    pub retired: bool,
}

/// What the catalog holds about one batch of one partner (loaded in a few statements).
#[derive(Debug, Clone, Default)]
pub struct Known {
    /// Images by the URL keys of the batch.
    pub images: HashMap<UrlKey, KnownImage>,
    /// Bindings of the batch's legacy IDs.
    pub legacy: HashMap<String, ImageId>,
    /// (hotel, image) pairs of the batch that this partner has delivered before.
    pub deliveries: HashSet<(HotelId, ImageId)>,
    /// (hotel, image) pairs of the batch that are linked.
    pub links: HashSet<(HotelId, ImageId)>,
    /// The batch's URL keys and content hashes that name a purged picture.
    pub purged: HashSet<String>,
}

impl Known {
    /// Whether `delivery` brings back a purged picture: by a URL key or content hash.
    fn is_purged(&self, delivery: &Delivery) -> bool {
        self.purged.contains(delivery.url_key.as_str())
            || delivery
                .content_sha256
                .as_ref()
                .is_some_and(|sha| self.purged.contains(sha))
    }
}

/// An image an item refers to: one of the catalog, or one an earlier item of the batch creates
/// (by its position in [`Plan::created`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageRef {
    Known(ImageId),
    New(usize),
}

/// One accepted item.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// The item's position in the batch.
    pub index: usize,
    pub outcome: Outcome,
    pub image: ImageRef,
    pub delivery: Delivery,
}

/// The decisions for one batch, and the rows they need.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Accepted items, in batch order.
    pub accepted: Vec<Accepted>,
    /// Rejected items: position and reason.
    pub rejected: Vec<(usize, Rejection)>,
    /// Positions in `accepted` of the items that create an image; `ImageRef::New(n)` is the
    /// image of `accepted[created[n]]`.
    pub created: Vec<usize>,
    /// New legacy ID bindings.
    pub legacy: Vec<(String, ImageRef)>,
    /// Retired images that this batch delivers again.
    pub revived: Vec<ImageId>,
}

impl Plan {
    /// The accepted item that creates image `New(n)`.
    pub fn creator(&self, n: usize) -> Option<&Accepted> {
        self.created.get(n).and_then(|&i| self.accepted.get(i))
    }

    /// Whether the batch changes the catalog (beyond "last seen" times).
    pub fn changes_catalog(&self) -> bool {
        !self.revived.is_empty()
            || !self.legacy.is_empty()
            || self.accepted.iter().any(|a| a.outcome.changes_catalog())
    }
}

/// Decides every item of one partner's batch, in order (see the module doc).
pub fn plan(items: Vec<Result<Delivery, Rejection>>, known: &Known) -> Plan {
    let mut plan = Plan::default();
    let mut new_images: HashMap<UrlKey, usize> = HashMap::new();
    let known_pair = |(hotel, image): &(HotelId, ImageId)| (*hotel, ImageRef::Known(*image));
    let mut delivered: HashSet<(HotelId, ImageRef)> =
        known.deliveries.iter().map(known_pair).collect();
    let mut linked: HashSet<(HotelId, ImageRef)> = known.links.iter().map(known_pair).collect();
    let mut legacy: HashMap<String, ImageRef> = known
        .legacy
        .iter()
        .map(|(id, image)| (id.clone(), ImageRef::Known(*image)))
        .collect();
    let mut revived = HashSet::new();

    for (index, item) in items.into_iter().enumerate() {
        let delivery = match item {
            Ok(delivery) => delivery,
            Err(rejection) => {
                plan.rejected.push((index, rejection));
                continue;
            }
        };
        if known.is_purged(&delivery) {
            plan.rejected.push((index, Rejection::Purged));
            continue;
        }
        let found = known
            .images
            .get(&delivery.url_key)
            .map(|image| ImageRef::Known(image.id))
            .or_else(|| new_images.get(&delivery.url_key).map(|&n| ImageRef::New(n)));
        if let Some(legacy_id) = &delivery.legacy_id
            && let Some(bound) = legacy.get(legacy_id)
            && Some(*bound) != found
        {
            plan.rejected
                .push((index, Rejection::LegacyIdTaken(legacy_id.clone())));
            continue;
        }
        let hotel = delivery.hotel;
        let (image, outcome) = match found {
            None => {
                let n = plan.created.len();
                plan.created.push(plan.accepted.len());
                new_images.insert(delivery.url_key.clone(), n);
                (ImageRef::New(n), Outcome::Created)
            }
            Some(image) if delivered.contains(&(hotel, image)) => (image, Outcome::Unchanged),
            Some(image) if linked.contains(&(hotel, image)) => (image, Outcome::Deduplicated),
            Some(image) => (image, Outcome::Linked),
        };
        delivered.insert((hotel, image));
        linked.insert((hotel, image));
        if let Some(legacy_id) = &delivery.legacy_id
            && !legacy.contains_key(legacy_id)
        {
            legacy.insert(legacy_id.clone(), image);
            plan.legacy.push((legacy_id.clone(), image));
        }
        if let Some(retired) = known
            .images
            .get(&delivery.url_key)
            .filter(|image| image.retired)
            && revived.insert(retired.id)
        {
            plan.revived.push(retired.id);
        }
        plan.accepted.push(Accepted {
            index,
            outcome,
            image,
            delivery,
        });
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(hotel: &str, url: &str) -> RawItem {
        RawItem {
            hotel_id: hotel.to_owned(),
            url: url.to_owned(),
            ..RawItem::default()
        }
    }

    fn tag(category: &str, confidence: f64) -> RawTag {
        RawTag {
            category: category.to_owned(),
            confidence,
        }
    }

    #[test]
    fn validation_accepts_good_items_and_names_what_is_wrong_with_bad_ones() {
        let url = "https://img.example/a.jpg";
        let sha = "AB".repeat(32);
        let cases: Vec<(RawItem, Result<(), &str>)> = vec![
            (item("1", url), Ok(())),
            (item(" 7 ", url), Ok(())),
            (
                RawItem {
                    width: Some(1600),
                    height: Some(1067),
                    quality_score: Some(1.0),
                    tags: vec![tag("POOL", 0.0), tag("BAR", 1.0)],
                    content_sha256: Some(sha.clone()),
                    ..item("1", url)
                },
                Ok(()),
            ),
            (
                item("-5", url),
                Err("hotel ID `-5` is not a positive integer"),
            ),
            (
                item("0", url),
                Err("hotel ID `0` is not a positive integer"),
            ),
            (
                item("x", url),
                Err("hotel ID `x` is not a positive integer"),
            ),
            (
                item("1", "ftp://img.example/a.jpg"),
                Err("scheme `ftp` is not allowed: only http and https URLs are accepted"),
            ),
            (
                item("1", "not a url"),
                Err("not a URL: relative URL without a base"),
            ),
            (
                item("1", "https://u:p@img.example/a.jpg"),
                Err(
                    "the URL carries credentials (a user name or password before the host): \
                     refused",
                ),
            ),
            (
                item("1", "http://169.254.169.254/latest/meta-data/"),
                Err(
                    "`169.254.169.254` is not a public host: loopback, private, link-local and \
                     other internal addresses are refused",
                ),
            ),
            (
                RawItem {
                    width: Some(0),
                    ..item("1", url)
                },
                Err("width must be between 1 and 100000 pixels, not 0"),
            ),
            (
                RawItem {
                    height: Some(-3),
                    ..item("1", url)
                },
                Err("height must be between 1 and 100000 pixels, not -3"),
            ),
            (
                RawItem {
                    quality_score: Some(1.5),
                    ..item("1", url)
                },
                Err("quality_score must be between 0 and 1, not 1.5"),
            ),
            (
                RawItem {
                    tags: vec![tag("POOL", 0.5), tag("BAR", -0.1)],
                    ..item("1", url)
                },
                Err("tags[1].confidence must be between 0 and 1, not -0.1"),
            ),
            (
                RawItem {
                    tags: vec![tag("pool", 0.5)],
                    ..item("1", url)
                },
                Err("`pool` is not an image category"),
            ),
            (
                RawItem {
                    tags: vec![tag("POOL", 0.5), tag("POOL", 0.6)],
                    ..item("1", url)
                },
                Err("tag category POOL is given twice"),
            ),
            (
                RawItem {
                    content_sha256: Some("abc".to_owned()),
                    ..item("1", url)
                },
                Err("content_sha256 must be 64 hexadecimal characters"),
            ),
            (
                RawItem {
                    storage_key: Some(" legacy/2019/a.jpg ".to_owned()),
                    ..item("1", url)
                },
                Ok(()),
            ),
            (
                RawItem {
                    storage_key: Some("../outside/a.jpg".to_owned()),
                    ..item("1", url)
                },
                Err("storage_key has an empty, `.` or `..` part: not a valid object key"),
            ),
            (
                RawItem {
                    storage_key: Some("a\u{0}b.jpg".to_owned()),
                    ..item("1", url)
                },
                Err("storage_key contains a control character: not a valid object key"),
            ),
            (
                RawItem {
                    storage_key: Some("k".repeat(256)),
                    ..item("1", url)
                },
                Err("storage_key is longer than 255 characters: not a valid object key"),
            ),
            (
                RawItem {
                    content_sha256: Some("g".repeat(64)),
                    ..item("1", url)
                },
                Err("content_sha256 must be 64 hexadecimal characters"),
            ),
            (
                RawItem {
                    caption: Some("x".repeat(1_001)),
                    ..item("1", url)
                },
                Err("caption is longer than 1000 characters"),
            ),
            (
                RawItem {
                    legacy_id: Some("L".repeat(256)),
                    ..item("1", url)
                },
                Err("legacy_id is longer than 255 characters"),
            ),
        ];
        for (raw, want) in cases {
            let got = validate(&raw, &Rewrites::none())
                .map(|_| ())
                .map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(str::to_owned), "{raw:?}");
        }
    }

    #[test]
    fn a_rewrite_rule_cannot_point_an_item_at_a_non_public_host() {
        let rules = [crate::domain::url::UrlRewrite {
            pattern: r"^https://img\.example/".to_owned(),
            replacement: "http://10.0.0.7/".to_owned(),
        }];
        let rewrites = Rewrites::compile(&rules).expect("valid rules");
        let got = validate(&item("1", "https://img.example/a.jpg"), &rewrites);
        assert_eq!(
            got,
            Err(Rejection::Url(UrlError::NotPublicHost(
                "10.0.0.7".to_owned()
            )))
        );
    }

    #[test]
    fn validation_normalizes_what_it_keeps() {
        let raw = RawItem {
            legacy_id: Some("  L-1 ".to_owned()),
            partner_image_ref: Some(String::new()),
            caption: Some("   ".to_owned()),
            content_sha256: Some("AB".repeat(32)),
            tags: vec![tag("POOL", 0.9)],
            ..item("100", " HTTPS://IMG.example:443/a.jpg?utm_source=x#top ")
        };
        let delivery = validate(&raw, &Rewrites::none()).unwrap();
        assert_eq!(delivery.hotel, HotelId::new(100).unwrap());
        assert_eq!(delivery.canonical_url.as_str(), "https://img.example/a.jpg");
        assert_eq!(delivery.url_key, UrlKey::of(&delivery.canonical_url));
        assert_eq!(
            delivery.source_url,
            "HTTPS://IMG.example:443/a.jpg?utm_source=x#top"
        );
        assert_eq!(delivery.legacy_id.as_deref(), Some("L-1"));
        assert_eq!(delivery.partner_image_ref, None);
        assert_eq!(delivery.caption, None);
        assert_eq!(delivery.content_sha256, Some("ab".repeat(32)));
        assert_eq!(delivery.tags[0].origin, TagOrigin::Model);
    }

    fn delivery(hotel: i64, url: &str, legacy: Option<&str>) -> Result<Delivery, Rejection> {
        validate(
            &RawItem {
                legacy_id: legacy.map(str::to_owned),
                ..item(&hotel.to_string(), url)
            },
            &Rewrites::none(),
        )
    }

    fn key(url: &str) -> UrlKey {
        UrlKey::of(&canonicalize(url, &Rewrites::none()).unwrap())
    }

    fn outcomes(plan: &Plan, len: usize) -> Vec<Outcome> {
        let mut out = vec![Outcome::Rejected; len];
        for accepted in &plan.accepted {
            out[accepted.index] = accepted.outcome;
        }
        out
    }

    #[test]
    fn outcomes_follow_the_catalog_and_the_earlier_items_of_the_batch() {
        use Outcome::*;
        let (a, b, c) = (
            "https://img.example/a.jpg",
            "https://img.example/b.jpg",
            "https://img.example/c.jpg",
        );
        let image = |id| ImageId::new(id).unwrap();
        let hotel = |id| HotelId::new(id).unwrap();
        let known = Known {
            images: [
                (
                    key(a),
                    KnownImage {
                        id: image(10),
                        retired: false,
                    },
                ),
                (
                    key(b),
                    KnownImage {
                        id: image(11),
                        retired: true,
                    },
                ),
            ]
            .into(),
            legacy: [("L-10".to_owned(), image(10))].into(),
            deliveries: [(hotel(1), image(10))].into(),
            links: [(hotel(1), image(10)), (hotel(2), image(10))].into(),
            ..Known::default()
        };
        let items = vec![
            delivery(1, a, None),                             // delivered before
            delivery(2, a, Some("L-10")),                     // linked by another partner
            delivery(3, a, None),                             // a new hotel for a known image
            delivery(1, "https://IMG.example/c.jpg#x", None), // new
            delivery(1, c, None),                             // the same picture again
            delivery(4, c, Some("L-10")),                     // L-10 is image 10's
            delivery(4, c, Some("L-new")),                    // binds L-new to the new image
            delivery(5, b, Some("L-new")),                    // L-new is taken now
            delivery(5, b, None),                             // revives the retired image
            delivery(-1, a, None),                            // invalid
        ];
        let plan = plan(items, &known);
        assert_eq!(
            outcomes(&plan, 10),
            [
                Unchanged,
                Deduplicated,
                Linked,
                Created,
                Unchanged,
                Rejected,
                Linked,
                Rejected,
                Linked,
                Rejected
            ]
        );
        assert_eq!(plan.created.len(), 1);
        assert_eq!(plan.creator(0).unwrap().index, 3);
        assert_eq!(plan.accepted[4].image, ImageRef::New(0));
        assert_eq!(plan.legacy, [("L-new".to_owned(), ImageRef::New(0))]);
        assert_eq!(plan.revived, [image(11)]);
        let reasons: Vec<String> = plan.rejected.iter().map(|(_, r)| r.to_string()).collect();
        assert_eq!(
            reasons,
            [
                "legacy ID `L-10` already belongs to another image",
                "legacy ID `L-new` already belongs to another image",
                "hotel ID `-1` is not a positive integer",
            ]
        );
        assert!(plan.changes_catalog());
    }

    #[test]
    fn a_purged_picture_is_rejected_by_any_spelling_of_its_url_or_by_its_bytes() {
        let sha = "ab".repeat(32);
        let known = Known {
            purged: [
                key("https://img.example/gone.jpg").as_str().to_owned(),
                sha.clone(),
            ]
            .into(),
            ..Known::default()
        };
        let same_bytes = validate(
            &RawItem {
                content_sha256: Some(sha.to_uppercase()),
                ..item("1", "https://img.example/elsewhere.jpg")
            },
            &Rewrites::none(),
        );
        let items = vec![
            delivery(
                1,
                "https://IMG.example:443/gone.jpg?utm_source=feed#top",
                None,
            ),
            same_bytes,
            delivery(1, "https://img.example/kept.jpg", None),
        ];
        let plan = plan(items, &known);
        assert_eq!(
            outcomes(&plan, 3),
            [Outcome::Rejected, Outcome::Rejected, Outcome::Created]
        );
        assert!(
            plan.rejected
                .iter()
                .all(|(_, r)| *r == Rejection::Purged && r.to_string().starts_with("PURGED"))
        );
    }

    #[test]
    fn a_batch_seen_before_changes_nothing() {
        let a = "https://img.example/a.jpg";
        let image = ImageId::new(10).unwrap();
        let hotel = HotelId::new(1).unwrap();
        let known = Known {
            images: [(
                key(a),
                KnownImage {
                    id: image,
                    retired: false,
                },
            )]
            .into(),
            legacy: [("L-1".to_owned(), image)].into(),
            deliveries: [(hotel, image)].into(),
            links: [(hotel, image)].into(),
            ..Known::default()
        };
        let plan = plan(
            vec![delivery(1, a, Some("L-1")), delivery(1, a, None)],
            &known,
        );
        assert_eq!(outcomes(&plan, 2), [Outcome::Unchanged, Outcome::Unchanged]);
        assert!(!plan.changes_catalog());
    }
}
