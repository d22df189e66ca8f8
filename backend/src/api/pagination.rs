//! Cursor pagination: opaque cursors over UUIDv7 ids, newest first.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use mobile_bridge::ErrorCode;
use uuid::Uuid;

use crate::config::Settings;
use crate::error::ApiError;
use crate::store::Keyset;

/// The cursor that continues after `last_id`.
pub fn encode_cursor(last_id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(last_id.as_bytes())
}

fn decode_cursor(cursor: &str) -> Result<Uuid, ApiError> {
    let invalid = || {
        ApiError::client(
            ErrorCode::InvalidCursor,
            "cursor was not issued by this server; pass back `next_cursor` unchanged",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    Uuid::from_slice(&bytes).map_err(|_| invalid())
}

/// Checks `cursor` and `limit` against the configured page sizes.
pub fn keyset(
    cursor: Option<&str>,
    limit: Option<u32>,
    settings: &Settings,
) -> Result<Keyset, ApiError> {
    let limit = limit.unwrap_or(settings.page_size_default);
    if limit == 0 || limit > settings.page_size_max {
        return Err(ApiError::client(
            ErrorCode::InvalidQuery,
            format!("limit must be between 1 and {}", settings.page_size_max),
        ));
    }
    let before = match cursor {
        None | Some("") => None,
        Some(c) => Some(decode_cursor(c)?),
    };
    Ok(Keyset {
        before,
        limit: u64::from(limit),
    })
}

/// The `next_cursor` of a page: set only when more items follow.
pub fn next_cursor(last_id: Option<Uuid>, more: bool) -> Option<String> {
    if more {
        last_id.map(encode_cursor)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip_and_garbage() {
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(id)).unwrap(), id);
        assert!(decode_cursor("not a cursor!").is_err());
        assert!(decode_cursor("AAAA").is_err());
    }
}
