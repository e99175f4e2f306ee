//! Request ids: the client's `X-Request-Id` when it is safe to log and forward, otherwise one
//! generated here. The id goes to the origin, back to the client and into the access log; it is
//! never part of a cache key, and an origin's echo of it is never stored.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use http::{HeaderMap, HeaderName, HeaderValue};

/// The request id field.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-sent id kept (longer ones are replaced).
pub const MAX_LEN: usize = 128;

/// The client's id when there is exactly one, 1–[`MAX_LEN`] bytes of ASCII letters, digits and
/// `- _ . : / + = @`: no space, quote or backslash, so it cannot split or forge a log field.
pub fn accept(h: &HeaderMap) -> Option<HeaderValue> {
    let mut lines = h.get_all(REQUEST_ID).iter();
    let (Some(v), None) = (lines.next(), lines.next()) else {
        return None;
    };
    let b = v.as_bytes();
    let ok = (1..=MAX_LEN).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.:/+=@".contains(c));
    ok.then(|| v.clone())
}

/// Makes ids unique within the process and, by a random prefix, across processes: 32 hex digits
/// (the size of a W3C trace id), a prefix and a counter.
pub struct Generator {
    prefix: u64,
    next: AtomicU64,
}

impl Default for Generator {
    fn default() -> Self {
        // std's RandomState is seeded from the OS; the pid and time make two processes that
        // share a seed (there are none in practice) differ anyway.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        h.write_u128(now.map_or(0, |d| d.as_nanos()));
        Generator {
            prefix: h.finish(),
            next: AtomicU64::new(0),
        }
    }
}

impl Generator {
    /// A new id.
    pub fn next(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Relaxed);
        let mut buf = [0u8; 32];
        hex_into(&mut buf[..16], self.prefix);
        hex_into(&mut buf[16..], n);
        HeaderValue::from_bytes(&buf).expect("hex digits are a valid header value")
    }

    /// The client's id if [`accept`]able, otherwise a new one.
    pub fn for_request(&self, h: &HeaderMap) -> HeaderValue {
        accept(h).unwrap_or_else(|| self.next())
    }
}

/// `v` as 16 lowercase hex digits.
fn hex_into(out: &mut [u8], v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, o) in out.iter_mut().enumerate().take(16) {
        *o = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(REQUEST_ID, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn which_client_ids_are_kept() {
        let long = "a".repeat(MAX_LEN);
        let too_long = "a".repeat(MAX_LEN + 1);
        let rows: &[(&[&[u8]], bool)] = &[
            (&[b"3f2c1a9e-7b4d-4c1e-9a8b-0d6e5f4a3b2c"], true),
            (&[b"req_01HZX3:abc/def+g=h@i.j"], true),
            (&[long.as_bytes()], true),
            (&[too_long.as_bytes()], false),
            (&[], false),
            (&[b""], false),
            (&[b"a b"], false),
            (&[b"a\"b"], false),
            (&[b"a\\b"], false),
            (&[b"a;b"], false),
            (&[b"caf\xc3\xa9"], false),
            (&[b"a\tb"], false),
            // Two lines: which one would the origin read?
            (&[b"a", b"b"], false),
        ];
        for (values, kept) in rows {
            let h = headers(values);
            assert_eq!(accept(&h).is_some(), *kept, "{values:?}");
            if *kept {
                assert_eq!(accept(&h).unwrap().as_bytes(), values[0]);
            }
        }
    }

    #[test]
    fn generated_ids_are_distinct_hex_and_acceptable() {
        let g = Generator::default();
        let a = g.next();
        let b = g.next();
        assert_ne!(a, b);
        for v in [&a, &b] {
            assert_eq!(v.len(), 32);
            assert!(v.as_bytes().iter().all(|c| c.is_ascii_hexdigit()));
            assert_eq!(accept(&headers(&[v.as_bytes()])).as_ref(), Some(v));
        }
        assert_eq!(&a.as_bytes()[..16], &b.as_bytes()[..16], "one prefix");
        assert_ne!(
            &Generator::default().next().as_bytes()[..16],
            &a.as_bytes()[..16],
            "each generator its own prefix"
        );
        let bad = headers(&[b"a b"]);
        assert_eq!(g.for_request(&bad).len(), 32);
        let mut buf = [0u8; 16];
        hex_into(&mut buf, 0x0123_4567_89ab_cdef);
        assert_eq!(&buf, b"0123456789abcdef");
    }
}
