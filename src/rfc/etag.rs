//! Entity-tags (RFC 9110 §8.8.3) as bytes end to end: parsing (obs-text included), the tags
//! apicache generates and derives per coding, and the If-None-Match list a cache sends upstream.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::HeaderValue;
use sha2::{Digest, Sha256};

use super::coding::Coding;

/// A strong ETag derived from the sha256 of the identity body.
pub fn generate_etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    // 18 bytes = 144 bits: collision-safe and encodes to 24 chars with no padding.
    format!("\"{}\"", URL_SAFE_NO_PAD.encode(&digest[..18]))
}

/// The generated ETag as a header value.
fn generated(body: &[u8]) -> HeaderValue {
    HeaderValue::from_str(&generate_etag(body)).unwrap_or(HeaderValue::from_static("\"\""))
}

/// The ETag clients see for a stored body, and the origin's ETag kept for revalidating upstream.
///
/// An origin ETag that is a valid entity-tag (obs-text included) is kept byte for byte, made weak
/// when apicache decoded the origin's gzip body (`decoded`): the tag named the gzip bytes. One that
/// is not a valid entity-tag is treated as absent: clients get a generated tag, and it is never
/// sent back upstream, so the tag clients see and the validator sent upstream never disagree.
pub fn stored_etags(
    origin: Option<&HeaderValue>,
    decoded: bool,
    body: &[u8],
) -> (HeaderValue, Option<HeaderValue>) {
    match origin.filter(|e| is_entity_tag(e.as_bytes())) {
        Some(e) if decoded => (weaken(e), Some(e.clone())),
        Some(e) => (e.clone(), Some(e.clone())),
        None => (generated(body), None),
    }
}

/// The ETag of an encoded variant: the coding's suffix inserted before the closing quote.
pub fn variant_etag(etag: &HeaderValue, coding: Coding) -> HeaderValue {
    let suffix = coding.etag_suffix().as_bytes();
    if suffix.is_empty() {
        return etag.clone();
    }
    let b = etag.as_bytes();
    let mut out = Vec::with_capacity(b.len() + suffix.len());
    match b.strip_suffix(b"\"") {
        Some(head) if head.contains(&b'"') => {
            out.extend_from_slice(head);
            out.extend_from_slice(suffix);
            out.push(b'"');
        }
        // Not a quoted tag; appending still yields a distinct validator per coding.
        _ => {
            out.extend_from_slice(b);
            out.extend_from_slice(suffix);
        }
    }
    // Valid header bytes plus visible ASCII stay valid; the fallback is unreachable.
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| etag.clone())
}

/// The weak form of an ETag (unchanged if already weak): for a representation apicache decoded,
/// which is no longer byte-identical to what the origin's tag named.
pub fn weaken(etag: &HeaderValue) -> HeaderValue {
    if etag.as_bytes().starts_with(b"W/") {
        return etag.clone();
    }
    let mut out = b"W/".to_vec();
    out.extend_from_slice(etag.as_bytes());
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| etag.clone())
}

/// Whether `v` is exactly one entity-tag (surrounding whitespace allowed).
pub fn is_entity_tag(v: &[u8]) -> bool {
    parse_single_tag(v).is_some()
}

/// Strong comparison (RFC 9110 §8.8.3.2): both strong, same opaque bytes. Malformed never matches.
pub fn strong_match(a: &[u8], b: &[u8]) -> bool {
    match (parse_single_tag(a), parse_single_tag(b)) {
        (Some(a), Some(b)) => !a.weak && !b.weak && a.opaque == b.opaque,
        _ => false,
    }
}

/// Weak comparison: same opaque bytes, either strong or weak. Malformed never matches.
pub fn weak_match(a: &[u8], b: &[u8]) -> bool {
    match (parse_single_tag(a), parse_single_tag(b)) {
        (Some(a), Some(b)) => a.opaque == b.opaque,
        _ => false,
    }
}

/// Whether `v` is a weak entity-tag.
pub fn is_weak(v: &[u8]) -> bool {
    parse_single_tag(v).is_some_and(|t| t.weak)
}

/// An If-None-Match value listing `etags` (valid entity-tags only, duplicates once), at most
/// `max_tags` of them and `max_bytes` in all; `None` when none fits.
pub fn if_none_match_list<'a>(
    etags: impl IntoIterator<Item = &'a HeaderValue>,
    max_tags: usize,
    max_bytes: usize,
) -> Option<HeaderValue> {
    let mut out: Vec<u8> = Vec::new();
    let mut listed: Vec<&[u8]> = Vec::new();
    for e in etags {
        let tag = trim(e.as_bytes());
        if listed.len() >= max_tags {
            break;
        }
        if !is_entity_tag(tag) || listed.contains(&tag) {
            continue;
        }
        let sep = if out.is_empty() { 0 } else { 2 };
        if out.len() + sep + tag.len() > max_bytes {
            continue;
        }
        if sep > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(tag);
        listed.push(tag);
    }
    if out.is_empty() {
        return None;
    }
    HeaderValue::from_bytes(&out).ok()
}

