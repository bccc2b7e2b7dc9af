//! Curation: which of a hotel's linked images make its gallery, in which order, and which one is
//! its main image. Pure rules over plain values: the caller loads the candidates (with their
//! effective category already computed), the pins and the main-image override.
//!
//! # Rules in brief
//! - **Eligible**: link and image ACTIVE; processing READY (the bytes were fetched, stored and
//!   measured: a PENDING or FAILED image is never shown); width and height known, short side at least
//!   [`Rules::min_short_side`]; category neither LOGO nor MAP; not a duplicate of a better
//!   eligible image (same SHA-256, compared case-insensitively, or perceptual hashes within
//!   [`Rules::phash_max_distance`] bits). Duplicates are resolved greedily, best first.
//! - **Best first**: quality desc (missing or NaN = 0), partner kind rank asc (no partner last),
//!   area desc, image ID asc.
//! - **Main image**: the override if its image is eligible; else the best eligible landscape
//!   image of a preferred category (EXTERIOR, BEDROOM, POOL, VIEW, LOBBY); else the best
//!   eligible image; else none.
//! - **Gallery**: main image, then eligible pins in their order, then the rest taking turns over
//!   categories (BEDROOM, BATHROOM, EXTERIOR, ...), best first within a category; at most
//!   [`Rules::gallery_size`] entries.
//!
//! The result depends only on the content of the input, never on its order: every ranking ends
//! on the image ID.
//!
//! [`republish`] turns a hotel's curation into its published view ([`HotelRecord`]) and decides
//! whether that view changed and its version with it; the store only loads the inputs and
//! writes the rows.

use std::cmp::Ordering;
use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::catalog::{Category, HotelId, ImageId, MainImageOrigin, PartnerKind, Status};

/// Tunable thresholds of curation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Smallest accepted short side (min of width and height), in pixels.
    pub min_short_side: u32,
    /// Most entries of a gallery, the main image and pins included.
    pub gallery_size: usize,
    /// Largest Hamming distance between two perceptual hashes that still means "same picture".
    pub phash_max_distance: u32,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            min_short_side: 300,
            gallery_size: 50,
            phash_max_distance: super::measure::NEAR_DUPLICATE_DISTANCE,
        }
    }
}

/// One image linked to the hotel, with what curation needs to know about it.
///
/// A hotel is expected to have at most one candidate per image ID.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub image_id: ImageId,
    /// Status of the link between this hotel and the image.
    pub link_status: Status,
    /// Status of the image itself (everywhere).
    pub image_status: Status,
    /// Whether the image's bytes were fetched, stored and measured (processing READY).
    pub ready: bool,
    /// In pixels; `None` while unknown.
    pub width: Option<u32>,
    /// In pixels; `None` while unknown.
    pub height: Option<u32>,
    /// The image's effective category (see [`super::catalog::effective_category`]).
    pub category: Category,
    /// Higher is better; `None` counts as 0.
    pub quality: Option<f64>,
    /// The most trusted kind among the partners that supplied the image; `None` ranks last.
    pub best_partner_kind: Option<PartnerKind>,
    /// Hex SHA-256 of the file's bytes, any letter case.
    pub content_sha256: Option<String>,
    /// 64-bit perceptual hash; close hashes mean visually near-identical pictures.
    pub perceptual_hash: Option<u64>,
}

/// A main image chosen by a person for the hotel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Override {
    pub image_id: ImageId,
    pub origin: MainImageOrigin,
}

/// The hotel's main image and who chose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MainChoice {
    pub image_id: ImageId,
    /// The override's origin when the override was kept, otherwise `Computed`.
    pub origin: MainImageOrigin,
}

/// The outcome of curating one hotel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Curation {
    /// `None` only when no image is eligible.
    pub main: Option<MainChoice>,
    /// Ordered, without repeats; starts with the main image when there is one.
    pub gallery: Vec<ImageId>,
    /// Candidates whose link and image are both ACTIVE, eligible or not.
    pub active_image_count: usize,
}

/// Categories never shown in a gallery nor chosen as main image.
const EXCLUDED_CATEGORIES: [Category; 2] = [Category::Logo, Category::Map];

/// Categories a computed main image may come from (when it is also landscape).
const PREFERRED_MAIN_CATEGORIES: [Category; 5] = [
    Category::Exterior,
    Category::Bedroom,
    Category::Pool,
    Category::View,
    Category::Lobby,
];

/// The order in which categories take turns in the gallery after the main image and pins.
/// Together with [`EXCLUDED_CATEGORIES`] it covers every category (checked by a test), so no
/// eligible image can be left out.
const GALLERY_CATEGORY_ORDER: [Category; 15] = [
    Category::Bedroom,
    Category::Bathroom,
    Category::Exterior,
    Category::Pool,
    Category::Lobby,
    Category::Restaurant,
    Category::Bar,
    Category::Spa,
    Category::Fitness,
    Category::View,
    Category::Beach,
    Category::Meeting,
    Category::Amenity,
    Category::Food,
    Category::Other,
];

/// Curates one hotel: main image, gallery and active image count.
///
/// `pins` are image IDs in the order a person wants them right after the main image; pins that
/// are unknown, ineligible or repeated are ignored. An override whose image is not eligible is
/// ignored too, and the main image is computed instead.
pub fn curate(
    candidates: &[Candidate],
    pins: &[ImageId],
    main_override: Option<&Override>,
    rules: &Rules,
) -> Curation {
    let eligible = eligible_best_first(candidates, rules);
    let main = choose_main(&eligible, main_override);
    let gallery = build_gallery(
        &eligible,
        main.map(|m| m.image_id),
        pins,
        rules.gallery_size,
    );
    Curation {
        main,
        gallery,
        active_image_count: candidates.iter().filter(|c| is_active(c)).count(),
    }
}

