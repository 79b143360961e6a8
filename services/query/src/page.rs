//! Page tokens: opaque to callers; inside, the name of the list and the key of the last item
//! of the previous page, joined by `/` (the key's last part may itself hold `/`, an external
//! id or an audit chain does).
//!
//! Every list is keyset-paged: a page asks the store for one item more than it returns, and
//! only when that item exists does the response carry a `next_page_token`, so an empty token
//! means the last page. A token names its list, so one returned by another call is refused
//! with INVALID_ARGUMENT rather than misread.

use chrono::{DateTime, Utc};
use tonic::Status;

/// The store limit for a page of `size` items: one more, to learn whether another follows.
pub fn fetch_limit(size: u32) -> i64 {
    i64::from(size) + 1
}

/// Cuts the `size + 1` items fetched down to the page and returns the next page's token
/// (`list` and the key of the page's last item), empty when nothing follows.
pub fn finish<T>(
    mut items: Vec<T>,
    size: u32,
    list: &str,
    key: impl Fn(&T) -> String,
) -> (Vec<T>, String) {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if items.len() <= size {
        return (items, String::new());
    }
    items.truncate(size);
    let token = items
        .last()
        .map(|last| format!("{list}/{}", key(last)))
        .unwrap_or_default();
    (items, token)
}

/// The `parts` key parts of a token of `list`; `None` for an empty token (the first page).
pub fn parse<'a>(token: &'a str, list: &str, parts: usize) -> Result<Option<Vec<&'a str>>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let mut split = token.splitn(parts + 1, '/');
    if split.next() != Some(list) {
        return Err(invalid());
    }
    let key: Vec<&str> = split.collect();
    if key.len() != parts || key.iter().any(|p| p.is_empty()) {
        return Err(invalid());
    }
    Ok(Some(key))
}

/// A token's part as a number.
pub fn number<T: std::str::FromStr>(part: &str) -> Result<T, Status> {
    part.parse().map_err(|_| invalid())
}

/// A time as a token part: microseconds since the epoch, PostgreSQL's precision.
pub fn micros(t: DateTime<Utc>) -> String {
    t.timestamp_micros().to_string()
}

/// A token part written by [`micros`].
pub fn time(part: &str) -> Result<DateTime<Utc>, Status> {
    DateTime::from_timestamp_micros(number(part)?).ok_or_else(invalid)
}

/// The error for a token this service did not issue for this list.
pub fn invalid() -> Status {
    Status::invalid_argument(
        "page_token is not a token this list returned; pass the previous response's \
         next_page_token with the same filters, or none for the first page",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_with_more_behind_it_names_its_last_key() {
        let (page, token) = finish(vec![1, 2, 3], 2, "n", ToString::to_string);
        assert_eq!(page, [1, 2]);
        assert_eq!(token, "n/2");
        assert_eq!(parse(&token, "n", 1).unwrap(), Some(vec!["2"]));
        let (page, token) = finish(vec![1, 2], 2, "n", ToString::to_string);
        assert_eq!(page, [1, 2]);
        assert_eq!(token, "");
    }

    #[test]
    fn the_last_key_part_keeps_its_slashes() {
        let parts = parse("audit/17/5/flow/abc", "audit", 3).unwrap().unwrap();
        assert_eq!(parts, ["17", "5", "flow/abc"]);
    }

    #[test]
    fn a_token_of_another_list_or_garbage_is_refused() {
        assert_eq!(parse("", "n", 1).unwrap(), None);
        for token in ["review/2", "n", "n/", "n/1/", "garbage"] {
            let err = parse(token, "n", 2).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{token}");
        }
        assert!(time("yesterday").is_err());
        let now = DateTime::from_timestamp_micros(1_767_225_600_123_456).unwrap();
        assert_eq!(time(&micros(now)).unwrap(), now);
    }
}
