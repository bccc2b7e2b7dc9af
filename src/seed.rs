//! Generated catalogs: the demo data of the embedded default and `seed --hotels N` for any
//! size. Hotel IDs are 1..=N. Generation is deterministic (the same plan gives the same
//! catalog), chunked by hotel, each chunk one transaction that also publishes the chunk's
//! curation through the real curation code.
//!
//! What the catalog holds, so that every read path has something to show: four partners (one
//! of each kind); per hotel a spread of categories, sizes (some too small, some portrait) and
//! qualities; every 25th hotel shares an image with the hotel before it; every 7th image has a
//! second partner as a source (delivered under another spelling of its URL); every 40th image
//! has a worse copy with the same bytes (same content hash) that curation leaves out; every 5th
//! image has a legacy ID `L-{image id}`.
//!
//! With [`Plan::pictures`] (the embedded default's demo), every distinct image gets a picture
//! of its own ([`pictures`]), stored in the object store under its content-addressed key, and
//! its row says what measuring the picture found (width, height, SHA-256, perceptual hash,
//! measured quality); a same-bytes copy shares its original's picture. Without (tests, `seed
//! --hotels N` for benchmarks), the rows declare sizes and made-up hashes, and nothing is
//! stored.

mod pictures;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::time::Instant;

use chrono::{DateTime, Utc};
use entity::{
    delivery, hotel, hotel_image, image, image_source, image_tag, legacy_image_id, partner,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sea_orm::ActiveValue::Set;
use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait};
use tokio::task::JoinSet;

use crate::domain::catalog::{Category, HotelId, ImageId, PartnerKind, Status, Tag, TagOrigin};
use crate::domain::curation::first_publication;
use crate::domain::curation::{Candidate, Rules};
use crate::domain::media::partner_storage_key;
use crate::domain::url::{Rewrites, UrlKey, canonicalize};
use crate::service::write::curate;
use crate::store::Store;
use crate::store::bulk::{insert_rows, sync_sequences};
use crate::store::curation::hotel_row;
use crate::store::objects::Objects;
use crate::store::rows::{self as row, NewImage};

/// The four demo partners: (id, name, kind).
pub const PARTNERS: [(i64, &str, PartnerKind); 4] = [
    (1, "OTA One", PartnerKind::Ota),
    (2, "Chain Two", PartnerKind::HotelChain),
    (3, "Content Three", PartnerKind::ContentProvider),
    (4, "Hoteliers", PartnerKind::Hotelier),
];

/// What to generate.
#[derive(Debug, Clone)]
pub struct Plan {
    pub hotels: u64,
    /// Images per hotel, inclusive range (before shared images and duplicate copies).
    pub images_per_hotel: (u32, u32),
    /// Hotels per transaction.
    pub chunk: u64,
    pub random_seed: u64,
    /// On PostgreSQL, load with `COPY` and curate in memory (the default); `false` takes the
    /// multi-row inserts and `publish` of the other engines (to compare the two).
    pub copy: bool,
    /// Where the images' pictures are stored; `None`: no pictures (see the module doc).
    pub pictures: Option<Objects>,
}

impl Plan {
    /// The demo catalog of the embedded default: 500 hotels with 10 to 30 images each, with
    /// their pictures stored in `pictures` (if given).
    pub fn demo(pictures: Option<Objects>) -> Self {
        Self {
            hotels: 500,
            images_per_hotel: (10, 30),
            chunk: 100,
            random_seed: 7,
            copy: true,
            pictures,
        }
    }

    pub fn uniform(hotels: u64, images_per_hotel: u32, chunk: u64) -> Self {
        Self {
            hotels,
            images_per_hotel: (images_per_hotel, images_per_hotel),
            chunk: chunk.max(1),
            random_seed: 7,
            copy: true,
            pictures: None,
        }
    }

