//! `searchImages` of the admin tool: the images matching a filter, newest (highest ID) first,
//! keyset-paged on the ID, at a bounded cost.
//!
//! A page is read from one *driving* index range, backwards from the cursor: the hotel's links
//! (`hotel_image` primary key), the partner's sources (`image_source` (`partner_id`,
//! `image_id`)), the category (`image` (`category`, `id`); the unclassified backlog is the
//! category `OTHER`), the status (`image` (`status`, `id`)), or else the primary key, in that
//! order of preference (the usual selectivity: a hotel has tens of images, a category or a
//! status a large share of the catalog). Every other condition is checked on the rows that
//! range yields.
//!
//! What bounds the cost is the scan budget: a page examines at most `budget` rows of its
//! driving range. When the other conditions are selective, the budget can run out before the
//! page is full; the page then ends early (possibly empty) and says where the scan stopped, so
//! the next page goes on from there. Without the budget a filter matching nothing would read a
//! whole index range (every ACTIVE image, say) to prove it.
//!
//! The processing state does not drive either: the processing queue's index is ordered by due
//! time, and a catalog's PENDING and FAILED images are the recent ones (the top of the primary
//! key), so the state is checked on the driving rows, within the budget.
//!
//! Range filters (quality, creation time) never drive: a range of an index on them is ordered
//! by quality or time, not by ID, so a page would need every match sorted first, a cost that
//! grows with the catalog. They are checked on the driving rows, within the budget.

use chrono::{DateTime, Utc};
use entity::{hotel_image, image, image_source, image_tag};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, Order, Query, SelectStatement, SimpleExpr};

use super::{Store, StoreResult, Window, image_id};
use crate::domain::catalog::{Category, HotelId, ImageId, PartnerId, ProcessingState, Status};

/// Which images to list (every given condition holds).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageSearch {
    /// The image's own status (everywhere).
    pub status: Option<Status>,
    /// Where the image is in processing.
    pub processing: Option<ProcessingState>,
    /// Delivered by this partner (a source of it, retired or not).
    pub partner: Option<PartnerId>,
    /// The image's effective category (its highest-confidence tag, manual first).
    pub category: Option<Category>,
    /// Effective quality (the model's score, else the measured one, else 0) at least this.
    pub min_quality: Option<f64>,
    /// Effective quality at most this.
    pub max_quality: Option<f64>,
    /// `true`: no tag at all, model or manual (the tagging backlog); `false`: at least one.
    pub unclassified: Option<bool>,
    /// Linked to this hotel (whatever the link's status).
    pub hotel: Option<HotelId>,
    /// Created at or after.
    pub created_after: Option<DateTime<Utc>>,
    /// Created before.
    pub created_before: Option<DateTime<Utc>>,
}

/// A page of a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPage {
    /// The matches, highest ID first, at most the window's limit.
    pub ids: Vec<ImageId>,
    /// When the scan budget ran out before the window was full: the lowest ID examined. The
    /// search goes on below it.
    pub stopped_at: Option<i64>,
}

/// The index range a page is read from.
enum Driver {
    Hotel(HotelId),
    Partner(PartnerId),
    Category(Category),
    Status(Status),
    All,
}

impl Driver {
    fn of(filter: &ImageSearch) -> Self {
        if let Some(hotel) = filter.hotel {
            Driver::Hotel(hotel)
        } else if let Some(partner) = filter.partner {
            Driver::Partner(partner)
        } else if filter.unclassified == Some(true) {
            Driver::Category(Category::Other)
        } else if let Some(category) = filter.category {
            Driver::Category(category)
        } else if let Some(status) = filter.status {
            Driver::Status(status)
        } else {
            Driver::All
        }
    }

    /// The image IDs of the range below `after`, highest first, at most `budget`, as `id`.
    fn range(&self, after: Option<i64>, budget: u64) -> SelectStatement {
        let (table, id, key): (Alias, Alias, Option<(Alias, SimpleExpr)>) = match self {
            Driver::Hotel(hotel) => (
                Alias::new("hotel_image"),
                Alias::new("image_id"),
                Some((Alias::new("hotel_id"), Expr::val(hotel.get()))),
            ),
            Driver::Partner(partner) => (
                Alias::new("image_source"),
                Alias::new("image_id"),
                Some((Alias::new("partner_id"), Expr::val(partner.get()))),
            ),
            Driver::Category(category) => (
                Alias::new("image"),
                Alias::new("id"),
                Some((Alias::new("category"), Expr::val(category.as_str()))),
            ),
            Driver::Status(status) => (
                Alias::new("image"),
                Alias::new("id"),
                Some((Alias::new("status"), Expr::val(status.as_str()))),
            ),
            Driver::All => (Alias::new("image"), Alias::new("id"), None),
        };
        let mut range = Query::select();
        range
            .expr_as(Expr::col(id.clone()), Alias::new("id"))
            .from(table);
        if let Some((column, value)) = key {
            range.and_where(Expr::col(column).eq(value));
        }
        if let Some(after) = after {
            range.and_where(Expr::col(id.clone()).lt(after));
        }
        range.order_by(id, Order::Desc).limit(budget);
        range
    }
}

/// `image.id`, for correlated subqueries.
fn image_column() -> Expr {
    Expr::col((image::Entity, image::Column::Id))
}