/// A parsed entity-tag borrowed from its source bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntityTag<'a> {
    pub(crate) weak: bool,
    pub(crate) opaque: &'a [u8],
}

/// One member of an If-None-Match style list.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ListItem<'a> {
    Star,
    Tag(EntityTag<'a>),
    Malformed,
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// etagc = %x21 / %x23-7E / obs-text (RFC 9110 §8.8.3).
fn is_etagc(b: u8) -> bool {
    b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80
}

/// Parse an entity-tag at the start of `s`, returning it and the remaining bytes.
fn parse_tag_prefix(s: &[u8]) -> Option<(EntityTag<'_>, &[u8])> {
    let (weak, rest) = match s.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let rest = rest.strip_prefix(b"\"")?;
    let close = rest.iter().position(|&b| b == b'"')?;
    let opaque = &rest[..close];
    if !opaque.iter().all(|&b| is_etagc(b)) {
        return None;
    }
    Some((EntityTag { weak, opaque }, &rest[close + 1..]))
}

/// Parse a whole value that must be exactly one entity-tag (surrounding whitespace allowed).
pub(crate) fn parse_single_tag(s: &[u8]) -> Option<EntityTag<'_>> {
    let s = trim(s);
    match parse_tag_prefix(s) {
        Some((tag, [])) => Some(tag),
        _ => None,
    }
}

