//! Partial content (RFC 9111 §3.3–3.4): which 206 responses may be kept as a part of a
//! representation, which later ranges the kept parts can answer, and when parts with the same
//! strong validator add up to the complete body.
//!
//! `proxy::partial` acts on these: it keeps 206 answers to forwarded range requests and serves
//! later ranges from them.

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, StatusCode};

/// A strictly parsed `Content-Range: bytes first-last/complete` (RFC 9110 §14.4), complete
/// length known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    /// First byte position.
    pub first: u64,
    /// Last byte position, inclusive.
    pub last: u64,
    /// Length of the whole representation.
    pub complete: u64,
}

impl ContentRange {
    /// Bytes the range covers.
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Never empty: `first <= last` is checked on parsing.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Digits of a byte position: at most 18, so any value fits in a `u64` with room to add.
const MAX_DIGITS: usize = 18;

/// `bytes first-last/complete` exactly: the unit case-insensitive, one space, digits only, no
/// `*` for the complete length, `first <= last < complete`. Anything else is `None`.
pub fn parse_content_range(v: &HeaderValue) -> Option<ContentRange> {
    let s = v.to_str().ok()?;
    let (unit, rest) = s.split_once(' ')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let (range, complete) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let num = |d: &str| {
        let ok = !d.is_empty() && d.len() <= MAX_DIGITS && d.bytes().all(|b| b.is_ascii_digit());
        ok.then(|| d.parse::<u64>().ok()).flatten()
    };
    let r = ContentRange {
        first: num(first)?,
        last: num(last)?,
        complete: num(complete)?,
    };
    (r.first <= r.last && r.last < r.complete).then_some(r)
}

/// Why a 206 is not kept as a part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotPart {
    /// Not a 206.
    Status,
    /// No Content-Range, several, a multipart body, or one that does not parse strictly.
    ContentRange,
    /// No strong ETag: parts could not be shown to belong to one representation (§3.4).
    Validator,
    /// A content coding: parts of an encoded representation do not combine with identity ones.
    Encoded,
    /// The body is not exactly the bytes Content-Range announces.
    Length,
    /// The part alone is over the byte limit.
    TooLarge,
}

/// May this 206, with a body of `body_len` bytes, be kept as a part (at most `max_bytes`)?
/// Returns its range and strong ETag. Cache-Control storability is decided separately.
pub fn storable_part(
    status: StatusCode,
    headers: &HeaderMap,
    body_len: u64,
    max_bytes: u64,
) -> Result<(ContentRange, HeaderValue), NotPart> {
    if status != StatusCode::PARTIAL_CONTENT {
        return Err(NotPart::Status);
    }
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/")
        });
    let range = match one(headers, &header::CONTENT_RANGE) {
        Some(v) if !multipart => parse_content_range(v).ok_or(NotPart::ContentRange)?,
        _ => return Err(NotPart::ContentRange),
    };
    let etag = one(headers, &header::ETAG)
        .filter(|e| e.len() >= 2 && e.as_bytes()[0] == b'"' && e.as_bytes()[e.len() - 1] == b'"')
        .ok_or(NotPart::Validator)?;
    let coded = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if coded {
        return Err(NotPart::Encoded);
    }
    if range.len() != body_len {
        return Err(NotPart::Length);
    }
    if body_len > max_bytes {
        return Err(NotPart::TooLarge);
    }
    Ok((range, etag.clone()))
}

/// The only value of a field, if it has exactly one line.
fn one<'a>(headers: &'a HeaderMap, name: &header::HeaderName) -> Option<&'a HeaderValue> {
    let mut it = headers.get_all(name).iter();
    let v = it.next()?;
    it.next().is_none().then_some(v)
}

/// The kept parts of one representation: disjoint, non-adjacent byte ranges in order, all under
/// one strong ETag and complete length, at most `max_bytes` in all.
#[derive(Debug, Clone)]
pub struct Parts {
    etag: HeaderValue,
    complete: u64,
    max_bytes: u64,
    /// (first byte position, bytes), sorted, with gaps between them.
    ranges: Vec<(u64, Bytes)>,
}

/// Why a part was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddError {
    /// Another representation (ETag or complete length differ): the caller starts over with it.
    Mismatch,
    /// The parts would hold more than the byte limit.
    Full,
}

impl Parts {
    /// No parts yet of the representation with `etag` and `complete` bytes.
    pub fn new(etag: HeaderValue, complete: u64, max_bytes: u64) -> Self {
        Parts {
            etag,
            complete,
            max_bytes,
            ranges: Vec::new(),
        }
    }

