//! Running a plan: the records it needs, loaded level by level in one catalog call per table,
//! then the answer written as JSON bytes in the order of the selections.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::{ID, InputType, Variables};

use super::{
    Arg, Compiled, Condition, ConnectionField, Decline, EdgeField, Entry, HotelField, ImageField,
    PageInfoField, Plan, RootField,
};
use crate::domain::catalog::{HotelId, ImageId};
use crate::domain::curation::HotelRecord;
use crate::graphql::connection::{CursorKind, PageArgs};
use crate::graphql::loader::{self, Loaders};
use crate::graphql::query::MAX_IDS;
use crate::graphql::types::{ImageCategory, ImageSize, ImageStatus, Media};
use crate::service::catalog::Catalog;
use crate::store::ImageRecord;

/// The records a plan's request needs, loaded.
pub struct Loaded {
    hotel_ids: Vec<HotelId>,
    image_ids: Vec<ImageId>,
    hotels: HashMap<HotelId, Arc<HotelRecord>>,
    images: HashMap<ImageId, Arc<ImageRecord>>,
}

/// An object the answer shows at the root or under `_entities`.
enum Root {
    Hotel(Option<HotelId>),
    Image(Option<ImageId>),
}

impl Plan {
    /// Loads what the plan needs for `variables`: the root hotels in one call, then their
    /// main and gallery images with the root images in another. Declines when an argument or
    /// a representation would make the executor answer an error, or a read fails (the
    /// executor reads again and reports it).
    pub async fn load(&self, catalog: &Catalog, variables: &Variables) -> Compiled<Loaded> {
        let mut hotel_ids = Vec::new();
        let mut image_ids = Vec::new();
        for entry in &self.roots {
            for root in self.root_objects(&entry.field, variables)? {
                match root {
                    Root::Hotel(Some(id)) => hotel_ids.push(id),
                    Root::Image(Some(id)) => image_ids.push(id),
                    _ => {}
                }
            }
        }
        hotel_ids.sort_unstable();
        hotel_ids.dedup();
        let hotels = if hotel_ids.is_empty() {
            HashMap::new()
        } else {
            catalog.hotels(&hotel_ids).await.map_err(|_| Decline)?
        };
        let windows = self
            .galleries
            .iter()
            .map(|(first, after)| self.gallery_page(first, after, variables))
            .collect::<Compiled<Vec<PageArgs>>>()?;
        for hotel in hotels.values() {
            if self.main_images {
                image_ids.extend(hotel.main.as_ref().map(|m| m.image_id));
            }
            for page in &windows {
                let (start, end) = window(page, hotel.gallery.len());
                image_ids.extend_from_slice(&hotel.gallery[start..end]);
            }
        }
        image_ids.sort_unstable();
        image_ids.dedup();
        let images = if image_ids.is_empty() {
            HashMap::new()
        } else {
            catalog.images(&image_ids).await.map_err(|_| Decline)?
        };
        Ok(Loaded {
            hotel_ids,
            image_ids,
            hotels,
            images,
        })
    }

    /// Writes the answer (`{"data":{...}}`) from the records `load` gave.
    pub fn write(
        &self,
        loaded: &Loaded,
        variables: &Variables,
        media: &Media,
    ) -> Compiled<Vec<u8>> {
        let writer = Writer {
            plan: self,
            loaded,
            variables,
            media,
        };
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(b"{\"data\":");
        writer.object(&mut out, &self.roots, |out, field| writer.root(out, field))?;
        out.push(b'}');
        Ok(out)
    }

    /// The objects a root field shows, in order.
    fn root_objects(&self, field: &RootField, variables: &Variables) -> Compiled<Vec<Root>> {
        let value = |arg: &Arg| arg.value(variables, &self.variables)?.ok_or(Decline);
        Ok(match field {
            RootField::Typename => Vec::new(),
            RootField::Entities {
                representations, ..
            } => {
                let async_graphql::Value::List(list) = value(representations)? else {
                    return Err(Decline);
                };
                list.iter().map(representation).collect::<Compiled<_>>()?
            }
            RootField::Hotel(id, _) => vec![Root::Hotel(parse_id(
                &ID::parse(Some(value(id)?)).map_err(|_| Decline)?,
            ))],
            RootField::Image(id, _) => vec![Root::Image(parse_id(
                &ID::parse(Some(value(id)?)).map_err(|_| Decline)?,
            ))],
            RootField::Hotels(ids, _) => ids_of(value(ids)?)?
                .iter()
                .map(|id| Root::Hotel(parse_id(id)))
                .collect(),
            RootField::Images(ids, _) => ids_of(value(ids)?)?
                .iter()
                .map(|id| Root::Image(parse_id(id)))
                .collect(),
        })
    }