// ---------------------------------------------------------------------------------------------
// Eligibility
// ---------------------------------------------------------------------------------------------

/// The eligible candidates, best first.
fn eligible_best_first<'a>(candidates: &'a [Candidate], rules: &Rules) -> Vec<&'a Candidate> {
    let mut pool: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| passes_own_checks(c, rules))
        .collect();
    pool.sort_by(|a, b| best_first(a, b));

    // Greedy, best first: an image is dropped only when it duplicates one already kept, so a
    // dropped image never knocks out a third one (A~B and B~C but not A~C keeps A and C).
    // Quadratic, which is fine for the few hundred images a hotel has.
    let mut kept: Vec<&Candidate> = Vec::with_capacity(pool.len());
    for candidate in pool {
        if !kept.iter().any(|k| is_duplicate(k, candidate, rules)) {
            kept.push(candidate);
        }
    }
    kept
}

fn is_active(c: &Candidate) -> bool {
    c.link_status == Status::Active && c.image_status == Status::Active
}

/// Every eligibility rule that looks at the candidate alone (everything but duplicates).
fn passes_own_checks(c: &Candidate, rules: &Rules) -> bool {
    let big_enough = match (c.width, c.height) {
        (Some(w), Some(h)) => w.min(h) >= rules.min_short_side,
        // Unknown dimensions could hide a thumbnail: not shown until measured.
        _ => false,
    };
    is_active(c) && c.ready && big_enough && !EXCLUDED_CATEGORIES.contains(&c.category)
}

/// Whether `later` (ranked after `kept`) shows the same picture as `kept`.
fn is_duplicate(kept: &Candidate, later: &Candidate, rules: &Rules) -> bool {
    // A repeated image ID would otherwise appear twice in the gallery.
    kept.image_id == later.image_id
        || same_content(kept, later)
        || near_identical(kept, later, rules.phash_max_distance)
}

fn same_content(a: &Candidate, b: &Candidate) -> bool {
    match (content_hash(a), content_hash(b)) {
        (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
        _ => false,
    }
}

/// The content hash, if any; a blank one is treated as missing so blanks never match each other.
fn content_hash(c: &Candidate) -> Option<&str> {
    c.content_sha256
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty())
}

fn near_identical(a: &Candidate, b: &Candidate, max_distance: u32) -> bool {
    match (a.perceptual_hash, b.perceptual_hash) {
        (Some(x), Some(y)) => (x ^ y).count_ones() <= max_distance,
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Ranking
// ---------------------------------------------------------------------------------------------

/// "Best" order: quality desc, partner kind rank asc, area desc, image ID asc.
/// Total, so sorting gives the same result whatever the input order.
fn best_first(a: &Candidate, b: &Candidate) -> Ordering {
    quality(b)
        .total_cmp(&quality(a))
        .then_with(|| partner_rank(a).cmp(&partner_rank(b)))
        .then_with(|| area(b).cmp(&area(a)))
        .then_with(|| a.image_id.cmp(&b.image_id))
}

fn quality(c: &Candidate) -> f64 {
    match c.quality {
        // NaN and missing both count as 0. -0.0 too: total_cmp would rank it below 0.0.
        Some(q) if !q.is_nan() && q != 0.0 => q,
        _ => 0.0,
    }
}

/// Lower is better; an image without a known source ranks after every partner kind.
fn partner_rank(c: &Candidate) -> u8 {
    c.best_partner_kind.map_or(u8::MAX, PartnerKind::rank)
}

/// In pixels; 0 when a dimension is unknown. u64 so that no u32 product can overflow.
fn area(c: &Candidate) -> u64 {
    match (c.width, c.height) {
        (Some(w), Some(h)) => u64::from(w) * u64::from(h),
        _ => 0,
    }
}

fn is_landscape(c: &Candidate) -> bool {
    matches!((c.width, c.height), (Some(w), Some(h)) if w > h)
}

// ---------------------------------------------------------------------------------------------
// Main image
// ---------------------------------------------------------------------------------------------

/// `eligible` must be best first.
fn choose_main(eligible: &[&Candidate], main_override: Option<&Override>) -> Option<MainChoice> {
    if let Some(o) = main_override
        && eligible.iter().any(|c| c.image_id == o.image_id)
    {
        return Some(MainChoice {
            image_id: o.image_id,
            origin: o.origin,
        });
    }
    // A landscape picture of the hotel's key spaces makes the best cover, even over a better
    // scored portrait or restaurant shot; any eligible image beats having none.
    eligible
        .iter()
        .find(|c| PREFERRED_MAIN_CATEGORIES.contains(&c.category) && is_landscape(c))
        .or_else(|| eligible.first())
        .map(|c| MainChoice {
            image_id: c.image_id,
            origin: MainImageOrigin::Computed,
        })
}

// ---------------------------------------------------------------------------------------------
// Gallery
// ---------------------------------------------------------------------------------------------

/// Main image, then eligible pins, then the rest by category turns; capped at `size`.
/// `eligible` must be best first.
fn build_gallery(
    eligible: &[&Candidate],
    main: Option<ImageId>,
    pins: &[ImageId],
    size: usize,
) -> Vec<ImageId> {
    let eligible_ids: HashSet<ImageId> = eligible.iter().map(|c| c.image_id).collect();

    // The head: main image and pins, without repeats (a pin equal to the main image included).
    let mut placed: HashSet<ImageId> = HashSet::new();
    let head: Vec<ImageId> = main
        .into_iter()
        .chain(pins.iter().copied().filter(|id| eligible_ids.contains(id)))
        .filter(|id| placed.insert(*id))
        .collect();

    // Images already in the head leave their category before turns start, so each turn takes
    // the best *remaining* image of the category.
    let rest: Vec<&Candidate> = eligible
        .iter()
        .copied()
        .filter(|c| !placed.contains(&c.image_id))
        .collect();

    head.into_iter()
        .chain(take_turns_by_category(&rest))
        .take(size)
        .collect()
}

/// Round robin over [`GALLERY_CATEGORY_ORDER`]: the best of each category in that order, then
/// the second best of each, and so on; categories that run out are skipped.
/// `images` must be best first.
fn take_turns_by_category(images: &[&Candidate]) -> Vec<ImageId> {
    let queues: Vec<Vec<ImageId>> = GALLERY_CATEGORY_ORDER
        .iter()
        .map(|category| {
            images
                .iter()
                .filter(|c| c.category == *category)
                .map(|c| c.image_id)
                .collect()
        })
        .collect();
    let rounds = queues.iter().map(Vec::len).max().unwrap_or(0);
    (0..rounds)
        .flat_map(|round| queues.iter().filter_map(move |q| q.get(round).copied()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Publication: the hotel's published view, and when it changes

/// A hotel as this subgraph publishes it: the outcome of its last curation, stored in its row
/// so that one read returns a consistent view from one commit.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HotelRecord {
    pub id: HotelId,
    /// Grows by one with every change of the main image or the gallery.
    pub version: i64,
    pub main: Option<PublishedMain>,
    /// Active linked images.
    pub image_count: i64,
    /// The curated gallery, main image first.
    pub gallery: Vec<ImageId>,
    /// The hotel's own texts of its linked images (only links that have any), by image ID.
    /// Wherever the hotel shows an image they come before the image's own texts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub texts: Vec<LinkTexts>,
}

impl HotelRecord {
    /// The hotel's texts of `image`, when it gave it any.
    pub fn texts_of(&self, image: ImageId) -> Option<&LinkTexts> {
        self.texts
            .binary_search_by_key(&image, |t| t.image_id)
            .ok()
            .map(|i| &self.texts[i])
    }
}

/// A hotel's caption and alt text of one of its images (written by its hotelier or an admin).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LinkTexts {
    pub image_id: ImageId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alt_text: Option<String>,
}

/// The published main image and who chose it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PublishedMain {
    pub image_id: ImageId,
    pub origin: MainImageOrigin,
    pub chosen_by: Option<String>,
    pub chosen_at: Option<DateTime<Utc>>,
}

/// A stored main-image override and who made it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredOverride {
    pub rule: Override,
    pub chosen_by: String,
    pub chosen_at: DateTime<Utc>,
}

/// What curating a hotel changed in its published view (for events and cache invalidation).
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedChange {
    pub hotel_id: HotelId,
    /// The version after the change.
    pub version: i64,
    pub previous_main: Option<ImageId>,
    pub main: Option<ImageId>,
    pub gallery_changed: bool,
    /// The published gallery after the change.
    pub gallery: Vec<ImageId>,
}

impl PublishedChange {
    pub fn main_changed(&self) -> bool {
        self.previous_main != self.main
    }
}

/// Everything curation reads about one hotel.
#[derive(Debug, Clone, Copy)]
pub struct HotelInputs<'a> {
    pub candidates: &'a [Candidate],
    pub pins: &'a [ImageId],
    pub main_override: Option<&'a StoredOverride>,
    /// The hotel's texts of its links, in any order (published with the view).
    pub texts: &'a [LinkTexts],
    /// The published view before this curation (`None`: the hotel has no row yet).
    pub current: Option<&'a HotelRecord>,
}