    /// Add a part, merging it with the ranges it overlaps or touches. Overlapping bytes are the
    /// same under one strong validator (RFC 9110 §8.8.1); the new ones are kept.
    pub fn add(
        &mut self,
        etag: &HeaderValue,
        r: ContentRange,
        body: Bytes,
    ) -> Result<(), AddError> {
        if etag != self.etag || r.complete != self.complete {
            return Err(AddError::Mismatch);
        }
        debug_assert_eq!(r.len(), body.len() as u64);
        let touches =
            |start: u64, b: &Bytes| start <= r.last + 1 && r.first <= start + b.len() as u64;
        let (merge, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.ranges)
            .into_iter()
            .partition(|(s, b)| touches(*s, b));
        let first = merge
            .iter()
            .map(|(s, _)| *s)
            .chain([r.first])
            .min()
            .unwrap_or(r.first);
        let end = merge
            .iter()
            .map(|(s, b)| s + b.len() as u64)
            .chain([r.last + 1])
            .max()
            .unwrap_or(r.last + 1);
        let held: u64 = keep.iter().map(|(_, b)| b.len() as u64).sum();
        if held + (end - first) > self.max_bytes {
            self.ranges = merge.into_iter().chain(keep).collect();
            self.ranges.sort_by_key(|(s, _)| *s);
            return Err(AddError::Full);
        }
        let merged = if merge.is_empty() {
            body
        } else {
            let mut buf = BytesMut::zeroed((end - first) as usize);
            for (s, b) in &merge {
                let at = (s - first) as usize;
                buf[at..at + b.len()].copy_from_slice(b);
            }
            let at = (r.first - first) as usize;
            buf[at..at + body.len()].copy_from_slice(&body);
            buf.freeze()
        };
        self.ranges = keep;
        self.ranges.push((first, merged));
        self.ranges.sort_by_key(|(s, _)| *s);
        Ok(())
    }

    /// The bytes `first..=last`, if one kept range covers them all.
    pub fn covering(&self, first: u64, last: u64) -> Option<Bytes> {
        if first > last || last >= self.complete {
            return None;
        }
        self.ranges.iter().find_map(|(s, b)| {
            let end = s + b.len() as u64;
            (*s <= first && last < end).then(|| b.slice((first - s) as usize..=(last - s) as usize))
        })
    }

    /// The whole body, once the parts cover it: then it can be stored as a complete 200.
    pub fn complete_body(&self) -> Option<Bytes> {
        match self.ranges.as_slice() {
            [(0, b)] if b.len() as u64 == self.complete => Some(b.clone()),
            _ => None,
        }
    }