    /// Image IDs of hotel `h` are `(h-1) * stride + 1 ..`: unique without coordination.
    fn id_stride(&self) -> i64 {
        // Room for the images, their duplicate copies and one shared image.
        i64::from(self.images_per_hotel.1) * 2 + 2
    }
}

/// Rows written and how fast.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub hotels: u64,
    pub rows: u64,
    /// Pictures drawn and stored.
    pub pictures: u64,
    pub seconds: f64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seeded {} hotels, {} rows", self.hotels, self.rows)?;
        if self.pictures > 0 {
            write!(f, ", {} pictures", self.pictures)?;
        }
        write!(
            f,
            " in {:.1}s ({:.0} rows/s)",
            self.seconds,
            self.rows as f64 / self.seconds.max(1e-9)
        )
    }
}

/// Seeds the demo catalog (embedded default, empty database), with its pictures stored in
/// `pictures` (if given).
pub async fn demo(
    db: &DatabaseConnection,
    rules: &Rules,
    pictures: Option<Objects>,
) -> anyhow::Result<Report> {
    let plan = Plan::demo(pictures);
    let drawing = if plan.pictures.is_some() {
        " (drawing and measuring its pictures)"
    } else {
        ""
    };
    let mut done = 0;
    let report = generate(db, rules, &plan, |hotels| {
        done += hotels;
        tracing::info!(
            "seeding the demo catalog{drawing}: {done} of {} hotels",
            plan.hotels
        );
    })
    .await?;
    tracing::info!(%report, "demo catalog seeded");
    Ok(report)
}

