//! The `Query` root, including the federation entity resolvers behind `_entities`.
//!
//! "Not found" is `null`, never an error: one error in `_entities` would null the whole list
//! of a search page.

use async_graphql::{Context, ID, Object, Result};

use super::admin::{AuditEntryConnection, AuditLogFilter, CatalogStats, SearchImagesFilter};
use super::connection::page_complexity;
use super::error::{bad_input, load};
use super::loader::{ByLegacyId, ByUrlKey, Loaders};
use super::types::{Hotel, HotelConnection, Image, ImageConnection, Partner, load_images};
use crate::domain::catalog::{HotelId, ImageId, PartnerId};
use crate::domain::url::{Rewrites, UrlKey, canonicalize};
use crate::service::catalog::Catalog;

/// The most IDs a list query accepts.
pub const MAX_IDS: usize = 100;

/// The root query type. The name must be `Query`: the exported federation SDL has no
/// `schema { query: ... }` block.
pub struct Query;

fn check_ids(ids: &[ID]) -> Result<()> {
    if ids.len() > MAX_IDS {
        return Err(bad_input(format!(
            "at most {MAX_IDS} IDs may be asked for at once"
        )));
    }
    Ok(())
}

async fn known_hotels(ctx: &Context<'_>, ids: &[Option<HotelId>]) -> Result<Vec<Option<Hotel>>> {
    let found = ctx
        .data::<Loaders>()?
        .load_many(ids.iter().flatten().copied())
        .await
        .map_err(load)?;
    Ok(ids
        .iter()
        .map(|id| {
            id.filter(|id| found.get(id).is_some_and(Option::is_some))
                .map(|id| Hotel { id })
        })
        .collect())
}

/// The images of `ids`, in order. Each is paired with the ID asked for, not with the ID it
/// shows: a retired ID answers its survivor (see [`crate::store::merge`]).
async fn images_by_id(ctx: &Context<'_>, ids: &[ID]) -> Result<Vec<Option<Image>>> {
    let parsed: Vec<Option<ImageId>> = ids.iter().map(|id| id.parse().ok()).collect();
    let wanted: Vec<ImageId> = parsed.iter().flatten().copied().collect();
    let found = ctx
        .data::<Loaders>()?
        .load_many(wanted)
        .await
        .map_err(load)?;
    Ok(parsed
        .iter()
        .map(|id| {
            let record = found.get(&(*id)?)?.clone()?;
            Some(Image {
                record,
                shown_by: None,
            })
        })
        .collect())
}

