//! Validators (ETag, Last-Modified) and conditional/range request evaluation (RFC 9110 §8.8, §13, §14).

use http::{header, HeaderMap, HeaderValue};

use super::etag::{parse_list, parse_single_tag, trim, ListItem};
// Where they were first defined; the entity-tag code lives in `etag`.
pub use super::etag::{generate_etag, variant_etag, weaken};

/// Weak comparison of If-None-Match against the current ETags (bytes, obs-text included).
pub fn none_match<'a>(
    if_none_match: impl Iterator<Item = &'a HeaderValue>,
    etags: &[&[u8]],
) -> bool {
    let current: Vec<_> = etags.iter().filter_map(|e| parse_single_tag(e)).collect();
    for value in if_none_match {
        for item in parse_list(value.as_bytes()) {
            match item {
                ListItem::Star if !etags.is_empty() => return true,
                ListItem::Tag(tag) if current.iter().any(|c| c.opaque == tag.opaque) => {
                    return true
                }
                _ => {}
            }
        }
    }
    false
}

/// Whether a GET/HEAD's preconditions make a 2xx answer a `304` (RFC 9110 §13.2.2):
/// If-None-Match against `etags` (the representation's ETags) when present, otherwise
/// If-Modified-Since against `last_modified`.
pub fn not_modified(req: &HeaderMap, etags: &[&[u8]], last_modified: Option<&HeaderValue>) -> bool {
    let inm = req.get_all(header::IF_NONE_MATCH);
    if inm.iter().next().is_some() {
        return none_match(inm.iter(), etags);
    }
    req.get(header::IF_MODIFIED_SINCE)
        .is_some_and(|ims| not_modified_since(ims, last_modified))
}

fn parse_date(value: &HeaderValue) -> Option<std::time::SystemTime> {
    super::date::parse(value.to_str().ok()?)
}

/// True when the representation is NOT modified since the If-Modified-Since date.
pub fn not_modified_since(
    if_modified_since: &HeaderValue,
    last_modified: Option<&HeaderValue>,
) -> bool {
    match (
        parse_date(if_modified_since),
        last_modified.and_then(parse_date),
    ) {
        (Some(ims), Some(lm)) => lm <= ims,
        _ => false,
    }
}

/// The result of evaluating a Range request against a complete representation.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeOutcome {
    /// Ignore Range and send the whole representation (200).
    Full,
    /// Send the inclusive byte range `start..=end` (206).
    Partial {
        /// First byte offset.
        start: u64,
        /// Last byte offset, inclusive.
        end: u64,
    },
    /// The range cannot be satisfied (416).
    Unsatisfiable,
}

/// A syntactically valid byte-range-spec, with over-long numbers saturated.
enum ByteRange {
    FromTo(u64, u64),
    From(u64),
    Suffix(u64),
}

/// Parse 1*DIGIT, saturating so huge offsets clamp instead of making the header "malformed".
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

/// Parse a Range header that asks for exactly one byte range; `None` means "ignore Range".
fn parse_single_byte_range(range: &HeaderValue) -> Option<ByteRange> {
    let s = range.to_str().ok()?.trim();
    let (unit, set) = s.split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = set.split(',').map(str::trim).filter(|p| !p.is_empty());
    let spec = specs.next()?;
    if specs.next().is_some() {
        // Serving multipart/byteranges isn't worth it for an API cache; RFC allows ignoring.
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        return parse_digits(last).map(ByteRange::Suffix);
    }
    let start = parse_digits(first)?;
    if last.is_empty() {
        return Some(ByteRange::From(start));
    }
    let end = parse_digits(last)?;
    // last-pos < first-pos makes the range invalid (RFC 9110 §14.1.1), i.e. ignorable.
    (start <= end).then_some(ByteRange::FromTo(start, end))
}