/// `s` without leading and trailing optional whitespace.
pub(crate) fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_ows(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_ows(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// Parse a comma list of entity-tags; commas are legal inside opaque tags, so no naive split.
pub(crate) fn parse_list(mut s: &[u8]) -> Vec<ListItem<'_>> {
    let mut items = Vec::new();
    loop {
        while let [b, rest @ ..] = s {
            if !(is_ows(*b) || *b == b',') {
                break;
            }
            s = rest;
        }
        if s.is_empty() {
            return items;
        }
        let parsed = if let Some(rest) = s.strip_prefix(b"*") {
            Some((ListItem::Star, rest))
        } else {
            parse_tag_prefix(s).map(|(tag, rest)| (ListItem::Tag(tag), rest))
        };
        let after = parsed.and_then(|(item, rest)| {
            let rest = trim(rest);
            (rest.is_empty() || rest[0] == b',').then_some((item, rest))
        });
        match after {
            Some((item, rest)) => {
                items.push(item);
                s = rest;
            }
            None => {
                // Resynchronise at the next comma so one bad member doesn't hide the rest.
                items.push(ListItem::Malformed);
                match s.iter().position(|&b| b == b',') {
                    Some(i) => s = &s[i..],
                    None => return items,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).expect("test header")
    }

    fn bytes(b: &[u8]) -> HeaderValue {
        HeaderValue::from_bytes(b).expect("test header")
    }

    #[test]
    fn etag_generation_is_deterministic_and_strong() {
        let a = generate_etag(b"{\"a\":1}");
        assert_eq!(a, generate_etag(b"{\"a\":1}"));
        assert_ne!(a, generate_etag(b"{\"a\":2}"));
        assert_eq!(a.len(), 26);
        assert!(a.starts_with('"') && a.ends_with('"'));
        assert!(a[1..25]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        // sha256("") = e3b0c442 98fc1c14 9afbf4c8 996fb924 27ae...; first 18 bytes, base64url.
        assert_eq!(generate_etag(b""), "\"47DEQpj8HBSa-_TImW-5JCeu\"");
        assert!(HeaderValue::from_str(&a).is_ok());
        assert!(parse_single_tag(a.as_bytes()).is_some_and(|t| !t.weak));
    }

    #[test]
    fn variant_etags() {
        let v = |e: &str, c| variant_etag(&hv(e), c);
        assert_eq!(v("\"abc\"", Coding::Gzip), "\"abc-gz\"");
        assert_eq!(v("\"abc\"", Coding::Br), "\"abc-br\"");
        assert_eq!(v("\"abc\"", Coding::Identity), "\"abc\"");
        assert_eq!(v("W/\"abc\"", Coding::Br), "W/\"abc-br\"");
        assert_eq!(weaken(&hv("\"abc\"")), "W/\"abc\"");
        assert_eq!(weaken(&hv("W/\"abc\"")), "W/\"abc\"");
        assert_eq!(v("W/\"abc\"", Coding::Gzip), "W/\"abc-gz\"");
        assert_eq!(v("W/\"abc\"", Coding::Identity), "W/\"abc\"");
        assert_eq!(v("\"\"", Coding::Gzip), "\"-gz\"");
        assert_eq!(v("abc", Coding::Gzip), "abc-gz");
        assert_eq!(v("\"", Coding::Br), "\"-br");
        assert_eq!(v("", Coding::Br), "-br");
        // obs-text survives, byte for byte.
        let obs = bytes(b"\"caf\xe9\"");
        assert_eq!(
            variant_etag(&obs, Coding::Gzip).as_bytes(),
            b"\"caf\xe9-gz\""
        );
        assert_eq!(weaken(&obs).as_bytes(), b"W/\"caf\xe9\"");
    }

    #[test]
    fn stored_etags_keep_valid_tags_as_bytes() {
        let obs = bytes(b"\"caf\xc3\xa9\"");
        let body = b"{}";
        let gen = hv(&generate_etag(body));
        // (origin ETag, decoded from gzip, ETag clients see, ETag sent upstream)
        let rows: Vec<(Option<HeaderValue>, bool, HeaderValue, Option<HeaderValue>)> = vec![
            (Some(hv("\"o\"")), false, hv("\"o\""), Some(hv("\"o\""))),
            (Some(hv("\"o\"")), true, hv("W/\"o\""), Some(hv("\"o\""))),
            (
                Some(hv("W/\"o\"")),
                true,
                hv("W/\"o\""),
                Some(hv("W/\"o\"")),
            ),
            (Some(obs.clone()), false, obs.clone(), Some(obs.clone())),
            (Some(obs.clone()), true, weaken(&obs), Some(obs.clone())),
            (None, false, gen.clone(), None),
            (None, true, gen.clone(), None),
            // Not entity-tags: replaced by a generated tag, never sent upstream.
            (Some(hv("abc")), false, gen.clone(), None),
            (Some(hv("\"a\"b\"")), false, gen.clone(), None),
            (Some(hv("\"a\", \"b\"")), false, gen.clone(), None),
            (Some(hv("")), true, gen.clone(), None),
        ];
        for (origin, decoded, client, upstream) in rows {
            let got = stored_etags(origin.as_ref(), decoded, body);
            assert_eq!(got, (client, upstream), "{origin:?} decoded={decoded}");
        }
    }

    #[test]
    fn comparisons() {
        assert!(strong_match(b"\"a\"", b"\"a\""));
        assert!(!strong_match(b"W/\"a\"", b"\"a\""));
        assert!(!strong_match(b"\"a\"", b"\"b\""));
        assert!(!strong_match(b"a", b"a"), "malformed never matches");
        assert!(weak_match(b"W/\"a\"", b"\"a\""));
        assert!(weak_match(b"\"caf\xe9\"", b" \"caf\xe9\""));
        assert!(!weak_match(b"\"caf\xe9\"", b"\"cafe\""));
        assert!(is_weak(b"W/\"a\"") && !is_weak(b"\"a\"") && !is_weak(b"W/a"));
    }

    #[test]
    fn if_none_match_lists_are_bounded() {
        let tags = [
            hv("\"a\""),
            hv("W/\"b\""),
            hv("bad"),
            hv("\"a\""),
            hv("\"ccc\""),
        ];
        assert_eq!(
            if_none_match_list(&tags, 16, 1024).unwrap(),
            "\"a\", W/\"b\", \"ccc\""
        );
        assert_eq!(
            if_none_match_list(&tags, 2, 1024).unwrap(),
            "\"a\", W/\"b\""
        );
        // A tag that would overflow the byte cap is skipped, later short ones still fit.
        assert_eq!(if_none_match_list(&tags, 16, 12).unwrap(), "\"a\", W/\"b\"");
        assert_eq!(if_none_match_list(&tags, 16, 2), None);
        assert_eq!(if_none_match_list(&tags[2..3], 16, 1024), None);
        let obs = bytes(b"\"\xff\"");
        assert_eq!(
            if_none_match_list([&obs], 1, 64).unwrap().as_bytes(),
            b"\"\xff\""
        );
    }

    #[test]
    fn list_parser_shapes() {
        let t = |weak, o: &'static str| {
            ListItem::Tag(EntityTag {
                weak,
                opaque: o.as_bytes(),
            })
        };
        assert_eq!(
            parse_list(b"\"a\", W/\"b\" ,*,,bad,\"\""),
            vec![
                t(false, "a"),
                t(true, "b"),
                ListItem::Star,
                ListItem::Malformed,
                t(false, "")
            ]
        );
        assert_eq!(parse_list(b" , ,"), vec![]);
        assert_eq!(parse_list(b"\"unterminated"), vec![ListItem::Malformed]);
    }
}