#[Object]
impl Query {
    /// A hotel this subgraph has images for; null for a hotel it knows nothing of.
    async fn hotel(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Hotel>> {
        Ok(known_hotels(ctx, &[id.parse().ok()]).await?.pop().flatten())
    }

    /// Hotels by ID (at most 100), in the order asked; null for unknown ones.
    #[graphql(complexity = "ids.len().min(MAX_IDS) * child_complexity")]
    async fn hotels(&self, ctx: &Context<'_>, ids: Vec<ID>) -> Result<Vec<Option<Hotel>>> {
        check_ids(&ids)?;
        let parsed: Vec<Option<HotelId>> = ids.iter().map(|id| id.parse().ok()).collect();
        known_hotels(ctx, &parsed).await
    }

    async fn image(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Image>> {
        Ok(images_by_id(ctx, &[id]).await?.pop().flatten())
    }

    /// Images by ID (at most 100), in the order asked; null for unknown ones.
    #[graphql(complexity = "ids.len().min(MAX_IDS) * child_complexity")]
    async fn images(&self, ctx: &Context<'_>, ids: Vec<ID>) -> Result<Vec<Option<Image>>> {
        check_ids(&ids)?;
        images_by_id(ctx, &ids).await
    }

    /// The image an ID of the old systems maps to.
    async fn image_by_legacy_id(
        &self,
        ctx: &Context<'_>,
        legacy_id: String,
    ) -> Result<Option<Image>> {
        let found = ctx
            .data::<Loaders>()?
            .load_one(ByLegacyId(legacy_id))
            .await
            .map_err(load)?;
        Ok(match found {
            Some(id) => load_images(ctx, &[id]).await?.pop(),
            None => None,
        })
    }

    /// The image any spelling of a partner URL belongs to (looked up by its URL key).
    /// Partner-specific rewrite rules are not applied: they depend on who delivered the URL.
    async fn image_by_source_url(&self, ctx: &Context<'_>, url: String) -> Result<Option<Image>> {
        let Ok(canonical) = canonicalize(&url, &Rewrites::none()) else {
            return Ok(None);
        };
        let key = UrlKey::of(&canonical).as_str().to_owned();
        let found = ctx
            .data::<Loaders>()?
            .load_one(ByUrlKey(key))
            .await
            .map_err(load)?;
        Ok(match found {
            Some(id) => load_images(ctx, &[id]).await?.pop(),
            None => None,
        })
    }

    async fn partners(&self, ctx: &Context<'_>) -> Result<Vec<Partner>> {
        let partners = ctx
            .data::<Catalog>()?
            .partners(None)
            .await
            .map_err(|e| super::error::service(&e))?;
        Ok(partners.into_iter().map(Partner).collect())
    }

    /// The audit log, newest first: who changed what, when, with which request, before and
    /// after (admin).
    #[graphql(
        complexity = "page_complexity(first, child_complexity)",
        cache_control(no_cache)
    )]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        filter: Option<AuditLogFilter>,
        #[graphql(default = 50)] first: i32,
        after: Option<String>,
    ) -> Result<AuditEntryConnection> {
        super::admin::audit_log(ctx, filter, first, after).await
    }

    /// Images matching `filter`, newest (highest ID) first (admin). A page reads at most 50
    /// rows per item asked for: when the filter matches few of them, it can end early (even
    /// empty) with `hasNextPage` true, and `pageInfo.endCursor` goes on from where it stopped.
    /// No `totalCount`.
    #[graphql(
        complexity = "page_complexity(first, child_complexity)",
        cache_control(no_cache)
    )]
    async fn search_images(
        &self,
        ctx: &Context<'_>,
        filter: Option<SearchImagesFilter>,
        #[graphql(default = 50)] first: i32,
        after: Option<String>,
    ) -> Result<ImageConnection> {
        super::admin::search_images(ctx, filter, first, after).await
    }

    /// Hotels known to this subgraph that have no main image (no eligible image), by ID
    /// (admin).
    #[graphql(
        complexity = "page_complexity(first, child_complexity)",
        cache_control(no_cache)
    )]
    async fn hotels_without_main_image(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: i32,
        after: Option<String>,
    ) -> Result<HotelConnection> {
        super::admin::hotels_without_main_image(ctx, first, after).await
    }

    /// The catalog's business figures, computed now (admin).
    #[graphql(cache_control(no_cache))]
    async fn catalog_stats(&self, ctx: &Context<'_>) -> Result<CatalogStats> {
        super::admin::catalog_stats(ctx).await
    }

    /// Federation: any well-formed hotel ID is a hotel (its image fields are empty when this
    /// subgraph has no images for it).
    #[graphql(entity)]
    async fn find_hotel_by_id(&self, id: ID) -> Option<Hotel> {
        id.parse().ok().map(|id| Hotel { id })
    }

    #[graphql(entity)]
    async fn find_image_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Image>> {
        Ok(images_by_id(ctx, &[id]).await?.pop().flatten())
    }

    #[graphql(entity)]
    async fn find_partner_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Partner>> {
        let Ok(id) = id.parse::<PartnerId>() else {
            return Ok(None);
        };
        let partner = ctx.data::<Loaders>()?.load_one(id).await.map_err(load)?;
        Ok(partner.map(Partner))
    }
}