/// Whether If-Range allows the Range to be honoured (RFC 9110 §13.1.5).
fn if_range_matches(
    if_range: &HeaderValue,
    etag: Option<&[u8]>,
    last_modified: Option<&HeaderValue>,
) -> bool {
    let bytes = trim(if_range.as_bytes());
    if bytes.starts_with(b"\"") || bytes.starts_with(b"W/") {
        let (Some(req), Some(cur)) = (parse_single_tag(bytes), etag.and_then(parse_single_tag))
        else {
            return false;
        };
        // Strong comparison: both tags strong and opaque parts identical.
        return !req.weak && !cur.weak && req.opaque == cur.opaque;
    }
    match (parse_date(if_range), last_modified.and_then(parse_date)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Evaluate a Range header (with optional If-Range) for a complete representation of `len` bytes.
pub fn evaluate_range(
    range: &HeaderValue,
    if_range: Option<&HeaderValue>,
    len: u64,
    etag: Option<&[u8]>,
    last_modified: Option<&HeaderValue>,
) -> RangeOutcome {
    if let Some(ir) = if_range {
        if !if_range_matches(ir, etag, last_modified) {
            return RangeOutcome::Full;
        }
    }
    let Some(spec) = parse_single_byte_range(range) else {
        return RangeOutcome::Full;
    };
    if len == 0 {
        return RangeOutcome::Unsatisfiable;
    }
    let last = len - 1;
    match spec {
        ByteRange::FromTo(start, _) | ByteRange::From(start) if start >= len => {
            RangeOutcome::Unsatisfiable
        }
        ByteRange::FromTo(start, end) => RangeOutcome::Partial {
            start,
            end: end.min(last),
        },
        ByteRange::From(start) => RangeOutcome::Partial { start, end: last },
        ByteRange::Suffix(0) => RangeOutcome::Unsatisfiable,
        ByteRange::Suffix(n) => RangeOutcome::Partial {
            start: len.saturating_sub(n),
            end: last,
        },
    }
}

/// Content-Range value for a 206 response: `bytes start-end/len`.
pub fn content_range(start: u64, end: u64, len: u64) -> String {
    format!("bytes {start}-{end}/{len}")
}

/// Content-Range value for a 416 response: `bytes */len`.
pub fn unsatisfied_range(len: u64) -> String {
    format!("bytes */{len}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).expect("test header")
    }

    fn inm(lines: &[&str], etags: &[&str]) -> bool {
        let values: Vec<HeaderValue> = lines.iter().map(|s| hv(s)).collect();
        let etags: Vec<&[u8]> = etags.iter().map(|e| e.as_bytes()).collect();
        none_match(values.iter(), &etags)
    }

    const LM: &str = "Wed, 21 Oct 2015 07:28:00 GMT";

    #[test]
    fn none_match_basic() {
        assert!(inm(&["\"x\""], &["\"x\""]));
        assert!(!inm(&["\"x\""], &["\"y\""]));
        assert!(!inm(&["\"x\""], &[]));
        assert!(inm(&["\"a\", \"b\", \"x\""], &["\"x\""]));
        assert!(inm(&["\"a\",\"x\""], &["\"x\""]));
        assert!(inm(&["  \"a\" ,\t \"x\"  "], &["\"x\""]));
        assert!(inm(&["\"a\""], &["\"b\"", "\"a\""]));
        assert!(
            !inm(&["\"X\""], &["\"x\""]),
            "opaque tags are case-sensitive"
        );
        assert!(!inm(&[], &["\"x\""]));
        assert!(!inm(&[""], &["\"x\""]));
    }

    #[test]
    fn none_match_weak_comparison() {
        assert!(inm(&["W/\"x\""], &["\"x\""]));
        assert!(inm(&["\"x\""], &["W/\"x\""]));
        assert!(inm(&["W/\"x\""], &["W/\"x\""]));
        assert!(inm(&["\"a\", W/\"x\""], &["\"x\""]));
        assert!(!inm(&["w/\"x\""], &["\"x\""]), "W/ is case-sensitive");
    }

    #[test]
    fn none_match_star() {
        assert!(inm(&["*"], &["\"x\""]));
        assert!(inm(&[" * "], &["\"anything\""]));
        assert!(!inm(&["*"], &[]));
    }

    #[test]
    fn none_match_multiple_lines() {
        assert!(inm(&["\"a\"", "\"b\", \"x\""], &["\"x\""]));
        assert!(inm(&["\"a\"", "*"], &["\"x\""]));
        assert!(!inm(&["\"a\"", "\"b\""], &["\"x\""]));
    }

    #[test]
    fn none_match_commas_inside_tags() {
        assert!(inm(&["\"a,b\""], &["\"a,b\""]));
        assert!(!inm(&["\"a,b\""], &["\"a\""]));
        assert!(!inm(&["\"a,b\""], &["\"b\""]));
    }

    #[test]
    fn none_match_malformed_never_matches() {
        assert!(!inm(&["x"], &["x"]));
        assert!(!inm(&["x"], &["\"x\""]));
        assert!(!inm(&["\"x"], &["\"x\""]));
        assert!(!inm(&["\"x\"y"], &["\"x\""]));
        assert!(!inm(&["W/x"], &["\"x\""]));
        assert!(!inm(&["W/ \"x\""], &["\"x\""]));
        assert!(!inm(&["**"], &["\"x\""]));
        assert!(!inm(&["\"x\""], &["x"]), "malformed current etag");
        // A bad member doesn't hide later good ones.
        assert!(inm(&["garbage, \"x\""], &["\"x\""]));
        assert!(inm(&["\"y\"junk, \"x\""], &["\"x\""]));
        let obs = HeaderValue::from_bytes(b"\"caf\xe9\"").expect("obs-text allowed");
        assert!(!none_match([&obs].into_iter(), &[b"\"cafe\""]));
        assert!(
            none_match([&obs].into_iter(), &[b"W/\"caf\xe9\""]),
            "obs-text compared as bytes"
        );
    }

    #[test]
    fn modified_since() {
        let ims = hv(LM);
        assert!(not_modified_since(&ims, Some(&hv(LM))));
        assert!(not_modified_since(
            &ims,
            Some(&hv("Tue, 20 Oct 2015 07:28:00 GMT"))
        ));
        assert!(!not_modified_since(
            &ims,
            Some(&hv("Wed, 21 Oct 2015 07:28:01 GMT"))
        ));
        assert!(!not_modified_since(&ims, None));
        assert!(!not_modified_since(&hv("yesterday"), Some(&hv(LM))));
        assert!(!not_modified_since(&ims, Some(&hv("garbage"))));
        assert!(!not_modified_since(&hv(""), Some(&hv(LM))));
        // Obsolete formats are still accepted by recipients (RFC 9110 §5.6.7).
        assert!(not_modified_since(
            &hv("Wednesday, 21-Oct-15 07:28:00 GMT"),
            Some(&hv(LM))
        ));
        assert!(not_modified_since(
            &hv("Wed Oct 21 07:28:00 2015"),
            Some(&hv(LM))
        ));
        let bin = HeaderValue::from_bytes(b"Wed, 21 Oct 2015 07:28:00 GMT\xff").expect("obs");
        assert!(!not_modified_since(&bin, Some(&hv(LM))));
    }

    fn range(r: &str, len: u64) -> RangeOutcome {
        evaluate_range(&hv(r), None, len, None, None)
    }

    fn p(start: u64, end: u64) -> RangeOutcome {
        RangeOutcome::Partial { start, end }
    }

    #[test]
    fn range_single() {
        use RangeOutcome::*;
        assert_eq!(range("bytes=0-99", 1000), p(0, 99));
        assert_eq!(range("bytes=0-0", 1000), p(0, 0));
        assert_eq!(range("bytes=500-", 1000), p(500, 999));
        assert_eq!(range("bytes=-100", 1000), p(900, 999));
        assert_eq!(range("bytes=-1000", 1000), p(0, 999));
        assert_eq!(range("bytes=-5000", 1000), p(0, 999));
        assert_eq!(range("bytes=900-5000", 1000), p(900, 999));
        assert_eq!(range("bytes=999-999", 1000), p(999, 999));
        assert_eq!(range("bytes=999-", 1000), p(999, 999));
        assert_eq!(range("BYTES=1-2", 1000), p(1, 2));
        assert_eq!(range(" bytes = 1 - 2 ", 1000), p(1, 2));
        assert_eq!(range("bytes=1-2,", 1000), p(1, 2));
        assert_eq!(range("bytes=0-99999999999999999999999", 10), p(0, 9));
        assert_eq!(range("bytes=-99999999999999999999999", 10), p(0, 9));
        assert_eq!(range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(range("bytes=1000-2000", 1000), Unsatisfiable);
        assert_eq!(range("bytes=99999999999999999999999-", 10), Unsatisfiable);
        assert_eq!(range("bytes=-0", 1000), Unsatisfiable);
    }

    #[test]
    fn range_zero_length() {
        use RangeOutcome::*;
        assert_eq!(range("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(range("bytes=-5", 0), Unsatisfiable);
        assert_eq!(range("bytes=garbage", 0), Full);
        assert_eq!(range("bytes=0-1,2-3", 0), Full);
    }

    #[test]
    fn range_ignored_cases() {
        use RangeOutcome::*;
        for r in [
            "bytes=0-1,5-6",
            "bytes=0-1, -5",
            "items=0-1",
            "bytes 0-1",
            "bytes=",
            "bytes=-",
            "bytes=abc",
            "bytes=5-1",
            "bytes=+1-2",
            "bytes=1-+2",
            "bytes=0x1-2",
            "bytes=1--2",
            "bytes=1-2-3",
            "bytes=1 2-3",
            "=0-1",
            "",
            "garbage",
        ] {
            assert_eq!(range(r, 1000), Full, "{r:?}");
        }
        let bin = HeaderValue::from_bytes(b"bytes=0-1\xff").expect("obs");
        assert_eq!(evaluate_range(&bin, None, 10, None, None), Full);
    }

    #[test]
    fn if_range_etag() {
        use RangeOutcome::*;
        let r = hv("bytes=0-9");
        let eval = |ir: &str, etag: Option<&str>| {
            evaluate_range(&r, Some(&hv(ir)), 100, etag.map(str::as_bytes), None)
        };
        assert_eq!(eval("\"abc\"", Some("\"abc\"")), p(0, 9));
        assert_eq!(eval(" \"abc\" ", Some("\"abc\"")), p(0, 9));
        assert_eq!(eval("\"abc\"", Some("\"xyz\"")), Full);
        assert_eq!(eval("\"abc\"", None), Full);
        assert_eq!(
            eval("W/\"abc\"", Some("\"abc\"")),
            Full,
            "weak If-Range never matches"
        );
        assert_eq!(eval("W/\"abc\"", Some("W/\"abc\"")), Full);
        assert_eq!(eval("\"abc\"", Some("W/\"abc\"")), Full, "weak current tag");
        assert_eq!(eval("\"abc", Some("\"abc\"")), Full);
        assert_eq!(eval("\"abc\", \"def\"", Some("\"abc\"")), Full);
        // If-Range failing beats an unsatisfiable range: send the full representation.
        let far = hv("bytes=500-");
        assert_eq!(
            evaluate_range(&far, Some(&hv("\"x\"")), 100, Some(b"\"y\""), None),
            Full
        );
        assert_eq!(
            evaluate_range(&far, Some(&hv("\"x\"")), 100, Some(b"\"x\""), None),
            Unsatisfiable
        );
    }

    #[test]
    fn if_range_date() {
        use RangeOutcome::*;
        let r = hv("bytes=10-19");
        let lm = hv(LM);
        let eval = |ir: &str, lm: Option<&HeaderValue>| {
            evaluate_range(&r, Some(&hv(ir)), 100, Some(b"\"abc\""), lm)
        };
        assert_eq!(eval(LM, Some(&lm)), p(10, 19));
        assert_eq!(eval("Wed, 21 Oct 2015 07:28:01 GMT", Some(&lm)), Full);
        assert_eq!(eval("Tue, 20 Oct 2015 07:28:00 GMT", Some(&lm)), Full);
        assert_eq!(eval(LM, None), Full);
        assert_eq!(eval("not a date", Some(&lm)), Full);
        assert_eq!(eval(LM, Some(&hv("garbage"))), Full);
        assert_eq!(eval("", Some(&lm)), Full);
    }

    #[test]
    fn content_range_values() {
        assert_eq!(content_range(0, 99, 1000), "bytes 0-99/1000");
        assert_eq!(content_range(999, 999, 1000), "bytes 999-999/1000");
        assert_eq!(unsatisfied_range(1000), "bytes */1000");
        assert_eq!(unsatisfied_range(0), "bytes */0");
        assert!(HeaderValue::from_str(&content_range(1, 2, 3)).is_ok());
    }
}
