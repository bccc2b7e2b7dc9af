//! The GraphQL side of ingestion: `importImages` (the partner-ingestion pipeline) and
//! `upsertPartner` (admins), their inputs and payloads. The `Mutation` root's resolvers
//! delegate here; the use cases are [`crate::service::ingest`].

use std::collections::HashMap;

use async_graphql::{Context, Enum, ID, InputObject, Result, SimpleObject};

use super::payload::{ImageTagInput, UserError, caller, forget_loaded, outcome, parse_id, service};
use super::types::{Image, Partner, PartnerKind, load_images};
use crate::domain::catalog::{Category, ImageId};
use crate::domain::ingest::{Outcome, RawItem, RawTag};
use crate::domain::url::UrlRewrite;
use crate::service::ingest::{Ingestor, PartnerInput};
use crate::telemetry::Metrics;

/// What happened to one item of an import (DESIGN section 3).
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "crate::domain::ingest::Outcome")]
pub enum ImportOutcome {
    /// A new image.
    Created,
    /// An existing image, now also shown for this hotel.
    Linked,
    /// Already shown for this hotel; this partner becomes another source of it.
    Deduplicated,
    /// This partner already delivered this image for this hotel.
    Unchanged,
    /// Invalid, or its legacy ID belongs to another image; nothing of it was stored.
    Rejected,
}

#[derive(InputObject)]
pub struct ImportImagesInput {
    /// The partner delivering; an `images:import` token may only deliver for its own.
    pub partner_id: ID,
    /// At most 1000. Processed in order: an item may refer to an image an earlier one created.
    pub items: Vec<ImportItemInput>,
}

/// One delivery: a picture of a hotel, as the partner knows it.
#[derive(InputObject)]
pub struct ImportItemInput {
    pub hotel_id: ID,
    /// An http(s) URL; any spelling of one picture's URL is the same image.
    pub url: String,
    /// The partner's own reference of the picture.
    pub partner_image_ref: Option<String>,
    /// An ID the old systems used; bound to one image forever.
    pub legacy_id: Option<String>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub caption: Option<String>,
    /// Tags of the partner's or pipeline's model.
    pub tags: Option<Vec<ImageTagInput>>,
    /// In 0..1.
    pub quality_score: Option<f64>,
    /// Hex SHA-256 of the image's bytes: curation drops a worse copy of the same bytes.
    pub content_sha256: Option<String>,
    /// The key of an object in the object store that holds the picture already (a catalog
    /// migrated from an older system; admins only). A new image adopts it: its bytes are read
    /// from the store and measured instead of fetched from `url`, which stays the image's
    /// identity (a later delivery of the same URL is the same image).
    pub storage_key: Option<String>,
}

impl From<ImportItemInput> for RawItem {
    fn from(input: ImportItemInput) -> Self {
        RawItem {
            hotel_id: input.hotel_id.0,
            url: input.url,
            partner_image_ref: input.partner_image_ref,
            legacy_id: input.legacy_id,
            width: input.width.map(i64::from),
            height: input.height.map(i64::from),
            caption: input.caption,
            tags: input
                .tags
                .unwrap_or_default()
                .into_iter()
                .map(|tag| RawTag {
                    category: Category::from(tag.category).as_str().to_owned(),
                    confidence: tag.confidence,
                })
                .collect(),
            quality_score: input.quality_score,
            content_sha256: input.content_sha256,
            storage_key: input.storage_key,
        }
    }
}

/// What happened to the item at `index`.
#[derive(SimpleObject)]
pub struct ImportResult {
    pub index: i32,
    pub outcome: ImportOutcome,
    /// Why the item was rejected.
    pub reason: Option<String>,
    /// The image the item is (null when rejected).
    pub image: Option<Image>,
}

#[derive(SimpleObject)]
pub struct ImportImagesPayload {
    /// One per item, in the order of the items.
    pub results: Vec<ImportResult>,
    pub user_errors: Vec<UserError>,
}

/// A rewrite rule: a regular expression searched in the canonical URL of each of the
/// partner's deliveries, and its replacement (`$1`, `${name}` insert groups).
#[derive(InputObject)]
pub struct UrlRewriteInput {
    pub pattern: String,
    pub replacement: String,
}

#[derive(InputObject)]
pub struct UpsertPartnerInput {
    pub id: ID,
    pub name: String,
    pub kind: PartnerKind,
    /// Replaces the partner's rules, applied in order; none when empty.
    #[graphql(default)]
    pub url_rewrites: Vec<UrlRewriteInput>,
}

#[derive(SimpleObject)]
pub struct UpsertPartnerPayload {
    pub partner: Option<Partner>,
    pub user_errors: Vec<UserError>,
}

/// The ingestor, after forgetting what earlier root fields of this request loaded.
pub async fn import_images(
    ctx: &Context<'_>,
    input: ImportImagesInput,
) -> Result<ImportImagesPayload> {
    let (ingestor, caller) = (service::<Ingestor>(ctx)?, caller(ctx)?);
    forget_loaded(ctx);
    let run = async {
        let partner = parse_id(&input.partner_id, &["partnerId"])?;
        let items: Vec<RawItem> = input.items.into_iter().map(RawItem::from).collect();
        ingestor.import(&caller, partner, &items).await
    };
    let results = match outcome(run.await)? {
        Ok(results) => results,
        Err(user_errors) => {
            return Ok(ImportImagesPayload {
                results: Vec::new(),
                user_errors,
            });
        }
    };
    if let Ok(metrics) = ctx.data::<Metrics>() {
        for outcome in Outcome::ALL {
            let count = results.iter().filter(|r| r.outcome == outcome).count();
            if count > 0 {
                metrics.import_items(outcome, count as u64);
            }
        }
    }
    let mut ids: Vec<ImageId> = results.iter().filter_map(|r| r.image).collect();
    ids.sort();
    ids.dedup();
    let images: HashMap<ImageId, Image> = load_images(ctx, &ids)
        .await?
        .into_iter()
        .map(|image| (image.record.id, image))
        .collect();
    Ok(ImportImagesPayload {
        results: results
            .into_iter()
            .map(|r| ImportResult {
                index: i32::try_from(r.index).unwrap_or(i32::MAX),
                outcome: r.outcome.into(),
                reason: r.reason,
                image: r.image.and_then(|id| images.get(&id).cloned()),
            })
            .collect(),
        user_errors: Vec::new(),
    })
}

pub async fn upsert_partner(
    ctx: &Context<'_>,
    input: UpsertPartnerInput,
) -> Result<UpsertPartnerPayload> {
    let (ingestor, caller) = (service::<Ingestor>(ctx)?, caller(ctx)?);
    forget_loaded(ctx);
    let run = async {
        let partner = PartnerInput {
            id: parse_id(&input.id, &["id"])?,
            name: input.name,
            kind: input.kind.into(),
            url_rewrites: input
                .url_rewrites
                .into_iter()
                .map(|rule| UrlRewrite {
                    pattern: rule.pattern,
                    replacement: rule.replacement,
                })
                .collect(),
        };
        ingestor.upsert_partner(&caller, partner).await
    };
    Ok(match outcome(run.await)? {
        Ok(record) => UpsertPartnerPayload {
            partner: Some(Partner(record)),
            user_errors: Vec::new(),
        },
        Err(user_errors) => UpsertPartnerPayload {
            partner: None,
            user_errors,
        },
    })
}
