//! Which stored response an origin answer updates: a 304 to the cache's conditional request
//! (RFC 9111 §4.3.4) and a 200 to a HEAD (§4.3.5).

use http::{header, HeaderMap, StatusCode};

use super::etag::{parse_single_tag, strong_match, weak_match};

/// The validators of one response, as bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Validators<'a> {
    /// ETag (the origin's own, for a stored response).
    pub etag: Option<&'a [u8]>,
    /// Last-Modified.
    pub last_modified: Option<&'a [u8]>,
}

impl<'a> Validators<'a> {
    /// The validators in `h`.
    pub fn of(h: &'a HeaderMap) -> Self {
        Validators {
            etag: h.get(header::ETAG).map(|v| v.as_bytes()),
            last_modified: h.get(header::LAST_MODIFIED).map(|v| v.as_bytes()),
        }
    }

    /// Whether there is neither.
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// Same Last-Modified: both present and byte-equal (a cache compares what it stored).
fn same_date(a: Option<&[u8]>, b: Option<&[u8]>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a.trim_ascii() == b.trim_ascii())
}

/// RFC 9111 §4.3.4: the stored response (index into `stored`, newest first) a 304 updates, or
/// `None`: then it updates nothing, and the cache asks again unconditionally.
///
/// - a strong ETag selects a stored response with the same strong ETag, and nothing else;
/// - a weak ETag selects the newest one whose ETag matches weakly;
/// - a 304 with an ETag that the stored responses lack falls back to Last-Modified;
/// - without an ETag, an equal Last-Modified selects;
/// - without any validator, it can only be about the one stored response the request was built
///   from: selected when the cache's request named exactly one (§4.3.4's third case assumes a
///   stored response without validators; this cache only sends validators from one).
pub fn select_304(stored: &[Validators<'_>], resp: Validators<'_>) -> Option<usize> {
    // A malformed tag counts as absent, as it does when a response is stored.
    let resp = Validators {
        etag: resp.etag.filter(|t| parse_single_tag(t).is_some()),
        ..resp
    };
    if let Some(tag) = resp.etag {
        let parsed = parse_single_tag(tag)?;
        let by_tag = stored.iter().position(|s| {
            s.etag.is_some_and(|e| {
                if parsed.weak {
                    weak_match(e, tag)
                } else {
                    strong_match(e, tag)
                }
            })
        });
        if by_tag.is_some() || stored.iter().any(|s| s.etag.is_some()) {
            return by_tag;
        }
    }
    if resp.last_modified.is_some() {
        return stored
            .iter()
            .position(|s| same_date(s.last_modified, resp.last_modified));
    }
    (resp.etag.is_none() && stored.len() == 1).then_some(0)
}

/// What a HEAD response does to a stored GET response (RFC 9111 §4.3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadEffect {
    /// Same representation: its headers and freshness update the stored response (like a 304).
    Update,
    /// A different representation: the stored response must not be used again.
    Invalidate,
    /// Not a 200: says nothing about the stored response.
    Nothing,
}

