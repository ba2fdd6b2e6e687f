//! Cursor paging shared by every list endpoint: `?limit=&cursor=`, newest first, cursor = last ID.

use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ApiError;
use super::extract::parse_id;
use crate::ids::Kind;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 250;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 250 (default 50).
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

impl PageQuery {
    pub fn new(limit: Option<u32>, cursor: Option<String>) -> PageQuery {
        PageQuery { limit, cursor }
    }

    pub fn limit(&self) -> Result<u32, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(limit @ 1..=MAX_LIMIT) => Ok(limit),
            Some(other) => Err(ApiError::BadRequest(format!(
                "limit must be between 1 and {MAX_LIMIT}, not {other}"
            ))),
        }
    }

    pub fn cursor(&self, kind: Kind) -> Result<Option<String>, ApiError> {
        self.cursor
            .as_deref()
            .map(|cursor| {
                parse_id(kind, cursor)
                    .map_err(|error| ApiError::BadRequest(format!("cursor: {error}")))
            })
            .transpose()
    }
}

/// Given up to `limit + 1` rows, keeps `limit` and says where the next page starts.
pub fn next_cursor<T>(
    mut rows: Vec<T>,
    limit: u32,
    id_of: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let limit = limit as usize;
    if rows.len() > limit {
        rows.truncate(limit);
        let cursor = rows.last().map(id_of);
        (rows, cursor)
    } else {
        (rows, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_extra_row_means_another_page() {
        let (rows, cursor) = next_cursor(vec![5, 4, 3], 2, |n| n.to_string());
        assert_eq!((rows, cursor), (vec![5, 4], Some("4".to_owned())));
        let (rows, cursor) = next_cursor(vec![5, 4], 2, |n| n.to_string());
        assert_eq!((rows, cursor), (vec![5, 4], None));
    }

    #[test]
    fn limits_are_bounded() {
        let query = |limit| PageQuery {
            limit,
            cursor: None,
        };
        assert_eq!(query(None).limit().unwrap(), DEFAULT_LIMIT);
        assert!(query(Some(0)).limit().is_err());
        assert!(query(Some(MAX_LIMIT + 1)).limit().is_err());
    }
}