    fn gallery_page(&self, first: &Arg, after: &Arg, variables: &Variables) -> Compiled<PageArgs> {
        let first = match first.value(variables, &self.variables)? {
            None => 20,
            Some(value) => i32::parse(Some(value)).map_err(|_| Decline)?,
        };
        let after = match after.value_or_absent(variables, &self.variables)? {
            None => None,
            Some(value) => Option::<String>::parse(Some(value)).map_err(|_| Decline)?,
        };
        PageArgs::parse(first, after.as_deref(), CursorKind::Gallery).map_err(|_| Decline)
    }
}

impl Loaded {
    /// Feeds the request's loaders with every record loaded, and "not found" for the others,
    /// so that the executor's resolvers find them all in the request's cache.
    pub async fn feed(self, loaders: &Loaders) {
        loaders
            .feed_many(loader::every_key(&self.hotel_ids, self.hotels))
            .await;
        loaders
            .feed_many(loader::every_key(&self.image_ids, self.images))
            .await;
    }
}

/// A representation of `_entities`: exactly `__typename` (`Hotel` or `Image`) and a string
/// `id`; anything else is left to the executor.
fn representation(value: &async_graphql::Value) -> Compiled<Root> {
    let async_graphql::Value::Object(fields) = value else {
        return Err(Decline);
    };
    if fields.len() != 2 {
        return Err(Decline);
    }
    let (Some(async_graphql::Value::String(ty)), Some(async_graphql::Value::String(id))) =
        (fields.get("__typename"), fields.get("id"))
    else {
        return Err(Decline);
    };
    match ty.as_str() {
        "Hotel" => Ok(Root::Hotel(id.parse().ok())),
        "Image" => Ok(Root::Image(id.parse().ok())),
        _ => Err(Decline),
    }
}

fn parse_id<T: std::str::FromStr>(id: &ID) -> Option<T> {
    id.parse().ok()
}

/// The IDs of `hotels(ids:)` / `images(ids:)`, as the library coerces them; more than
/// [`MAX_IDS`] is the executor's error.
fn ids_of(value: async_graphql::Value) -> Compiled<Vec<ID>> {
    let ids = Vec::<ID>::parse(Some(value)).map_err(|_| Decline)?;
    if ids.len() > MAX_IDS {
        return Err(Decline);
    }
    Ok(ids)
}

/// The positions of a gallery of `len` images a page shows.
fn window(page: &PageArgs, len: usize) -> (usize, usize) {
    let start = page
        .after
        .map_or(0, |position| position as usize + 1)
        .min(len);
    (start, (start + page.first as usize).min(len))
}

struct Writer<'a> {
    plan: &'a Plan,
    loaded: &'a Loaded,
    variables: &'a Variables,
    media: &'a Media,
}

/// A page of a gallery as the executor builds it: the images found, each with the cursor of
/// its position.
struct GalleryPage<'a> {
    edges: Vec<(String, &'a Arc<ImageRecord>)>,
    has_next_page: bool,
    has_previous_page: bool,
    total: usize,
}

