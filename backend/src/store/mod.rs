//! Data access: the queries, one module per table. Returns entity models;
//! turning them into wire types is the API layer's job.

pub mod chat;
pub mod recipes;
pub mod sessions;
pub mod users;
pub mod watch;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};
use uuid::Uuid;

/// A keyset page request: rows with ids below `before`, newest first. Ids are
/// UUIDv7, so id order is creation order and pages are stable under inserts.
#[derive(Debug, Clone, Copy)]
pub struct Keyset {
    pub before: Option<Uuid>,
    pub limit: u64,
}

/// Applies a keyset to a query on `id_col`, fetching one extra row so the
/// caller knows whether another page follows.
pub fn keyset<E, C>(query: Select<E>, id_col: C, page: Keyset) -> Select<E>
where
    E: EntityTrait,
    C: ColumnTrait,
{
    let query = match page.before {
        Some(before) => query.filter(id_col.lt(before)),
        None => query,
    };
    query
        .order_by_desc(id_col)
        .limit(page.limit.saturating_add(1))
}

/// Splits the extra row off a keyset result: the page, and whether more follow.
pub fn split_page<T>(mut rows: Vec<T>, page: Keyset) -> (Vec<T>, bool) {
    let limit = usize::try_from(page.limit).unwrap_or(usize::MAX);
    let more = rows.len() > limit;
    rows.truncate(limit);
    (rows, more)
}