/// Curates `hotel` and decides its new published view: `None` when the view stays as it is;
/// otherwise the view to store and what changed. The version grows by one when the main image
/// or the gallery changed; a change of the image count alone is stored without a new version
/// (the cache must still forget it, but it is no curation event).
pub fn republish(
    hotel: HotelId,
    inputs: HotelInputs<'_>,
    rules: &Rules,
) -> Option<(HotelRecord, PublishedChange)> {
    let outcome = curate(
        inputs.candidates,
        inputs.pins,
        inputs.main_override.map(|o| &o.rule),
        rules,
    );
    let main = outcome.main.map(|choice| {
        // Who chose it is known only when the override was kept.
        let by_override = inputs.main_override.filter(|o| {
            choice.origin != MainImageOrigin::Computed && o.rule.image_id == choice.image_id
        });
        PublishedMain {
            image_id: choice.image_id,
            origin: choice.origin,
            chosen_by: by_override.map(|o| o.chosen_by.clone()),
            chosen_at: by_override.map(|o| o.chosen_at),
        }
    });
    let old = inputs.current;
    let old_gallery = old.map_or(&[][..], |h| h.gallery.as_slice());
    let gallery_changed = old_gallery != outcome.gallery.as_slice();
    let old_main = old.and_then(|h| h.main.as_ref());
    let main_changed = old_main != main.as_ref();
    let version = old.map_or(0, |h| h.version) + i64::from(main_changed || gallery_changed);
    let record = HotelRecord {
        id: hotel,
        version,
        main,
        image_count: outcome.active_image_count as i64,
        gallery: outcome.gallery,
        texts: sorted_texts(inputs.texts),
    };
    if old == Some(&record) {
        return None;
    }
    let change = PublishedChange {
        hotel_id: hotel,
        version,
        previous_main: old_main.map(|m| m.image_id),
        main: record.main.as_ref().map(|m| m.image_id),
        gallery_changed,
        gallery: record.gallery.clone(),
    };
    Some((record, change))
}

/// The texts as published: by image ID, links without any text left out.
fn sorted_texts(texts: &[LinkTexts]) -> Vec<LinkTexts> {
    let mut texts: Vec<LinkTexts> = texts
        .iter()
        .filter(|t| t.caption.is_some() || t.alt_text.is_some())
        .cloned()
        .collect();
    texts.sort_by_key(|t| t.image_id);
    texts
}