impl<'a> Writer<'a> {
    fn included(&self, conditions: &[Condition]) -> Compiled<bool> {
        for condition in conditions {
            let (arg, keep_when) = match condition {
                Condition::Skip(arg) => (arg, false),
                Condition::Include(arg) => (arg, true),
            };
            let value = arg
                .value(self.variables, &self.plan.variables)?
                .ok_or(Decline)?;
            let flag = bool::parse(Some(value)).map_err(|_| Decline)?;
            if flag != keep_when {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Writes `{...}` with each included entry of `selections` written by `field`; declines
    /// when none is included.
    fn object<F>(
        &self,
        out: &mut Vec<u8>,
        selections: &[Entry<F>],
        mut field: impl FnMut(&mut Vec<u8>, &F) -> Compiled<()>,
    ) -> Compiled<()> {
        out.push(b'{');
        let mut first = true;
        for entry in selections {
            if !self.included(&entry.conditions)? {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(&entry.key);
            field(out, &entry.field)?;
        }
        if first {
            // Every field skipped: the executor's answer for that is its own (null in places).
            return Err(Decline);
        }
        out.push(b'}');
        Ok(())
    }

    /// The first of `items` (a `hotel(id)` field), or all of them as a list (`hotels(ids)`).
    fn one_or_list<T>(
        &self,
        out: &mut Vec<u8>,
        single: bool,
        items: Vec<T>,
        mut item: impl FnMut(&mut Vec<u8>, T) -> Compiled<()>,
    ) -> Compiled<()> {
        if single {
            let first = items.into_iter().next().ok_or(Decline)?;
            item(out, first)
        } else {
            self.list(out, items, item)
        }
    }

    fn list<T>(
        &self,
        out: &mut Vec<u8>,
        items: impl IntoIterator<Item = T>,
        mut item: impl FnMut(&mut Vec<u8>, T) -> Compiled<()>,
    ) -> Compiled<()> {
        out.push(b'[');
        for (i, value) in items.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            item(out, value)?;
        }
        out.push(b']');
        Ok(())
    }

    fn root(&self, out: &mut Vec<u8>, field: &RootField) -> Compiled<()> {
        match field {
            RootField::Typename => string(out, "Query"),
            RootField::Entities { hotel, image, .. } => {
                let roots = self.plan.root_objects(field, self.variables)?;
                self.list(out, roots, |out, root| match root {
                    // Any well-formed hotel ID is a hotel.
                    Root::Hotel(Some(id)) => self.hotel(out, id, hotel),
                    Root::Image(Some(id)) => self.image_or_null(out, id, None, image),
                    Root::Hotel(None) | Root::Image(None) => null(out),
                })
            }
            RootField::Hotel(_, selections) | RootField::Hotels(_, selections) => {
                let roots = self.plan.root_objects(field, self.variables)?;
                let single = matches!(field, RootField::Hotel(..));
                let write = |out: &mut Vec<u8>, root| match root {
                    // Only a hotel this subgraph knows.
                    Root::Hotel(Some(id)) if self.loaded.hotels.contains_key(&id) => {
                        self.hotel(out, id, selections)
                    }
                    _ => null(out),
                };
                self.one_or_list(out, single, roots, write)
            }
            RootField::Image(_, selections) | RootField::Images(_, selections) => {
                let roots = self.plan.root_objects(field, self.variables)?;
                let single = matches!(field, RootField::Image(..));
                let write = |out: &mut Vec<u8>, root| match root {
                    Root::Image(Some(id)) => self.image_or_null(out, id, None, selections),
                    _ => null(out),
                };
                self.one_or_list(out, single, roots, write)
            }
        }
    }

    fn hotel(
        &self,
        out: &mut Vec<u8>,
        id: HotelId,
        selections: &[Entry<HotelField>],
    ) -> Compiled<()> {
        let record = self.loaded.hotels.get(&id);
        self.object(out, selections, |out, field| match field {
            HotelField::Typename => string(out, "Hotel"),
            HotelField::Id => string(out, &id.to_string()),
            HotelField::ImageCount => number(out, record.map_or(0, |h| h.image_count)),
            HotelField::MainImage(image) => {
                match record.and_then(|h| h.main.as_ref().map(|m| (h, m.image_id))) {
                    Some((hotel, main)) => self.image_or_null(out, main, Some(hotel), image),
                    None => null(out),
                }
            }
            HotelField::Gallery(index, connection) => {
                let (first, after) = self.plan.galleries.get(*index).ok_or(Decline)?;
                let page = self.plan.gallery_page(first, after, self.variables)?;
                let gallery: &[ImageId] = record.map_or(&[], |h| &h.gallery);
                let (start, end) = window(&page, gallery.len());
                // As the executor does: the images found, zipped with the positions.
                let images = gallery[start..end]
                    .iter()
                    .filter_map(|id| self.loaded.images.get(id));
                let edges = (start..end)
                    .zip(images)
                    .map(|(position, image)| (CursorKind::Gallery.encode(position as i64), image))
                    .collect();
                let page = GalleryPage {
                    edges,
                    has_next_page: end < gallery.len(),
                    has_previous_page: start > 0,
                    total: gallery.len(),
                };
                self.connection(out, &page, record, connection)
            }
        })
    }

    fn connection(
        &self,
        out: &mut Vec<u8>,
        page: &GalleryPage<'_>,
        hotel: Option<&Arc<HotelRecord>>,
        selections: &[Entry<ConnectionField>],
    ) -> Compiled<()> {
        self.object(out, selections, |out, field| match field {
            ConnectionField::Typename => string(out, "ImageConnection"),
            ConnectionField::TotalCount => number(out, page.total as i64),
            ConnectionField::PageInfo(info) => self.object(out, info, |out, field| match field {
                PageInfoField::Typename => string(out, "PageInfo"),
                PageInfoField::HasNextPage => boolean(out, page.has_next_page),
                PageInfoField::HasPreviousPage => boolean(out, page.has_previous_page),
                PageInfoField::StartCursor => {
                    optional_string(out, page.edges.first().map(|(c, _)| c.as_str()))
                }
                PageInfoField::EndCursor => {
                    optional_string(out, page.edges.last().map(|(c, _)| c.as_str()))
                }
            }),
            ConnectionField::Edges(edge) => self.list(out, &page.edges, |out, (cursor, image)| {
                self.object(out, edge, |out, field| match field {
                    EdgeField::Typename => string(out, "ImageEdge"),
                    EdgeField::Cursor => string(out, cursor),
                    EdgeField::Node(node) => self.image(out, image, hotel, node),
                })
            }),
            ConnectionField::Nodes(node) => self.list(out, &page.edges, |out, (_, image)| {
                self.image(out, image, hotel, node)
            }),
        })
    }

    fn image_or_null(
        &self,
        out: &mut Vec<u8>,
        id: ImageId,
        shown_by: Option<&Arc<HotelRecord>>,
        selections: &[Entry<ImageField>],
    ) -> Compiled<()> {
        match self.loaded.images.get(&id) {
            Some(record) => self.image(out, record, shown_by, selections),
            None => null(out),
        }
    }

    fn image(
        &self,
        out: &mut Vec<u8>,
        record: &ImageRecord,
        shown_by: Option<&Arc<HotelRecord>>,
        selections: &[Entry<ImageField>],
    ) -> Compiled<()> {
        let texts = shown_by.and_then(|h| h.texts_of(record.id));
        self.object(out, selections, |out, field| match field {
            ImageField::Typename => string(out, "Image"),
            ImageField::Id => string(out, &record.id.to_string()),
            ImageField::Url(size) => {
                let size = match size.value(self.variables, &self.plan.variables)? {
                    None => ImageSize::Large,
                    Some(value) => ImageSize::parse(Some(value)).map_err(|_| Decline)?,
                };
                string(out, &self.media.cdn.url(&record.storage_key, size.into()))
            }
            ImageField::Width => optional_number(out, record.width.map(i64::from)),
            ImageField::Height => optional_number(out, record.height.map(i64::from)),
            ImageField::AspectRatio => float(
                out,
                match (record.width, record.height) {
                    (Some(w), Some(h)) if w > 0 && h > 0 => Some(f64::from(w) / f64::from(h)),
                    _ => None,
                },
            ),
            ImageField::Caption => optional_string(
                out,
                texts
                    .and_then(|t| t.caption.as_deref())
                    .or(record.caption.as_deref()),
            ),
            ImageField::Category => enum_value(out, ImageCategory::from(record.category)),
            ImageField::QualityScore => float(out, record.quality_score),
            ImageField::Status => enum_value(out, ImageStatus::from(record.status)),
        })
    }
}

fn null(out: &mut Vec<u8>) -> Compiled<()> {
    out.extend_from_slice(b"null");
    Ok(())
}

fn boolean(out: &mut Vec<u8>, value: bool) -> Compiled<()> {
    out.extend_from_slice(if value { b"true" } else { b"false" });
    Ok(())
}

fn string(out: &mut Vec<u8>, value: &str) -> Compiled<()> {
    serde_json::to_writer(out, value).map_err(|_| Decline)
}

fn optional_string(out: &mut Vec<u8>, value: Option<&str>) -> Compiled<()> {
    match value {
        Some(value) => string(out, value),
        None => null(out),
    }
}

fn number(out: &mut Vec<u8>, value: i64) -> Compiled<()> {
    use std::io::Write as _;
    write!(out, "{value}").map_err(|_| Decline)
}

fn optional_number(out: &mut Vec<u8>, value: Option<i64>) -> Compiled<()> {
    match value {
        Some(value) => number(out, value),
        None => null(out),
    }
}

/// A float as the library writes it (through `serde_json`); a value JSON cannot hold is left
/// to the executor.
fn float(out: &mut Vec<u8>, value: Option<f64>) -> Compiled<()> {
    match value {
        Some(value) if value.is_finite() => serde_json::to_writer(out, &value).map_err(|_| Decline),
        Some(_) => Err(Decline),
        None => null(out),
    }
}

fn enum_value<E: InputType>(out: &mut Vec<u8>, value: E) -> Compiled<()> {
    match value.to_value() {
        async_graphql::Value::Enum(name) => string(out, name.as_str()),
        _ => Err(Decline),
    }
}