/// Generates `plan` into an empty catalog, calling `progress` with the number of hotels done
/// after each chunk.
pub async fn generate(
    db: &DatabaseConnection,
    rules: &Rules,
    plan: &Plan,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let db = db.clone();
    insert_partners(&db).await?;
    // SQLite has one writer: parallel transactions would only wait for each other.
    let parallelism = if db.get_database_backend() == sea_orm::DbBackend::Sqlite {
        1
    } else {
        4
    };
    let mut in_flight = JoinSet::new();
    let (mut rows, mut pictures) = (0u64, 0u64);
    let mut next = 1u64;
    while next <= plan.hotels || !in_flight.is_empty() {
        while next <= plan.hotels && in_flight.len() < parallelism {
            let end = (next + plan.chunk - 1).min(plan.hotels);
            let (db, plan, rules) = (db.clone(), plan.clone(), *rules);
            in_flight.spawn(async move { seed_chunk(&db, &plan, &rules, next..=end).await });
            next = end + 1;
        }
        if let Some(done) = in_flight.join_next().await {
            let done = done??;
            rows += done.rows;
            pictures += done.pictures;
            progress(done.hotels);
        }
    }
    sync_sequences(&db).await?;
    Ok(Report {
        hotels: plan.hotels,
        rows,
        pictures,
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn insert_partners(db: &DatabaseConnection) -> anyhow::Result<()> {
    if partner::Entity::find().count(db).await? > 0 {
        return Ok(());
    }
    let now = Utc::now();
    let rows = PARTNERS
        .iter()
        .map(|&(id, name, kind)| partner::ActiveModel {
            id: Set(id),
            name: Set(name.to_owned()),
            kind: Set(kind.as_str().to_owned()),
            url_rewrites: Set("[]".to_owned()),
            created_at: Set(now),
            updated_at: Set(now),
        });
    partner::Entity::insert_many(rows)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Rows of one chunk, and the pictures they show, gathered before writing.
#[derive(Default)]
struct Rows {
    images: Vec<image::ActiveModel>,
    links: Vec<hotel_image::ActiveModel>,
    sources: Vec<image_source::ActiveModel>,
    deliveries: Vec<delivery::ActiveModel>,
    tags: Vec<image_tag::ActiveModel>,
    legacy: Vec<legacy_image_id::ActiveModel>,
    /// Storage keys and bytes of the pictures drawn (each once).
    objects: Vec<(String, Vec<u8>)>,
}

impl Rows {
    fn count(&self) -> u64 {
        (self.images.len()
            + self.links.len()
            + self.sources.len()
            + self.deliveries.len()
            + self.tags.len()
            + self.legacy.len()) as u64
    }

    /// Appends `other`'s rows after these.
    fn append(&mut self, mut other: Rows) {
        self.images.append(&mut other.images);
        self.links.append(&mut other.links);
        self.sources.append(&mut other.sources);
        self.deliveries.append(&mut other.deliveries);
        self.tags.append(&mut other.tags);
        self.legacy.append(&mut other.legacy);
        self.objects.append(&mut other.objects);
    }
}

/// What one chunk wrote.
struct Chunk {
    hotels: u64,
    rows: u64,
    pictures: u64,
}

/// Categories drawn for generated images, roughly as often as they occur in real catalogs.
const CATEGORY_MIX: [Category; 20] = [
    Category::Bedroom,
    Category::Bedroom,
    Category::Bedroom,
    Category::Bathroom,
    Category::Bathroom,
    Category::Exterior,
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
    Category::Logo,
    Category::Map,
];

async fn seed_chunk(
    db: &DatabaseConnection,
    plan: &Plan,
    rules: &Rules,
    hotels: std::ops::RangeInclusive<u64>,
) -> anyhow::Result<Chunk> {
    let now = Utc::now();
    let hotels: Vec<i64> = hotels.map(i64::try_from).collect::<Result<_, _>>()?;
    let hotel_ids = hotels
        .iter()
        .map(|hotel| HotelId::new(*hotel).ok_or_else(|| anyhow::anyhow!("hotel IDs start at 1")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut rows = generate_hotels(plan, hotels, now).await?;
    let chunk = Chunk {
        hotels: hotel_ids.len() as u64,
        rows: rows.count(),
        pictures: rows.objects.len() as u64,
    };
    // The bytes first, as uploads and processing do: a failure leaves bytes nobody shows,
    // never a row without its bytes.
    if let Some(objects) = &plan.pictures {
        for (key, bytes) in std::mem::take(&mut rows.objects) {
            objects.put(&key, bytes).await?;
        }
    }
    if plan.copy && db.get_database_backend() == sea_orm::DbBackend::Postgres {
        copy_chunk(db, plan, rules, &hotel_ids, rows, now).await?;
        return Ok(chunk);
    }
    let txn = Store::new(db.clone()).begin_write().await?;
    insert_rows(&txn, rows.images).await?;
    insert_rows(&txn, rows.links).await?;
    insert_rows(&txn, rows.sources).await?;
    insert_rows(&txn, rows.deliveries).await?;
    insert_rows(&txn, rows.tags).await?;
    insert_rows(&txn, rows.legacy).await?;
    curate(&txn, rules, &hotel_ids, now).await?;
    txn.commit().await?;
    Ok(chunk)
}

/// The rows of `hotels`, generated on blocking threads: with pictures, on every core, each
/// thread taking a run of the hotels (drawing and measuring the pictures is most of the work
/// of seeding then). The rows come out in hotel order either way.
async fn generate_hotels(
    plan: &Plan,
    hotels: Vec<i64>,
    now: DateTime<Utc>,
) -> anyhow::Result<Rows> {
    let threads = match plan.pictures {
        Some(_) => std::thread::available_parallelism().map_or(1, usize::from),
        None => 1,
    };
    let plan = plan.clone();
    tokio::task::spawn_blocking(move || {
        let per_thread = hotels.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let runs: Vec<_> = hotels
                .chunks(per_thread)
                .map(|run| {
                    let plan = &plan;
                    scope.spawn(move || {
                        let mut rows = Rows::default();
                        for hotel in run {
                            generate_hotel(plan, *hotel, now, &mut rows)?;
                        }
                        Ok::<_, anyhow::Error>(rows)
                    })
                })
                .collect();
            let mut rows = Rows::default();
            for run in runs {
                let run = run
                    .join()
                    .map_err(|_| anyhow::anyhow!("a seeding thread panicked"))??;
                rows.append(run);
            }
            Ok(rows)
        })
    })
    .await?
}

/// PostgreSQL: the chunk's rows by `COPY`, with its curation computed in memory (the same
/// rules and the same rows as `publish` would read back), in one transaction. About three
/// times as fast as the multi-row inserts, which matters at a million hotels.
async fn copy_chunk(
    db: &DatabaseConnection,
    plan: &Plan,
    rules: &Rules,
    hotel_ids: &[HotelId],
    rows: Rows,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    // Regenerating a hotel outside the chunk (see `candidates`) may draw its pictures.
    let (rows, candidates) = {
        let plan = plan.clone();
        tokio::task::spawn_blocking(move || {
            let candidates = candidates(&plan, &rows, now);
            (rows, candidates)
        })
        .await?
    };
    let hotels: Vec<hotel::ActiveModel> = candidates?
        .into_iter()
        .filter(|(hotel, _)| hotel_ids.contains(hotel))
        .map(|(hotel, candidates)| hotel_row(&first_publication(hotel, &candidates, rules), now))
        .collect();
    let txn = Store::new(db.clone()).begin_write().await?;
    insert_rows(&txn, rows.images).await?;
    insert_rows(&txn, rows.links).await?;
    insert_rows(&txn, rows.sources).await?;
    insert_rows(&txn, rows.deliveries).await?;
    insert_rows(&txn, rows.tags).await?;
    insert_rows(&txn, rows.legacy).await?;
    insert_rows(&txn, hotels).await?;
    txn.commit().await?;
    Ok(())
}

/// What curation needs to know of each hotel's linked images, from the generated rows (every
/// link, image and source is active). A link to an image of a hotel outside the chunk (shared
/// inventory) regenerates that hotel's rows: generation is deterministic.
fn candidates(
    plan: &Plan,
    rows: &Rows,
    now: DateTime<Utc>,
) -> anyhow::Result<BTreeMap<HotelId, Vec<Candidate>>> {
    let mut best_kind: HashMap<i64, PartnerKind> = HashMap::new();
    let mut images: HashMap<i64, &image::ActiveModel> = HashMap::new();
    let generated: HashSet<i64> = rows
        .images
        .iter()
        .map(|image| value(&image.id).copied())
        .collect::<anyhow::Result<_>>()?;
    let mut owners = BTreeSet::new();
    for link in &rows.links {
        let image = *value(&link.image_id)?;
        if !generated.contains(&image) {
            // Image IDs of hotel `h` start at `(h-1) * stride + 1`.
            owners.insert((image - 1) / plan.id_stride() + 1);
        }
    }
    let mut elsewhere = Rows::default();
    for owner in owners {
        generate_hotel(plan, owner, now, &mut elsewhere)?;
    }
    for image in rows.images.iter().chain(&elsewhere.images) {
        images.insert(*value(&image.id)?, image);
    }
    for source in rows.sources.iter().chain(&elsewhere.sources) {
        let partner = *value(&source.partner_id)?;
        let kind = PARTNERS
            .iter()
            .find(|(id, _, _)| *id == partner)
            .map(|(_, _, kind)| *kind)
            .ok_or_else(|| anyhow::anyhow!("unknown partner {partner}"))?;
        best_kind
            .entry(*value(&source.image_id)?)
            .and_modify(|best| {
                if kind.rank() < best.rank() {
                    *best = kind;
                }
            })
            .or_insert(kind);
    }
    let mut out: BTreeMap<HotelId, Vec<Candidate>> = BTreeMap::new();
    for link in &rows.links {
        let hotel = HotelId::new(*value(&link.hotel_id)?)
            .ok_or_else(|| anyhow::anyhow!("hotel IDs start at 1"))?;
        let id = *value(&link.image_id)?;
        let image = images
            .get(&id)
            .ok_or_else(|| anyhow::anyhow!("link to image {id}, which was not generated"))?;
        out.entry(hotel).or_default().push(Candidate {
            image_id: ImageId::new(id).ok_or_else(|| anyhow::anyhow!("image IDs start at 1"))?,
            link_status: Status::Active,
            image_status: Status::Active,
            ready: true,
            width: value(&image.width)?.and_then(|w| u32::try_from(w).ok()),
            height: value(&image.height)?.and_then(|h| u32::try_from(h).ok()),
            category: value(&image.category)?.parse()?,
            quality: *value(&image.quality_score)?,
            best_partner_kind: best_kind.get(&id).copied(),
            content_sha256: value(&image.content_sha256)?.clone(),
            // Stored as the signed reading of the 64 bits (the column is a BIGINT).
            perceptual_hash: value(&image.perceptual_hash)?.map(|hash| hash as u64),
        });
    }
    Ok(out)
}

/// A column the generator sets.
fn value<V: Into<sea_orm::Value>>(column: &sea_orm::ActiveValue<V>) -> anyhow::Result<&V> {
    column
        .try_as_ref()
        .ok_or_else(|| anyhow::anyhow!("a generated column is not set"))
}

fn generate_hotel(
    plan: &Plan,
    hotel: i64,
    now: DateTime<Utc>,
    rows: &mut Rows,
) -> anyhow::Result<()> {
    let mut rng = SmallRng::seed_from_u64(
        plan.random_seed ^ (hotel as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    let (low, high) = plan.images_per_hotel;
    let count = rng.random_range(low..=high.max(low));
    let first_id = (hotel - 1) * plan.id_stride() + 1;
    let mut next_id = first_id;
    for n in 0..count {
        let id = next_id;
        next_id += 1;
        let partner = PARTNERS[rng.random_range(0..3)].0;
        let url = format!("https://img.partner{partner}.example/h{hotel}/{n}.jpg");
        let category = CATEGORY_MIX[rng.random_range(0..CATEGORY_MIX.len())];
        let quality = (rng.random_range(30..96) as f64) / 100.0;
        let size = match rng.random_range(0..10) {
            0 => TOO_SMALL,
            1 | 2 => PORTRAIT,
            _ => LANDSCAPE,
        };
        let look = look(plan, id, size, rows)?;
        push_image(
            rows, hotel, id, partner, &url, quality, category, &look, now,
        )?;
        if id % 7 == 0 {
            // Another partner delivers the same picture under another spelling of its URL.
            let other = if partner == 1 { 2 } else { 1 };
            let spelling = url.replacen("https://img.", "HTTPS://IMG.", 1) + "?utm_source=feed";
            rows.sources.push(source(id, other, &spelling, now));
            rows.deliveries.push(row::delivery(hotel, id, other, now));
        }
        if id % 40 == 0 {
            // A worse copy of the same bytes: stored, linked, but never in the gallery.
            let copy = next_id;
            next_id += 1;
            let copy_url = format!("https://img.partner{partner}.example/h{hotel}/{n}-copy.jpg");
            push_image(
                rows,
                hotel,
                copy,
                partner,
                &copy_url,
                quality / 2.0,
                category,
                &look,
                now,
            )?;
        }
    }
    if hotel > 1 && hotel % 25 == 0 {
        // Shared inventory: the previous hotel's first image is shown here too.
        let shared = (hotel - 2) * plan.id_stride() + 1;
        rows.links.push(row::link(hotel, shared, now));
        rows.deliveries.push(row::delivery(hotel, shared, 3, now));
    }
    Ok(())
}

/// Sizes of generated images: moderate, so that drawing and measuring the demo's pictures
/// keeps the first start short; one in ten is below curation's minimum side (300 px), two in
/// ten are portraits.
const LANDSCAPE: (u32, u32) = (516, 344);
const PORTRAIT: (u32, u32) = (344, 516);
const TOO_SMALL: (u32, u32) = (200, 150);

/// What the rows of an image (and of its same-bytes copy) say about its bytes.
struct Look {
    /// `None`: the key named after the image's URL, where nothing is stored.
    storage_key: Option<String>,
    width: u32,
    height: u32,
    sha256: String,
    perceptual_hash: Option<u64>,
    measured_quality: Option<f64>,
}

/// The look of image `id` of `size`: with pictures, what measuring its picture found (the
/// picture goes to `rows`, to be stored); without, the size as declared and a made-up hash.
fn look(
    plan: &Plan,
    id: i64,
    (width, height): (u32, u32),
    rows: &mut Rows,
) -> anyhow::Result<Look> {
    if plan.pictures.is_none() {
        return Ok(Look {
            storage_key: None,
            width,
            height,
            sha256: format!("{id:064x}"),
            perceptual_hash: None,
            measured_quality: None,
        });
    }
    let picture = pictures::picture(plan.random_seed, id, width, height)?;
    let measured = &picture.measured;
    let look = Look {
        storage_key: Some(picture.storage_key.clone()),
        width: measured.width,
        height: measured.height,
        sha256: measured.sha256.clone(),
        perceptual_hash: Some(measured.perceptual_hash),
        measured_quality: Some(measured.quality.score),
    };
    rows.objects.push((picture.storage_key, picture.bytes));
    Ok(look)
}

#[allow(clippy::too_many_arguments)]
fn push_image(
    rows: &mut Rows,
    hotel: i64,
    id: i64,
    partner: i64,
    url: &str,
    quality: f64,
    category: Category,
    look: &Look,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let canonical = canonicalize(url, &Rewrites::none())?;
    let key = UrlKey::of(&canonical);
    let new = NewImage {
        id: Some(id),
        url_key: key.as_str(),
        canonical_url: canonical.as_str(),
        storage_key: look
            .storage_key
            .clone()
            .unwrap_or_else(|| partner_storage_key(key.as_str())),
        width: i32::try_from(look.width).ok(),
        height: i32::try_from(look.height).ok(),
        caption: (id % 3 == 0).then(|| format!("{} view", category.as_str().to_lowercase())),
        category,
        // The demo's tagging model's score, which wins over the measured one.
        quality_score: Some(quality),
        content_sha256: Some(look.sha256.clone()),
        processing: crate::domain::catalog::ProcessingState::Ready,
        adopted_key: None,
    };
    let mut image = row::image(new, now);
    // Stored as the signed reading of the 64 bits (the column is a BIGINT).
    image.perceptual_hash = Set(look.perceptual_hash.map(|hash| hash as i64));
    image.measured_quality = Set(look.measured_quality);
    rows.images.push(image);
    rows.links.push(row::link(hotel, id, now));
    rows.sources.push(source(id, partner, url, now));
    rows.deliveries.push(row::delivery(hotel, id, partner, now));
    let model = |category, confidence| Tag {
        category,
        confidence,
        origin: TagOrigin::Model,
    };
    rows.tags.push(row::tag(id, &model(category, 0.9)));
    if category != Category::Other {
        rows.tags.push(row::tag(id, &model(Category::Other, 0.1)));
    }
    if id % 5 == 0 {
        rows.legacy.push(legacy_image_id::ActiveModel {
            legacy_id: Set(format!("L-{id}")),
            image_id: Set(id),
            created_at: Set(now),
        });
    }
    Ok(())
}

/// The demo partners' source of `image`, with a reference of their own.
fn source(image: i64, partner: i64, url: &str, now: DateTime<Utc>) -> image_source::ActiveModel {
    row::source(image, partner, url, Some(format!("ref-{image}")), now)
}