    /// The kept ranges, in order, with their bytes.
    pub fn ranges(&self) -> impl Iterator<Item = (ContentRange, &Bytes)> + '_ {
        self.ranges.iter().map(|(first, b)| {
            let last = first + b.len() as u64 - 1;
            let r = ContentRange {
                first: *first,
                last,
                complete: self.complete,
            };
            (r, b)
        })
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.ranges.iter().map(|(_, b)| b.len() as u64).sum()
    }

    /// The strong ETag the parts share.
    pub fn etag(&self) -> &HeaderValue {
        &self.etag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    fn cr(first: u64, last: u64, complete: u64) -> ContentRange {
        ContentRange {
            first,
            last,
            complete,
        }
    }

    #[test]
    fn content_range_is_parsed_strictly() {
        let rows: &[(&str, Option<ContentRange>)] = &[
            ("bytes 0-9/100", Some(cr(0, 9, 100))),
            ("Bytes 90-99/100", Some(cr(90, 99, 100))),
            ("bytes 0-0/1", Some(cr(0, 0, 1))),
            ("bytes 0-9/*", None),
            ("bytes */100", None),
            ("bytes 9-0/100", None),
            ("bytes 0-100/100", None),
            ("bytes  0-9/100", None),
            ("bytes 0-9/100 ", None),
            ("bytes +0-9/100", None),
            ("bytes 0-9/-100", None),
            ("bytes 0x0-9/100", None),
            ("items 0-9/100", None),
            ("bytes 0-9", None),
            ("bytes 0-999999999999999999/9999999999999999999", None),
            (
                "bytes 0-99999999999999998/999999999999999999",
                Some(cr(0, 99999999999999998, 999999999999999999)),
            ),
        ];
        for (v, want) in rows {
            assert_eq!(parse_content_range(&hv(v)), *want, "{v:?}");
        }
    }

    #[test]
    fn storable_part_table() {
        let base = [
            ("content-range", "bytes 0-3/10"),
            ("etag", "\"a\""),
            ("content-type", "application/octet-stream"),
        ];
        let with = |change: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in base.iter().chain(change) {
                let name = header::HeaderName::from_bytes(k.as_bytes()).unwrap();
                if change.iter().any(|(c, _)| c == k) && base.iter().any(|(b, _)| b == k) {
                    h.remove(&name);
                }
                if !v.is_empty() {
                    h.append(name, hv(v));
                }
            }
            h
        };
        let ok = Ok((cr(0, 3, 10), hv("\"a\"")));
        // (row, status, header changes, body length, limit, expected)
        type Row<'a> = (
            &'a str,
            u16,
            &'a [(&'a str, &'a str)],
            u64,
            u64,
            Result<(ContentRange, HeaderValue), NotPart>,
        );
        let rows: &[Row] = &[
            ("a single range", 206, &[], 4, 100, ok.clone()),
            ("a 200", 200, &[], 4, 100, Err(NotPart::Status)),
            (
                "no Content-Range",
                206,
                &[("content-range", "")],
                4,
                100,
                Err(NotPart::ContentRange),
            ),
            (
                "unknown complete length",
                206,
                &[("content-range", "bytes 0-3/*")],
                4,
                100,
                Err(NotPart::ContentRange),
            ),
            (
                "multipart",
                206,
                &[("content-type", "multipart/byteranges; boundary=x")],
                4,
                100,
                Err(NotPart::ContentRange),
            ),
            (
                "weak ETag",
                206,
                &[("etag", "W/\"a\"")],
                4,
                100,
                Err(NotPart::Validator),
            ),
            (
                "no ETag",
                206,
                &[("etag", "")],
                4,
                100,
                Err(NotPart::Validator),
            ),
            (
                "gzip",
                206,
                &[("content-encoding", "gzip")],
                4,
                100,
                Err(NotPart::Encoded),
            ),
            ("short body", 206, &[], 3, 100, Err(NotPart::Length)),
            ("long body", 206, &[], 5, 100, Err(NotPart::Length)),
            ("over the limit", 206, &[], 4, 3, Err(NotPart::TooLarge)),
        ];
        for (row, status, change, len, max, want) in rows {
            let got = storable_part(
                StatusCode::from_u16(*status).unwrap(),
                &with(change),
                *len,
                *max,
            );
            assert_eq!(got, *want, "{row}");
        }
    }

    #[test]
    fn parts_merge_cover_and_complete() {
        let body: Vec<u8> = (0..20u8).collect();
        let part = |first: u64, last: u64| {
            (
                cr(first, last, 20),
                Bytes::copy_from_slice(&body[first as usize..=last as usize]),
            )
        };
        let etag = hv("\"a\"");
        let mut p = Parts::new(etag.clone(), 20, 20);
        let (r, b) = part(5, 9);
        p.add(&etag, r, b).unwrap();
        assert_eq!(p.covering(5, 9).unwrap(), &body[5..10]);
        assert_eq!(p.covering(6, 7).unwrap(), &body[6..8]);
        assert_eq!(p.covering(4, 9), None);
        assert_eq!(p.covering(9, 10), None);
        let (r, b) = part(12, 14);
        p.add(&etag, r, b).unwrap();
        assert_eq!(p.covering(9, 12), None, "a gap at 10-11");
        // Adjacent (10-11) and overlapping (8-12) parts join the ranges around them.
        let (r, b) = part(8, 11);
        p.add(&etag, r, b).unwrap();
        assert_eq!(p.covering(5, 14).unwrap(), &body[5..15]);
        assert_eq!(p.bytes(), 10);
        assert_eq!(p.complete_body(), None);
        // Another representation is not mixed in.
        let (r, b) = part(0, 4);
        assert_eq!(p.add(&hv("\"b\""), r, b.clone()), Err(AddError::Mismatch));
        assert_eq!(
            p.add(&etag, cr(0, 4, 21), b.clone()),
            Err(AddError::Mismatch)
        );
        p.add(&etag, r, b).unwrap();
        assert_eq!(p.complete_body(), None);
        let (r, b) = part(15, 19);
        p.add(&etag, r, b).unwrap();
        assert_eq!(p.complete_body().unwrap(), &body[..]);
        assert_eq!(p.covering(0, 19).unwrap(), &body[..]);
    }

    #[test]
    fn parts_stay_within_their_byte_limit() {
        let etag = hv("\"a\"");
        let mut p = Parts::new(etag.clone(), 100, 8);
        p.add(&etag, cr(0, 4, 100), Bytes::from_static(b"01234"))
            .unwrap();
        let more = p.add(&etag, cr(50, 53, 100), Bytes::from_static(b"abcd"));
        assert_eq!(more, Err(AddError::Full));
        assert_eq!(p.bytes(), 5, "the kept part is untouched");
        assert_eq!(p.covering(0, 4).unwrap(), &b"01234"[..]);
        p.add(&etag, cr(5, 7, 100), Bytes::from_static(b"567"))
            .unwrap();
        assert_eq!(p.covering(0, 7).unwrap(), &b"01234567"[..]);
    }
}