/// The view [`republish`] gives a hotel that has no row, pins or override yet: for bulk loads
/// that curate in memory (the `seed` command's COPY path).
pub fn first_publication(hotel: HotelId, candidates: &[Candidate], rules: &Rules) -> HotelRecord {
    let inputs = HotelInputs {
        candidates,
        pins: &[],
        main_override: None,
        texts: &[],
        current: None,
    };
    match republish(hotel, inputs, rules) {
        Some((record, _)) => record,
        // Nothing to publish: the empty view at version 0.
        None => HotelRecord {
            id: hotel,
            version: 0,
            main: None,
            image_count: 0,
            gallery: Vec::new(),
            texts: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Category::*;
    use MainImageOrigin::{Admin, Computed, Hotelier};

    fn id(n: i64) -> ImageId {
        ImageId::new(n).expect("test IDs are positive")
    }

    fn ids(ns: &[i64]) -> Vec<ImageId> {
        ns.iter().copied().map(id).collect()
    }

    /// An eligible BEDROOM landscape image (1200x800, quality 0.5, from an OTA, no hashes);
    /// cases change only what they are about.
    fn img(n: i64) -> Candidate {
        Candidate {
            image_id: id(n),
            link_status: Status::Active,
            image_status: Status::Active,
            ready: true,
            width: Some(1200),
            height: Some(800),
            category: Bedroom,
            quality: Some(0.5),
            best_partner_kind: Some(PartnerKind::Ota),
            content_sha256: None,
            perceptual_hash: None,
        }
    }

    impl Candidate {
        fn q(self, quality: f64) -> Self {
            Self {
                quality: Some(quality),
                ..self
            }
        }
        fn no_quality(self) -> Self {
            Self {
                quality: None,
                ..self
            }
        }
        fn cat(self, category: Category) -> Self {
            Self { category, ..self }
        }
        fn dims(self, width: u32, height: u32) -> Self {
            Self {
                width: Some(width),
                height: Some(height),
                ..self
            }
        }
        fn kind(self, kind: Option<PartnerKind>) -> Self {
            Self {
                best_partner_kind: kind,
                ..self
            }
        }
        fn sha(self, hash: &str) -> Self {
            Self {
                content_sha256: Some(hash.to_owned()),
                ..self
            }
        }
        fn phash(self, hash: u64) -> Self {
            Self {
                perceptual_hash: Some(hash),
                ..self
            }
        }
        fn link(self, status: Status) -> Self {
            Self {
                link_status: status,
                ..self
            }
        }
        fn image(self, status: Status) -> Self {
            Self {
                image_status: status,
                ..self
            }
        }
    }

    /// Name, candidates, override, expected main image.
    type MainCase = (
        &'static str,
        Vec<Candidate>,
        Option<Override>,
        Option<MainChoice>,
    );

    /// Name, candidates, pins, expected gallery.
    type TurnCase = (&'static str, Vec<Candidate>, Vec<i64>, Vec<i64>);

    fn gallery_of(candidates: &[Candidate]) -> Vec<ImageId> {
        curate(candidates, &[], None, &Rules::default()).gallery
    }

    fn main_of(candidates: &[Candidate], main_override: Option<&Override>) -> Option<MainChoice> {
        curate(candidates, &[], main_override, &Rules::default()).main
    }

    fn chosen(n: i64, origin: MainImageOrigin) -> Option<MainChoice> {
        Some(MainChoice {
            image_id: id(n),
            origin,
        })
    }

    #[test]
    fn default_rules() {
        let want = Rules {
            min_short_side: 300,
            gallery_size: 50,
            phash_max_distance: 8,
        };
        assert_eq!(Rules::default(), want);
    }

    #[test]
    fn every_category_takes_turns_or_is_excluded() {
        for category in Category::ALL {
            let turns = GALLERY_CATEGORY_ORDER
                .iter()
                .filter(|c| *c == category)
                .count();
            let excluded = EXCLUDED_CATEGORIES.contains(category);
            assert_eq!(turns + usize::from(excluded), 1, "{category}");
        }
    }

    #[test]
    fn eligibility_of_a_single_image() {
        use Status::Inactive;
        let loose = Rules {
            min_short_side: 100,
            ..Rules::default()
        };
        let cases: Vec<(&str, Candidate, Rules, bool)> = vec![
            ("all good", img(1), Rules::default(), true),
            (
                "inactive link",
                img(1).link(Inactive),
                Rules::default(),
                false,
            ),
            (
                "inactive image",
                img(1).image(Inactive),
                Rules::default(),
                false,
            ),
            (
                "both inactive",
                img(1).link(Inactive).image(Inactive),
                Rules::default(),
                false,
            ),
            (
                "not processed yet (PENDING or FAILED)",
                Candidate {
                    ready: false,
                    ..img(1)
                },
                Rules::default(),
                false,
            ),
            (
                "unknown width",
                Candidate {
                    width: None,
                    ..img(1)
                },
                Rules::default(),
                false,
            ),
            (
                "unknown height",
                Candidate {
                    height: None,
                    ..img(1)
                },
                Rules::default(),
                false,
            ),
            (
                "unknown dims",
                Candidate {
                    width: None,
                    height: None,
                    ..img(1)
                },
                Rules::default(),
                false,
            ),
            (
                "height below minimum",
                img(1).dims(1200, 299),
                Rules::default(),
                false,
            ),
            (
                "width below minimum",
                img(1).dims(299, 1200),
                Rules::default(),
                false,
            ),
            (
                "height exactly minimum",
                img(1).dims(1200, 300),
                Rules::default(),
                true,
            ),
            (
                "square exactly minimum",
                img(1).dims(300, 300),
                Rules::default(),
                true,
            ),
            ("minimum from rules", img(1).dims(1200, 150), loose, true),
            (
                "below minimum from rules",
                img(1).dims(1200, 99),
                loose,
                false,
            ),
            ("LOGO", img(1).cat(Logo), Rules::default(), false),
            ("MAP", img(1).cat(Map), Rules::default(), false),
            ("OTHER", img(1).cat(Other), Rules::default(), true),
            ("portrait", img(1).dims(800, 1200), Rules::default(), true),
            (
                "missing quality",
                img(1).no_quality(),
                Rules::default(),
                true,
            ),
            ("no partner", img(1).kind(None), Rules::default(), true),
        ];
        for (name, candidate, rules, eligible) in cases {
            let got = curate(&[candidate], &[], None, &rules);
            let want = if eligible { ids(&[1]) } else { vec![] };
            assert_eq!(got.gallery, want, "{name}");
            assert_eq!(got.main.is_some(), eligible, "{name}");
        }
    }

    #[test]
    fn duplicates_keep_the_best_copy() {
        use PartnerKind::{Hotelier, Ota};
        let cases: Vec<(&str, Vec<Candidate>, Vec<i64>)> = vec![
            (
                "same sha: better quality wins",
                vec![img(1).q(0.4).sha("abc"), img(2).q(0.9).sha("abc")],
                vec![2],
            ),
            (
                "same sha, any letter case",
                vec![img(1).q(0.9).sha("ABCDEF"), img(2).q(0.4).sha("abcdef")],
                vec![1],
            ),
            (
                "same sha, equal quality: partner kind wins",
                vec![
                    img(1).sha("x").kind(Some(Ota)),
                    img(2).sha("x").kind(Some(Hotelier)),
                ],
                vec![2],
            ),
            (
                "different sha: both kept",
                vec![img(1).q(0.9).sha("abc"), img(2).q(0.4).sha("abd")],
                vec![1, 2],
            ),
            (
                "only one has a sha",
                vec![img(1).q(0.9).sha("abc"), img(2).q(0.4)],
                vec![1, 2],
            ),
            (
                "blank shas never match",
                vec![img(1).q(0.9).sha(" "), img(2).q(0.4).sha("")],
                vec![1, 2],
            ),
            (
                "an ineligible better copy does not hide the other",
                vec![
                    img(1).q(0.9).sha("abc").image(Status::Inactive),
                    img(2).q(0.4).sha("abc"),
                ],
                vec![2],
            ),
            (
                "phash distance 0",
                vec![img(1).q(0.4).phash(0xFF00), img(2).q(0.9).phash(0xFF00)],
                vec![2],
            ),
            (
                "phash distance 8 (within)",
                vec![img(1).q(0.9).phash(0), img(2).q(0.4).phash(0xFF)],
                vec![1],
            ),
            (
                "phash distance 9 (beyond)",
                vec![img(1).q(0.9).phash(0), img(2).q(0.4).phash(0x1FF)],
                vec![1, 2],
            ),
            (
                "only one has a phash",
                vec![img(1).q(0.9).phash(0), img(2).q(0.4)],
                vec![1, 2],
            ),
            (
                "greedy: a dropped image does not drop a third",
                vec![
                    img(1).q(0.9).phash(0),
                    img(2).q(0.8).phash(0xFF),
                    img(3).q(0.7).phash(0xFFFF),
                ],
                vec![1, 3],
            ),
            (
                "repeated image ID shown once",
                vec![img(1), img(1)],
                vec![1],
            ),
        ];
        for (name, candidates, want) in cases {
            assert_eq!(gallery_of(&candidates), ids(&want), "{name}");
        }
    }

    #[test]
    fn phash_distance_comes_from_rules() {
        let candidates = [img(1).q(0.9).phash(0), img(2).q(0.4).phash(0b1)];
        let strict = Rules {
            phash_max_distance: 0,
            ..Rules::default()
        };
        assert_eq!(
            curate(&candidates, &[], None, &strict).gallery,
            ids(&[1, 2])
        );
    }

    #[test]
    fn main_image_choice() {
        let ov = |n: i64, origin: MainImageOrigin| {
            Some(Override {
                image_id: id(n),
                origin,
            })
        };
        let two = || vec![img(1).q(0.9), img(2).q(0.1)];
        let cases: Vec<MainCase> = vec![
            (
                "override kept (hotelier)",
                two(),
                ov(2, Hotelier),
                chosen(2, Hotelier),
            ),
            (
                "override kept (admin)",
                two(),
                ov(2, Admin),
                chosen(2, Admin),
            ),
            (
                "override of an inactive image falls back",
                vec![img(1).q(0.9), img(2).q(0.1).image(Status::Inactive)],
                ov(2, Hotelier),
                chosen(1, Computed),
            ),
            (
                "override of a too small image falls back",
                vec![img(1).q(0.1), img(2).q(0.9).dims(200, 200)],
                ov(2, Admin),
                chosen(1, Computed),
            ),
            (
                "override of a LOGO falls back",
                vec![img(1).q(0.1), img(2).q(0.9).cat(Logo)],
                ov(2, Admin),
                chosen(1, Computed),
            ),
            (
                "override of a dropped duplicate falls back",
                vec![img(1).q(0.9).sha("a"), img(2).q(0.1).sha("A")],
                ov(2, Hotelier),
                chosen(1, Computed),
            ),
            (
                "override of an unknown image falls back",
                two(),
                ov(99, Admin),
                chosen(1, Computed),
            ),
            (
                "override with nothing eligible",
                vec![img(1).cat(Map)],
                ov(1, Admin),
                None,
            ),
            ("no override: best", two(), None, chosen(1, Computed)),
            (
                "preferred landscape beats a better portrait",
                vec![img(1).q(0.9).dims(800, 1200), img(2).q(0.5)],
                None,
                chosen(2, Computed),
            ),
            (
                "preferred landscape beats a better square",
                vec![img(1).q(0.9).dims(1000, 1000), img(2).q(0.3)],
                None,
                chosen(2, Computed),
            ),
            (
                "preferred landscape beats a better non-preferred image",
                vec![img(1).q(0.9).cat(Restaurant), img(2).q(0.5).cat(Pool)],
                None,
                chosen(2, Computed),
            ),
            (
                "best preferred landscape among several",
                vec![
                    img(1).q(0.6).cat(Lobby),
                    img(2).q(0.7).cat(View),
                    img(3).q(0.9).cat(Bar),
                ],
                None,
                chosen(2, Computed),
            ),
            (
                "no preferred landscape: best eligible",
                vec![
                    img(1).q(0.5).cat(Bar),
                    img(2).q(0.9).dims(800, 1200),
                    img(3).q(0.7).cat(Bathroom),
                ],
                None,
                chosen(2, Computed),
            ),
            (
                "no eligible image",
                vec![img(1).link(Status::Inactive), img(2).cat(Logo)],
                None,
                None,
            ),
            ("no candidates", vec![], None, None),
        ];
        for (name, candidates, main_override, want) in cases {
            assert_eq!(main_of(&candidates, main_override.as_ref()), want, "{name}");
        }
    }

    #[test]
    fn preferred_main_categories() {
        let cases = [
            (Exterior, true),
            (Bedroom, true),
            (Pool, true),
            (View, true),
            (Lobby, true),
            (Bathroom, false),
            (Restaurant, false),
            (Beach, false),
            (Other, false),
        ];
        for (category, preferred) in cases {
            // Image 1 is better; image 2 is a landscape of the category under test.
            let candidates = [img(1).q(0.9).dims(800, 1200), img(2).q(0.1).cat(category)];
            let want = if preferred { 2 } else { 1 };
            assert_eq!(
                main_of(&candidates, None),
                chosen(want, Computed),
                "{category}"
            );
        }
    }

    #[test]
    fn no_eligible_image_gives_nothing() {
        let candidates = [
            img(1).cat(Logo),
            img(2).image(Status::Inactive),
            img(3).dims(10, 10),
        ];
        let got = curate(&candidates, &ids(&[1, 2, 3]), None, &Rules::default());
        assert_eq!(
            got,
            Curation {
                main: None,
                gallery: vec![],
                active_image_count: 2
            }
        );
    }

    #[test]
    fn best_first_tie_breaks() {
        use PartnerKind::*;
        // All are BEDROOM landscapes, so the main image is the best and the gallery is best first.
        let cases: Vec<(&str, Vec<Candidate>, Vec<i64>)> = vec![
            (
                "quality desc",
                vec![img(1).q(0.2), img(2).q(0.8), img(3).q(0.5)],
                vec![2, 3, 1],
            ),
            (
                "quality beats partner kind",
                vec![
                    img(1).q(0.5).kind(Some(Hotelier)),
                    img(2).q(0.6).kind(Some(ContentProvider)),
                ],
                vec![2, 1],
            ),
            (
                "partner kind rank asc, no partner last",
                vec![
                    img(1).kind(Some(ContentProvider)),
                    img(2).kind(Some(Ota)),
                    img(3).kind(None),
                    img(4).kind(Some(HotelChain)),
                    img(5).kind(Some(Hotelier)),
                ],
                vec![5, 4, 2, 1, 3],
            ),
            (
                "partner kind beats area",
                vec![
                    img(1).dims(4000, 3000).kind(Some(Ota)),
                    img(2).kind(Some(Hotelier)),
                ],
                vec![2, 1],
            ),
            (
                "area desc",
                vec![img(1).dims(1200, 800), img(2).dims(1600, 900)],
                vec![2, 1],
            ),
            (
                "area beats ID",
                vec![img(2).dims(1600, 900), img(1)],
                vec![2, 1],
            ),
            ("ID asc", vec![img(3), img(1), img(2)], vec![1, 2, 3]),
            (
                "missing quality ties with 0",
                vec![img(2).q(0.0), img(1).no_quality()],
                vec![1, 2],
            ),
            (
                "missing quality below positive",
                vec![img(1).no_quality(), img(2).q(0.1)],
                vec![2, 1],
            ),
            (
                "missing quality above negative",
                vec![img(1).q(-0.1), img(2).no_quality()],
                vec![2, 1],
            ),
            (
                "NaN quality ties with 0",
                vec![img(2).q(0.0), img(1).q(f64::NAN)],
                vec![1, 2],
            ),
            (
                "NaN quality below positive",
                vec![img(1).q(f64::NAN), img(2).q(0.1)],
                vec![2, 1],
            ),
            (
                "-0 quality ties with 0",
                vec![img(2).q(0.0), img(1).q(-0.0)],
                vec![1, 2],
            ),
        ];
        for (name, candidates, want) in cases {
            assert_eq!(gallery_of(&candidates), ids(&want), "{name}");
        }
    }

    #[test]
    fn pins_follow_the_main_image() {
        // 1 is the main image; 2..=4 rank in ID order; 5 is inactive.
        let candidates = [
            img(1).q(0.9),
            img(2).q(0.8),
            img(3).q(0.7),
            img(4).q(0.6),
            img(5).q(0.95).image(Status::Inactive),
        ];
        let cases: Vec<(&str, Vec<i64>, Vec<i64>)> = vec![
            ("no pins", vec![], vec![1, 2, 3, 4]),
            ("pins in their order", vec![4, 3], vec![1, 4, 3, 2]),
            ("ineligible pin skipped", vec![5, 4], vec![1, 4, 2, 3]),
            ("pin equal to main skipped", vec![1, 4], vec![1, 4, 2, 3]),
            ("repeated pin once", vec![4, 3, 4], vec![1, 4, 3, 2]),
            ("unknown pin ignored", vec![99, 3], vec![1, 3, 2, 4]),
        ];
        for (name, pins, want) in cases {
            let got = curate(&candidates, &ids(&pins), None, &Rules::default());
            assert_eq!(got.gallery, ids(&want), "{name}");
        }
    }

    #[test]
    fn pins_follow_an_overridden_main_image() {
        let candidates = [img(1).q(0.9), img(2).q(0.8), img(3).q(0.7)];
        let ov = Override {
            image_id: id(3),
            origin: Admin,
        };
        let got = curate(&candidates, &ids(&[3, 2]), Some(&ov), &Rules::default());
        assert_eq!(got.main, chosen(3, Admin));
        assert_eq!(got.gallery, ids(&[3, 2, 1]));
    }

    #[test]
    fn categories_take_turns() {
        let cases: Vec<TurnCase> = vec![
            (
                "category order after the main image",
                vec![
                    img(1).cat(Other),
                    img(2).cat(Food),
                    img(3).cat(Amenity),
                    img(4).cat(Meeting),
                    img(5).cat(Beach),
                    img(6).cat(View),
                    img(7).cat(Fitness),
                    img(8).cat(Spa),
                    img(9).cat(Bar),
                    img(10).cat(Restaurant),
                    img(11).cat(Lobby),
                    img(12).cat(Pool),
                    img(13).cat(Bathroom),
                    img(14).cat(Bedroom),
                    img(15).cat(Exterior).q(0.9),
                ],
                vec![],
                vec![15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1],
            ),
            (
                "rounds: best remaining of each category, best first within",
                vec![
                    img(1).cat(Bedroom).q(0.9),
                    img(2).cat(Bedroom).q(0.7),
                    img(3).cat(Bedroom).q(0.8),
                    img(4).cat(Bathroom).q(0.3),
                    img(5).cat(Bathroom).q(0.4),
                    img(6).cat(Pool).q(0.2),
                    img(7).cat(Other).q(0.6),
                ],
                vec![],
                // main 1; round 1: 3 (best remaining bedroom), 5, 6, 7; round 2: 2, 4.
                vec![1, 3, 5, 6, 7, 2, 4],
            ),
            (
                "pinned images leave their category's turns",
                vec![
                    img(1).cat(Exterior).q(0.9),
                    img(2).cat(Bedroom).q(0.8),
                    img(3).cat(Bedroom).q(0.7),
                    img(4).cat(Bathroom).q(0.5),
                ],
                vec![2],
                vec![1, 2, 3, 4],
            ),
        ];
        for (name, candidates, pins, want) in cases {
            let got = curate(&candidates, &ids(&pins), None, &Rules::default());
            assert_eq!(got.gallery, ids(&want), "{name}");
        }
    }

    #[test]
    fn gallery_size_cap() {
        let candidates = [img(1).q(0.9), img(2).q(0.8), img(3).q(0.7), img(4).q(0.6)];
        let cases: Vec<(&str, usize, Vec<i64>, Vec<i64>)> = vec![
            ("larger than needed", 10, vec![], vec![1, 2, 3, 4]),
            ("exactly needed", 4, vec![], vec![1, 2, 3, 4]),
            ("cuts the rest", 2, vec![], vec![1, 2]),
            ("main and pins count", 2, vec![4, 3], vec![1, 4]),
            ("one: main only", 1, vec![4], vec![1]),
            ("zero: empty", 0, vec![4], vec![]),
        ];
        for (name, gallery_size, pins, want) in cases {
            let rules = Rules {
                gallery_size,
                ..Rules::default()
            };
            let got = curate(&candidates, &ids(&pins), None, &rules);
            assert_eq!(got.gallery, ids(&want), "{name}");
            // The main image is chosen whatever the cap.
            assert_eq!(got.main, chosen(1, Computed), "{name}");
        }
    }

    #[test]
    fn default_gallery_size_is_fifty() {
        let candidates: Vec<Candidate> = (1..=60).map(img).collect();
        let gallery = gallery_of(&candidates);
        assert_eq!(gallery, ids(&(1..=50).collect::<Vec<_>>()));
    }

    #[test]
    fn active_image_count() {
        use Status::Inactive;
        let cases: Vec<(&str, Vec<Candidate>, usize)> = vec![
            ("none", vec![], 0),
            ("eligible", vec![img(1), img(2)], 2),
            (
                "active but ineligible still counts",
                vec![
                    img(1).cat(Logo),
                    img(2).dims(10, 10),
                    Candidate {
                        width: None,
                        ..img(3)
                    },
                    img(4).sha("a"),
                    img(5).sha("a"),
                    Candidate {
                        ready: false,
                        ..img(6)
                    },
                ],
                6,
            ),
            (
                "inactive link or image does not count",
                vec![
                    img(1),
                    img(2).link(Inactive),
                    img(3).image(Inactive),
                    img(4).link(Inactive).image(Inactive),
                ],
                1,
            ),
        ];
        for (name, candidates, want) in cases {
            let got = curate(&candidates, &[], None, &Rules::default());
            assert_eq!(got.active_image_count, want, "{name}");
        }
    }

    #[test]
    fn input_order_does_not_matter() {
        use PartnerKind::*;
        let candidates = vec![
            img(1).q(0.8).cat(Bedroom).sha("AA").phash(0x00FF),
            img(2).q(0.8).cat(Bedroom).sha("aa"),
            img(3).q(0.8).cat(Bathroom).kind(Some(Hotelier)),
            img(4).q(0.8).cat(Bathroom).kind(Some(Hotelier)),
            img(5).q(0.6).cat(Pool).phash(0x00FE),
            img(6).q(0.6).cat(Pool).dims(800, 1200),
            img(7).no_quality().cat(Exterior),
            img(8).q(f64::NAN).cat(Exterior).kind(None),
            img(9).q(0.99).cat(Restaurant),
            img(10).q(0.7).cat(Logo),
            img(11).q(0.7).cat(Spa).image(Status::Inactive),
            img(12).q(0.7).cat(Spa).dims(1600, 1200),
            img(13).q(0.7).cat(Spa).kind(Some(ContentProvider)),
        ];
        let pins = ids(&[13, 11, 6]);
        let rules = Rules {
            gallery_size: 8,
            ..Rules::default()
        };
        let run = |input: &[Candidate]| curate(input, &pins, None, &rules);
        let want = run(&candidates);
        // Eligible best first: 9, 3, 4, 1, 12, 13, 6, 7, 8 (2 and 5 duplicate 1).
        // Main: 1, the best preferred landscape; pins 13 and 6; then turns: BATHROOM 3,
        // EXTERIOR 7, RESTAURANT 9, SPA 12, BATHROOM 4, (EXTERIOR 8 cut by the cap).
        assert_eq!(want.main, chosen(1, Computed));
        assert_eq!(want.gallery, ids(&[1, 13, 6, 3, 7, 9, 12, 4]));

        for shift in 0..candidates.len() {
            let mut rotated = candidates.clone();
            rotated.rotate_left(shift);
            assert_eq!(run(&rotated), want, "rotated by {shift}");
            rotated.reverse();
            assert_eq!(run(&rotated), want, "rotated by {shift}, reversed");
        }
    }

    fn hotel() -> HotelId {
        HotelId::new(7).expect("positive")
    }

    fn inputs<'a>(
        candidates: &'a [Candidate],
        current: Option<&'a HotelRecord>,
    ) -> HotelInputs<'a> {
        HotelInputs {
            candidates,
            pins: &[],
            main_override: None,
            texts: &[],
            current,
        }
    }

    fn texts(image: i64, caption: Option<&str>) -> LinkTexts {
        LinkTexts {
            image_id: id(image),
            caption: caption.map(str::to_owned),
            alt_text: None,
        }
    }

    #[test]
    fn a_change_of_a_hotels_texts_is_published_without_a_new_version() {
        let candidates = [img(1), img(2)];
        let (record, _) =
            republish(hotel(), inputs(&candidates, None), &Rules::default()).expect("changed");
        let given = [texts(2, Some("Our terrace")), texts(1, None)];
        let with_texts = HotelInputs {
            texts: &given,
            ..inputs(&candidates, Some(&record))
        };
        let (next, change) =
            republish(hotel(), with_texts, &Rules::default()).expect("texts changed");
        assert_eq!(next.version, record.version);
        assert!(!change.main_changed() && !change.gallery_changed);
        // Only links with a text are kept, by image ID.
        assert_eq!(next.texts, [texts(2, Some("Our terrace"))]);
        assert_eq!(
            next.texts_of(id(2)).and_then(|t| t.caption.as_deref()),
            Some("Our terrace")
        );
        assert_eq!(next.texts_of(id(1)), None);
        let again = HotelInputs {
            texts: &given,
            ..inputs(&candidates, Some(&next))
        };
        assert_eq!(republish(hotel(), again, &Rules::default()), None);
    }

    #[test]
    fn a_first_publication_is_version_one_and_the_same_inputs_change_nothing() {
        let candidates = [img(1).q(0.9), img(2)];
        let (record, change) =
            republish(hotel(), inputs(&candidates, None), &Rules::default()).expect("changed");
        assert_eq!(record.version, 1);
        assert_eq!(record.gallery, ids(&[1, 2]));
        assert_eq!((change.previous_main, change.main), (None, Some(id(1))));
        assert!(change.main_changed() && change.gallery_changed);
        assert_eq!(
            first_publication(hotel(), &candidates, &Rules::default()),
            record
        );
        assert_eq!(
            republish(
                hotel(),
                inputs(&candidates, Some(&record)),
                &Rules::default()
            ),
            None
        );
    }

    #[test]
    fn only_a_new_image_count_is_stored_without_a_new_version() {
        let before = [img(1)];
        let (record, _) =
            republish(hotel(), inputs(&before, None), &Rules::default()).expect("changed");
        // An active image too small for the gallery: counted, never shown.
        let after = [img(1), img(2).dims(100, 100)];
        let (next, change) =
            republish(hotel(), inputs(&after, Some(&record)), &Rules::default()).expect("count");
        assert_eq!((next.version, next.image_count), (record.version, 2));
        assert!(!change.main_changed() && !change.gallery_changed);
    }

    #[test]
    fn who_chose_the_main_image_is_published_only_while_the_override_holds() {
        let chosen_at = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).expect("valid time");
        let stored = StoredOverride {
            rule: Override {
                image_id: id(2),
                origin: Hotelier,
            },
            chosen_by: "hotelier-1".to_owned(),
            chosen_at,
        };
        let kept = [img(1).q(0.9), img(2)];
        let with_override = HotelInputs {
            main_override: Some(&stored),
            ..inputs(&kept, None)
        };
        let (record, _) = republish(hotel(), with_override, &Rules::default()).expect("changed");
        let main = record.main.expect("a main image");
        assert_eq!((main.image_id, main.origin), (id(2), Hotelier));
        assert_eq!(main.chosen_by.as_deref(), Some("hotelier-1"));
        assert_eq!(main.chosen_at, Some(chosen_at));

        let ineligible = [img(1).q(0.9), img(2).cat(Logo)];
        let fallen_back = HotelInputs {
            main_override: Some(&stored),
            ..inputs(&ineligible, None)
        };
        let (record, _) = republish(hotel(), fallen_back, &Rules::default()).expect("changed");
        let main = record.main.expect("a main image");
        assert_eq!((main.image_id, main.origin), (id(1), Computed));
        assert_eq!((main.chosen_by, main.chosen_at), (None, None));
    }
}
