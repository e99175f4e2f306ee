//! Vary (RFC 9111 §4.1): which request fields select a stored variant, matched in one place.

use http::{header, HeaderMap, HeaderName, HeaderValue};

/// The request fields a stored response varies on, and the values they had when it was stored.
///
/// Accept-Encoding is not among them: codings are negotiated here from one stored object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vary {
    fields: Vec<HeaderName>,
    values: Vec<Option<HeaderValue>>,
}

impl Vary {
    /// The variant selected by `request` for a response with `response`'s Vary header.
    pub fn of(response: &HeaderMap, request: &HeaderMap) -> Vary {
        let fields = vary_fields(response);
        let values = vary_values(&fields, request);
        Vary { fields, values }
    }

    /// Whether the response varies on nothing but codings.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Whether `request` selects this variant.
    pub fn matches(&self, request: &HeaderMap) -> bool {
        self.fields.is_empty() || vary_values(&self.fields, request) == self.values
    }

    /// Whether a 304 naming this variant's ETag may make it another request's variant (RFC 9111
    /// §4.3.1): not when it varies on who is asking, where one user's body must never be
    /// handed to another on the strength of an ETag the origin may reuse across users.
    pub fn shareable_by_etag(&self) -> bool {
        !self.fields.iter().any(|f| {
            matches!(
                f.as_str(),
                "cookie" | "authorization" | "proxy-authorization" | "x-api-key" | "x-auth-token"
            )
        })
    }

    /// Whether two variants vary on the same fields (they belong to one URL's variant set).
    pub fn same_fields(&self, other: &Vary) -> bool {
        self.fields == other.fields
    }

    /// The collapsing key for `request`'s variant of `key`: concurrent misses for different
    /// variants of one URL fill in parallel, one origin request per variant. Hashed, so large
    /// values do not grow the in-flight map.
    pub fn flight_key(&self, key: &str, request: &HeaderMap) -> String {
        use sha2::{Digest, Sha256};
        if self.fields.is_empty() {
            return key.to_string();
        }
        let mut h = Sha256::new();
        for (name, value) in self.fields.iter().zip(vary_values(&self.fields, request)) {
            h.update(name.as_str());
            h.update(b"\0");
            match value {
                Some(v) => h.update(v.as_bytes()),
                None => h.update(b"\x01absent"),
            }
            h.update(b"\0");
        }
        format!("{key} #vary={}", crate::normalize::hex(&h.finalize()[..8]))
    }

    /// Bytes held, for the cache's weigher.
    pub fn weight(&self) -> usize {
        self.fields
            .iter()
            .map(|f| f.as_str().len() + 16)
            .sum::<usize>()
            + self
                .values
                .iter()
                .map(|v| v.as_ref().map_or(0, |v| v.len()) + 16)
                .sum::<usize>()
    }
}

/// The fields a response's Vary names, sorted, without Accept-Encoding (handled here).
fn vary_fields(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut out: Vec<HeaderName> = Vec::new();
    for v in headers.get_all(header::VARY) {
        let Ok(s) = v.to_str() else { continue };
        for f in s.split(',') {
            let f = f.trim();
            if f.is_empty() || f.eq_ignore_ascii_case("accept-encoding") {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(f.as_bytes()) {
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
    }
    out.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    out
}

/// A request's values for the fields a response varies on, normalized for comparison.
fn vary_values(names: &[HeaderName], req: &HeaderMap) -> Vec<Option<HeaderValue>> {
    names
        .iter()
        .map(|n| {
            let mut it = req.get_all(n).iter();
            let first = it.next()?;
            let mut joined = first.as_bytes().to_vec();
            for v in it {
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(v.as_bytes());
            }
            // Whitespace differences are not semantic (RFC 9111 §4.1).
            let s: Vec<u8> = joined
                .split(|b| *b == b',')
                .map(|p| p.trim_ascii())
                .collect::<Vec<_>>()
                .join(&b","[..]);
            HeaderValue::from_bytes(&s).ok()
        })
        .collect()
}

/// Add a field name to Vary unless already there (or `*`).
pub fn merge_vary(h: &mut HeaderMap, field: &str) {
    let present = h.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|f| f.trim().eq_ignore_ascii_case(field) || f.trim() == "*")
        })
    });
    if !present {
        if let Ok(v) = HeaderValue::from_str(field) {
            h.append(header::VARY, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn vary_fields_skip_accept_encoding() {
        let h = headers(&[
            ("vary", "Accept-Encoding, Accept-Language"),
            ("vary", "x-tenant"),
        ]);
        let names = vary_fields(&h);
        assert_eq!(names.len(), 2);
        let req = headers(&[("accept-language", "en,  fr")]);
        assert_eq!(vary_values(&names, &req)[0].as_ref().unwrap(), "en,fr");
        assert_eq!(vary_values(&names, &req)[1], None);
    }

    #[test]
    fn variant_matching_table() {
        let resp = headers(&[("vary", "Accept-Language, Accept-Encoding")]);
        let stored = Vary::of(&resp, &headers(&[("accept-language", "en, fr")]));
        // (request headers, selects the stored variant)
        let rows: &[(&[(&str, &str)], bool)] = &[
            (&[("accept-language", "en, fr")], true),
            (&[("accept-language", "en,fr")], true),
            (
                &[("Accept-Language", "en"), ("accept-language", "fr")],
                true,
            ),
            (&[("accept-language", "fr, en")], false),
            (&[], false),
            (
                &[("accept-language", "en, fr"), ("accept-encoding", "br")],
                true,
            ),
        ];
        for (req, want) in rows {
            assert_eq!(stored.matches(&headers(req)), *want, "{req:?}");
        }
        let plain = Vary::of(&headers(&[("vary", "accept-encoding")]), &HeaderMap::new());
        assert!(plain.is_empty() && plain.matches(&headers(&[("x", "y")])));
        assert!(!plain.same_fields(&stored));
        // A field absent when stored must be absent to match.
        let absent = Vary::of(&headers(&[("vary", "x-tenant")]), &HeaderMap::new());
        assert!(absent.matches(&HeaderMap::new()));
        assert!(!absent.matches(&headers(&[("x-tenant", "a")])));
    }

    #[test]
    fn vary_merge() {
        let mut h = HeaderMap::new();
        merge_vary(&mut h, "Accept-Encoding");
        merge_vary(&mut h, "Accept-Encoding");
        assert_eq!(h.get_all(header::VARY).iter().count(), 1);
        let mut h = HeaderMap::new();
        h.insert(
            header::VARY,
            HeaderValue::from_static("accept-encoding, x-a"),
        );
        merge_vary(&mut h, "Accept-Encoding");
        assert_eq!(h.get_all(header::VARY).iter().count(), 1);
    }
}
