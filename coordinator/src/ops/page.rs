//! Paging of the `List*` calls (Google API design guide style): a page size
//! and an opaque token that says where the previous page stopped.
//!
//! The token is the hex of a small versioned string holding the key of the
//! last item returned (a name or an id). The next page starts right after
//! the item with that key, in the list's own order (by name, or newest
//! first), so paging is deterministic while the list does not change.

use super::{OpError, OpResult};

/// Most items one page holds.
pub const MAX_PAGE_SIZE: usize = 1_000;
/// The page size of a list that had a default `limit` (executions, deployments).
pub const DEFAULT_PAGE_SIZE: usize = 20;

/// Marks a token of this format (a later format gets another prefix).
const TOKEN_PREFIX: &str = "ferry-page-v1:";

/// Which page of a list to return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Most items in the page.
    pub size: usize,
    /// The key of the last item of the previous page (None: the first page).
    pub after: Option<String>,
}

impl PageRequest {
    /// From a request's `page_size` and `page_token`; `page_size` 0 is
    /// `default`, negative or more than [`MAX_PAGE_SIZE`] is refused, and so
    /// is a token this coordinator did not make.
    pub fn new(page_size: i32, page_token: &str, default: usize) -> OpResult<PageRequest> {
        let size = match page_size {
            0 => default,
            n if n < 0 => {
                return Err(OpError::Invalid(format!(
                    "page_size must not be negative (got {n})"
                )));
            }
            n if n as usize > MAX_PAGE_SIZE => {
                return Err(OpError::Invalid(format!(
                    "page_size (--limit) is at most {MAX_PAGE_SIZE} (got {n})"
                )));
            }
            n => n as usize,
        };
        Ok(PageRequest {
            size,
            after: decode_token(page_token)?,
        })
    }

    /// Every item up to the maximum: what the lists without a `limit`
    /// returned before paging (0 means this for them).
    pub fn all(page_size: i32, page_token: &str) -> OpResult<PageRequest> {
        PageRequest::new(page_size, page_token, MAX_PAGE_SIZE)
    }

    /// For a request that also has the older `limit` (an alias kept for
    /// older clients): it applies only when `page_size` is 0.
    pub fn with_limit(page_size: i32, limit: u32, page_token: &str) -> OpResult<PageRequest> {
        if page_size == 0 {
            let size = super::list_limit(limit)?;
            return Ok(PageRequest {
                size,
                after: decode_token(page_token)?,
            });
        }
        PageRequest::new(page_size, page_token, DEFAULT_PAGE_SIZE)
    }

    /// The page of `items` (already in the list's order) this request asks
    /// for, and the token of the next page ("" after the last one). `key`
    /// names an item uniquely within the list.
    pub fn apply<T>(
        &self,
        items: impl IntoIterator<Item = T>,
        key: impl Fn(&T) -> String,
    ) -> OpResult<(Vec<T>, String)> {
        let mut items = items.into_iter();
        if let Some(after) = &self.after
            && !items.by_ref().any(|item| key(&item) == *after)
        {
            return Err(OpError::Invalid(
                "page_token does not match this list (it is from another list, or its \
                 last item is gone); list again without it"
                    .into(),
            ));
        }
        let page: Vec<T> = items.by_ref().take(self.size).collect();
        let next = match (page.last(), items.next()) {
            (Some(last), Some(_)) => encode_token(&key(last)),
            _ => String::new(),
        };
        Ok((page, next))
    }
}

/// The opaque token that continues after the item `key`.
pub fn encode_token(key: &str) -> String {
    hex::encode(format!("{TOKEN_PREFIX}{key}"))
}

/// The key a token continues after (None for "").
fn decode_token(token: &str) -> OpResult<Option<String>> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || {
        OpError::Invalid(
            "page_token is not valid: pass a `next_page_token` from a previous response unchanged"
                .into(),
        )
    };
    let bytes = hex::decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    text.strip_prefix(TOKEN_PREFIX)
        .map(|key| Some(key.to_string()))
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("item-{i:02}")).collect()
    }

    fn page(size: i32, token: &str, items: &[String]) -> OpResult<(Vec<String>, String)> {
        PageRequest::new(size, token, DEFAULT_PAGE_SIZE)?
            .apply(items.iter().cloned(), |s| s.clone())
    }

    #[test]
    fn pages_follow_each_other_and_the_last_has_no_token() -> OpResult<()> {
        let items = names(5);
        let (first, t1) = page(2, "", &items)?;
        assert_eq!(first, items[0..2]);
        assert!(!t1.is_empty());
        let (second, t2) = page(2, &t1, &items)?;
        assert_eq!(second, items[2..4]);
        let (last, t3) = page(2, &t2, &items)?;
        assert_eq!(last, items[4..5]);
        assert_eq!(t3, "");
        Ok(())
    }

    #[test]
    fn an_exact_last_page_has_no_token() -> OpResult<()> {
        let items = names(4);
        let (_, t1) = page(2, "", &items)?;
        let (second, t2) = page(2, &t1, &items)?;
        assert_eq!(second, items[2..4]);
        assert_eq!(t2, "");
        let (all, t) = page(0, "", &items)?;
        assert_eq!((all.len(), t.as_str()), (4, ""));
        Ok(())
    }

    #[test]
    fn sizes_default_and_bounds() -> OpResult<()> {
        assert_eq!(PageRequest::new(0, "", 20)?.size, 20);
        assert_eq!(PageRequest::all(0, "")?.size, MAX_PAGE_SIZE);
        assert_eq!(PageRequest::new(1_000, "", 20)?.size, 1_000);
        assert!(matches!(
            PageRequest::new(1_001, "", 20),
            Err(OpError::Invalid(_))
        ));
        assert!(matches!(
            PageRequest::new(-1, "", 20),
            Err(OpError::Invalid(_))
        ));
        // `limit` applies only when page_size is 0.
        assert_eq!(PageRequest::with_limit(0, 7, "")?.size, 7);
        assert_eq!(PageRequest::with_limit(0, 0, "")?.size, DEFAULT_PAGE_SIZE);
        assert_eq!(PageRequest::with_limit(3, 7, "")?.size, 3);
        assert!(matches!(
            PageRequest::with_limit(0, 5_000, ""),
            Err(OpError::Invalid(_))
        ));
        Ok(())
    }

    #[test]
    fn bad_tokens_are_refused() {
        let items = names(3);
        for token in [
            "zz",
            "00",
            &hex::encode("other:item-01"),
            &hex::encode([0xff, 0xfe]),
        ] {
            match page(2, token, &items) {
                Err(OpError::Invalid(m)) => assert!(m.contains("page_token"), "{m}"),
                other => panic!("{token}: {other:?}"),
            }
        }
        // Well formed, but for an item not in this list.
        match page(2, &encode_token("gone"), &items) {
            Err(OpError::Invalid(m)) => assert!(m.contains("page_token"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