/// Whether a row of `table` whose `column` is the image's ID exists (with `condition`).
fn exists_for_image(
    table: impl sea_orm::sea_query::IntoTableRef,
    column: impl sea_orm::sea_query::IntoColumnRef,
    condition: Option<SimpleExpr>,
) -> SimpleExpr {
    let mut query = Query::select();
    query
        .expr(Expr::val(1))
        .from(table)
        .and_where(Expr::col(column).equals((image::Entity, image::Column::Id)));
    if let Some(condition) = condition {
        query.and_where(condition);
    }
    Expr::exists(query)
}

/// Every condition of `filter` on an `image` row, but the hotel's or partner's when `driver`
/// reads that range already: repeated as a semi-join, the planner may read the whole range
/// (every source of a large partner) to build it, whatever the budget.
fn conditions(filter: &ImageSearch, driver: &Driver) -> Vec<SimpleExpr> {
    let mut all = Vec::new();
    if let Some(status) = filter.status {
        all.push(Expr::col((image::Entity, image::Column::Status)).eq(status.as_str()));
    }
    if let Some(state) = filter.processing {
        all.push(Expr::col((image::Entity, image::Column::ProcessingState)).eq(state.as_str()));
    }
    if let Some(category) = filter.category {
        all.push(Expr::col((image::Entity, image::Column::Category)).eq(category.as_str()));
    }
    if filter.min_quality.is_some() || filter.max_quality.is_some() {
        let quality: SimpleExpr = Func::coalesce([
            Expr::col((image::Entity, image::Column::QualityScore)),
            Expr::col((image::Entity, image::Column::MeasuredQuality)),
            Expr::val(0.0),
        ])
        .into();
        if let Some(min) = filter.min_quality {
            all.push(quality.clone().gte(min));
        }
        if let Some(max) = filter.max_quality {
            all.push(quality.lte(max));
        }
    }
    if let Some(after) = filter.created_after {
        all.push(Expr::col((image::Entity, image::Column::CreatedAt)).gte(after));
    }
    if let Some(before) = filter.created_before {
        all.push(Expr::col((image::Entity, image::Column::CreatedAt)).lt(before));
    }
    if let Some(hotel) = filter.hotel.filter(|_| !matches!(driver, Driver::Hotel(_))) {
        all.push(exists_for_image(
            hotel_image::Entity,
            (hotel_image::Entity, hotel_image::Column::ImageId),
            Some(Expr::col((hotel_image::Entity, hotel_image::Column::HotelId)).eq(hotel.get())),
        ));
    }
    if let Some(partner) = filter
        .partner
        .filter(|_| !matches!(driver, Driver::Partner(_)))
    {
        all.push(exists_for_image(
            image_source::Entity,
            (image_source::Entity, image_source::Column::ImageId),
            Some(
                Expr::col((image_source::Entity, image_source::Column::PartnerId))
                    .eq(partner.get()),
            ),
        ));
    }
    if let Some(unclassified) = filter.unclassified {
        let tagged = exists_for_image(
            image_tag::Entity,
            (image_tag::Entity, image_tag::Column::ImageId),
            None,
        );
        all.push(if unclassified { tagged.not() } else { tagged });
    }
    all
}

impl Store {
    /// Images matching `filter`, highest ID first, below `window.after`, at most
    /// `window.limit`, examining at most `budget` rows of the driving index range.
    pub async fn search_images(
        &self,
        filter: &ImageSearch,
        window: Window,
        budget: u64,
    ) -> StoreResult<SearchPage> {
        let driver = Driver::of(filter);
        // `IN (SELECT id FROM (...) c)`: MariaDB refuses a LIMIT directly inside `IN`.
        let mut scanned = Query::select();
        scanned
            .column((Alias::new("c"), Alias::new("id")))
            .from_subquery(driver.range(window.after, budget), Alias::new("c"));
        let mut query = Query::select();
        query
            .column((image::Entity, image::Column::Id))
            .from(image::Entity)
            .and_where(image_column().in_subquery(scanned));
        for condition in conditions(filter, &driver) {
            query.and_where(condition);
        }
        query
            .order_by((image::Entity, image::Column::Id), Order::Desc)
            .limit(window.limit);
        let rows = self.db.query_all(&query).await?;
        let ids = rows
            .iter()
            .map(|row| Ok(image_id(row.try_get_by_index(0)?)?))
            .collect::<StoreResult<Vec<_>>>()?;
        let stopped_at = if (ids.len() as u64) < window.limit {
            self.budget_ran_out(&driver, window.after, budget).await?
        } else {
            None
        };
        Ok(SearchPage { ids, stopped_at })
    }

    /// Whether the driving range below `after` holds `budget` rows or more, and if so the
    /// lowest ID of the first `budget` (where a page that examined them stopped).
    async fn budget_ran_out(
        &self,
        driver: &Driver,
        after: Option<i64>,
        budget: u64,
    ) -> StoreResult<Option<i64>> {
        let mut stats = Query::select();
        stats
            .expr(Expr::col((Alias::new("c"), Alias::new("id"))).count())
            .expr(Expr::col((Alias::new("c"), Alias::new("id"))).min())
            .from_subquery(driver.range(after, budget), Alias::new("c"));
        let Some(row) = self.db.query_one(&stats).await? else {
            return Ok(None);
        };
        let examined: i64 = row.try_get_by_index(0)?;
        let lowest: Option<i64> = row.try_get_by_index(1)?;
        Ok(lowest.filter(|_| examined as u64 >= budget))
    }
}