/// RFC 9111 §4.3.5 for a HEAD answered `status` with `resp`'s validators, against a stored GET
/// response with `stored`'s validators and an identity body of `stored_len` bytes.
///
/// Validators decide, ETag first (weak comparison: a HEAD is about the same representation, and
/// apicache weakens tags it decoded), else Last-Modified; `resp_len` (the HEAD's Content-Length,
/// only when it names identity bytes) must then also agree. A HEAD with neither validator matches
/// on Content-Length alone, and with nothing to compare at all it cannot confirm the stored body.
pub fn head_effect(
    status: StatusCode,
    stored: Validators<'_>,
    stored_len: u64,
    resp: Validators<'_>,
    resp_len: Option<u64>,
) -> HeadEffect {
    if status != StatusCode::OK {
        return HeadEffect::Nothing;
    }
    let validators = match (resp.etag, resp.last_modified) {
        (Some(e), _) => Some(stored.etag.is_some_and(|s| weak_match(s, e))),
        (None, Some(_)) => Some(same_date(stored.last_modified, resp.last_modified)),
        (None, None) => None,
    };
    let length = resp_len.map(|n| n == stored_len);
    match (validators, length) {
        (Some(true), None | Some(true)) | (None, Some(true)) => HeadEffect::Update,
        _ => HeadEffect::Invalidate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LM1: &str = "Wed, 21 Oct 2015 07:28:00 GMT";
    const LM2: &str = "Thu, 22 Oct 2015 07:28:00 GMT";

    fn v<'a>(etag: Option<&'a str>, lm: Option<&'a str>) -> Validators<'a> {
        Validators {
            etag: etag.map(str::as_bytes),
            last_modified: lm.map(str::as_bytes),
        }
    }

    #[test]
    fn a_304_selects_per_rfc_9111_4_3_4() {
        let e = |t| v(Some(t), None);
        let lm = |d| v(None, Some(d));
        // (stored, newest first; the 304's validators; selected)
        let rows: Vec<(Vec<Validators>, Validators, Option<usize>)> = vec![
            (vec![e("\"a\"")], e("\"a\""), Some(0)),
            (vec![e("\"a\"")], e("\"b\""), None),
            // A strong tag needs a strong stored tag.
            (vec![e("W/\"a\"")], e("\"a\""), None),
            // A weak tag matches weakly: the newest such stored response.
            (vec![e("\"a\"")], e("W/\"a\""), Some(0)),
            (
                vec![e("\"b\""), e("\"a\""), e("W/\"a\"")],
                e("W/\"a\""),
                Some(1),
            ),
            (vec![e("\"b\""), e("\"a\"")], e("\"a\""), Some(1)),
            (vec![e("\"b\""), e("\"c\"")], e("\"a\""), None),
            // A tag that differs is not rescued by an equal date.
            (
                vec![v(Some("\"a\""), Some(LM1))],
                v(Some("\"b\""), Some(LM1)),
                None,
            ),
            (
                vec![v(Some("\"a\""), Some(LM1))],
                v(Some("\"a\""), Some(LM2)),
                Some(0),
            ),
            // Stored without ETags: the 304's new ETag falls back to Last-Modified.
            (vec![lm(LM1)], v(Some("\"n\""), Some(LM1)), Some(0)),
            (vec![lm(LM1)], v(Some("\"n\""), None), None),
            (vec![lm(LM1)], lm(LM1), Some(0)),
            (vec![lm(LM1)], lm(LM2), None),
            (vec![e("\"a\"")], lm(LM1), None),
            (vec![lm(LM2), lm(LM1)], lm(LM1), Some(1)),
            // No validator: only about the one stored response the request was built from.
            (vec![e("\"a\"")], v(None, None), Some(0)),
            (vec![lm(LM1)], v(None, None), Some(0)),
            (vec![e("\"a\""), e("\"b\"")], v(None, None), None),
            (vec![], v(None, None), None),
            // A malformed tag counts as absent: Last-Modified decides, as if none were sent.
            (vec![lm(LM1)], v(Some("abc"), Some(LM1)), Some(0)),
            (vec![e("\"a\"")], v(Some("abc"), None), Some(0)),
            (vec![e("\"a\""), e("\"b\"")], v(Some("abc"), None), None),
            (vec![], e("\"a\""), None),
            // obs-text is compared as bytes.
            (vec![e("\"caf\u{e9}\"")], e("\"caf\u{e9}\""), Some(0)),
            (vec![e("\"caf\u{e9}\"")], e("\"cafe\""), None),
        ];
        for (stored, resp, want) in rows {
            assert_eq!(select_304(&stored, resp), want, "{stored:?} <- {resp:?}");
        }
    }

    #[test]
    fn a_head_updates_or_invalidates_per_rfc_9111_4_3_5() {
        use HeadEffect::*;
        let ok = StatusCode::OK;
        let stored = v(Some("\"a\""), Some(LM1));
        // (status, stored, stored length, HEAD validators, HEAD Content-Length, effect)
        let rows = [
            (ok, stored, 10, v(Some("\"a\""), None), None, Update),
            (
                ok,
                stored,
                10,
                v(Some("\"a\""), Some(LM1)),
                Some(10),
                Update,
            ),
            (ok, stored, 10, v(Some("W/\"a\""), None), None, Update),
            (
                ok,
                stored,
                10,
                v(Some("\"b\""), Some(LM1)),
                None,
                Invalidate,
            ),
            (ok, stored, 10, v(Some("\"a\""), None), Some(11), Invalidate),
            (ok, stored, 10, v(None, Some(LM1)), None, Update),
            (ok, stored, 10, v(None, Some(LM2)), None, Invalidate),
            (
                ok,
                v(None, Some(LM1)),
                10,
                v(Some("\"a\""), None),
                None,
                Invalidate,
            ),
            // Neither validator: Content-Length alone.
            (ok, v(None, None), 10, v(None, None), Some(10), Update),
            (ok, v(None, None), 10, v(None, None), Some(9), Invalidate),
            (ok, stored, 10, v(None, None), Some(10), Update),
            (ok, stored, 10, v(None, None), None, Invalidate),
            // Only a 200 speaks for the stored GET response.
            (
                StatusCode::NOT_FOUND,
                stored,
                10,
                v(Some("\"b\""), None),
                None,
                Nothing,
            ),
            (
                StatusCode::NOT_MODIFIED,
                stored,
                10,
                v(Some("\"b\""), None),
                None,
                Nothing,
            ),
        ];
        for (status, stored, len, resp, resp_len, want) in rows {
            let got = head_effect(status, stored, len, resp, resp_len);
            assert_eq!(
                got, want,
                "{status} {stored:?}/{len} <- {resp:?}/{resp_len:?}"
            );
        }
    }
}
