//! Cache-Control, Surrogate-Control and CDN-Cache-Control directives (RFC 9111 §5.2, RFC 9213).

use http::{header, HeaderMap};

/// Parsed Cache-Control-style directives (request or response).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    /// `max-age` (a malformed value counts as 0: stale).
    pub max_age: Option<u64>,
    /// `s-maxage`.
    pub s_maxage: Option<u64>,
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache` (qualified or not: both force revalidation here).
    pub no_cache: bool,
    /// `private` (qualified or not: a shared cache stores neither).
    pub private: bool,
    /// `public`.
    pub public: bool,
    /// `must-revalidate`.
    pub must_revalidate: bool,
    /// `proxy-revalidate`.
    pub proxy_revalidate: bool,
    /// `no-transform`.
    pub no_transform: bool,
    /// `stale-while-revalidate` (RFC 5861).
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error` (RFC 5861).
    pub stale_if_error: Option<u64>,
    /// Request `max-stale`; `Some(u64::MAX)` when given without a value.
    pub max_stale: Option<u64>,
    /// Request `min-fresh`.
    pub min_fresh: Option<u64>,
    /// Request `only-if-cached`.
    pub only_if_cached: bool,
}

impl Directives {
    /// Parse every `name` header line of `headers`.
    pub fn from_headers(headers: &HeaderMap, name: &header::HeaderName) -> Directives {
        let mut d = Directives::default();
        for v in headers.get_all(name) {
            if let Ok(s) = v.to_str() {
                d.parse_into(s);
            }
        }
        d
    }

    /// Parse one header value, adding to what is already set (first occurrence wins).
    pub fn parse_into(&mut self, s: &str) {
        for (name, value) in split_directives(s) {
            let secs = || value.as_deref().map(parse_delta).unwrap_or(Some(0));
            match name.to_ascii_lowercase().as_str() {
                "max-age" => {
                    self.max_age.get_or_insert(secs().unwrap_or(0));
                }
                "s-maxage" => {
                    self.s_maxage.get_or_insert(secs().unwrap_or(0));
                }
                "no-store" => self.no_store = true,
                "no-cache" => self.no_cache = true,
                "private" => self.private = true,
                "public" => self.public = true,
                "must-revalidate" => self.must_revalidate = true,
                "proxy-revalidate" => self.proxy_revalidate = true,
                "no-transform" => self.no_transform = true,
                "only-if-cached" => self.only_if_cached = true,
                "stale-while-revalidate" => {
                    if let Some(v) = secs() {
                        self.stale_while_revalidate.get_or_insert(v);
                    }
                }
                "stale-if-error" => {
                    if let Some(v) = secs() {
                        self.stale_if_error.get_or_insert(v);
                    }
                }
                "max-stale" => {
                    let v = match &value {
                        None => u64::MAX,
                        Some(v) => parse_delta(v).unwrap_or(0),
                    };
                    self.max_stale.get_or_insert(v);
                }
                "min-fresh" => {
                    self.min_fresh.get_or_insert(secs().unwrap_or(0));
                }
                _ => {}
            }
        }
    }
}

/// Delta-seconds; values beyond 2^31 are capped as RFC 9111 §1.2.2 asks.
pub(crate) fn parse_delta(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u64>().unwrap_or(u64::MAX).min(1 << 31))
}

/// Split a directive list on commas outside quoted strings; values lose their quotes.
fn split_directives(s: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let mut push = |cur: &mut String| {
        let item = cur.trim();
        if !item.is_empty() {
            let (n, v) = match item.find('=') {
                Some(i) => (
                    item[..i].trim().to_string(),
                    Some(item[i + 1..].trim().trim_matches('"').to_string()),
                ),
                None => (item.to_string(), None),
            };
            out.push((n, v));
        }
        cur.clear();
    };
    for c in s.chars() {
        match c {
            '"' => {
                in_quote = !in_quote;
                cur.push(c);
            }
            ',' if !in_quote => push(&mut cur),
            _ => cur.push(c),
        }
    }
    push(&mut cur);
    out
}

/// Surrogate-Control directives addressed to this proxy (untargeted or `;apicache`); `max-age=N+M` keeps N.
pub fn surrogate_control(headers: &HeaderMap) -> Option<Directives> {
    let mut found = false;
    let mut d = Directives::default();
    for v in headers.get_all("surrogate-control") {
        let Ok(s) = v.to_str() else { continue };
        for item in s.split(',') {
            let mut parts = item.splitn(2, ';');
            let directive = parts.next().unwrap_or("").trim();
            if let Some(target) = parts.next() {
                if !target.trim().eq_ignore_ascii_case("apicache") {
                    continue;
                }
            }
            let directive = match directive.find('+') {
                Some(i) => &directive[..i],
                None => directive,
            };
            found = true;
            d.parse_into(directive);
        }
    }
    found.then_some(d)
}

impl Directives {
    /// A request's Cache-Control, with `Pragma: no-cache` honoured when there is no Cache-Control (RFC 9111 §5.4).
    pub fn from_request(h: &HeaderMap) -> Directives {
        let mut d = Directives::from_headers(h, &header::CACHE_CONTROL);
        if !h.contains_key(header::CACHE_CONTROL)
            && h.get_all(header::PRAGMA).iter().any(|v| {
                v.to_str()
                    .is_ok_and(|s| s.to_ascii_lowercase().contains("no-cache"))
            })
        {
            d.no_cache = true;
        }
        d
    }
}

/// Whether the message's Cache-Control forbids transformations (RFC 9111 §5.2.2.6): never re-encoded here.
pub fn no_transform(h: &HeaderMap) -> bool {
    Directives::from_headers(h, &header::CACHE_CONTROL).no_transform
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn parses_directives() {
        let mut d = Directives::default();
        d.parse_into("Max-Age=60, private=\"a, b\", no-cache, s-maxage=x, max-stale");
        assert_eq!(d.max_age, Some(60));
        assert!(d.private && d.no_cache);
        assert_eq!(d.s_maxage, Some(0));
        assert_eq!(d.max_stale, Some(u64::MAX));
        d.parse_into("max-age=5");
        assert_eq!(d.max_age, Some(60), "first occurrence wins");
    }

    #[test]
    fn pragma_no_cache() {
        let mut h = HeaderMap::new();
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        assert!(Directives::from_request(&h).no_cache);
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=5"));
        assert!(!Directives::from_request(&h).no_cache);
    }

    #[test]
    fn no_transform_is_read_from_cache_control() {
        let mut h = HeaderMap::new();
        assert!(!no_transform(&h));
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=5, No-Transform"),
        );
        assert!(no_transform(&h));
    }
}
