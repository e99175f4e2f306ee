//! Request normalization: one object is cached once, whatever spelling of its URL a client used.
//!
//! Applies RFC 3986 §6.2.2 (percent-encoding case, unreserved characters, dot segments), then the
//! configured rules: the default page made explicit, parameters sorted, ignored ones removed,
//! list values sorted, and API keys moved out of the query into an `Authorization` value.

use http::HeaderValue;
use sha2::{Digest, Sha256};

use crate::config::{NormalizeConfig, TrailingSlash};

/// Why a request target cannot be normalized (answered with 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-encoding in request target")]
    BadPercentEncoding,
    /// An API key that cannot be sent as a header value.
    #[error("API key parameter is not a valid header value")]
    BadCredential,
    /// The target is not an origin-form path.
    #[error("request target must be a path")]
    NotAPath,
    /// An HTTP/1.1 or HTTP/2 request without a host (RFC 9112 §3.2).
    #[error("request has no Host")]
    MissingHost,
    /// More than one Host, or one that is not `host[:port]`.
    #[error("malformed or repeated Host")]
    BadHost,
    /// More than one `Authorization`, or more than one API key in the query.
    #[error("more than one credential in the request")]
    DuplicateCredential,
}

/// A request target after normalization.
#[derive(Clone, PartialEq, Eq)]
pub struct Normalized {
    /// Path and query as sent to the origin and used in the key (never holds a moved API key).
    pub path_and_query: String,
    /// Length of the path part of `path_and_query`.
    pub path_len: usize,
    /// `Authorization` value built from an API key found in the query.
    pub credential: Option<HeaderValue>,
}

impl std::fmt::Debug for Normalized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Normalized")
            .field("path_and_query", &self.path_and_query)
            .field(
                "credential",
                &self.credential.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Normalized {
    /// The normalized path alone.
    pub fn path(&self) -> &str {
        &self.path_and_query[..self.path_len]
    }
}

/// Compiled normalization rules.
#[derive(Debug, Clone)]
pub struct Normalizer {
    cfg: NormalizeConfig,
}

impl Normalizer {
    /// Compile the `[normalize]` section.
    pub fn new(cfg: &NormalizeConfig) -> Self {
        Self { cfg: cfg.clone() }
    }

    /// Normalize an origin-form request target (`/path?query`).
    pub fn normalize(&self, target: &str) -> Result<Normalized, NormalizeError> {
        let (raw_path, raw_query) = match target.find('?') {
            Some(i) => (&target[..i], Some(&target[i + 1..])),
            None => (target, None),
        };
        if !raw_path.is_empty() && !raw_path.starts_with('/') {
            return Err(NormalizeError::NotAPath);
        }
        let mut path = normalize_percent(raw_path)?;
        if self.cfg.merge_slashes && path.contains("//") {
            path = merge_slashes(&path);
        }
        let mut out = remove_dot_segments(&path);
        if self.cfg.trailing_slash == TrailingSlash::Strip {
            out.truncate(out.trim_end_matches('/').len());
        }
        if out.is_empty() {
            out.push('/');
        }
        let path_len = out.len();
        let mut credential = None;
        let mut params: Vec<(String, Option<String>)> = Vec::new();
        for piece in raw_query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = match piece.find('=') {
                Some(i) => (&piece[..i], Some(&piece[i + 1..])),
                None => (piece, None),
            };
            let name = normalize_percent(name)?;
            let value = value.map(normalize_percent).transpose()?;
            if self
                .cfg
                .auth_params
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&name))
            {
                if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
                    // Two keys: the cache and the origin could each pick a different one.
                    if credential.is_some() {
                        return Err(NormalizeError::DuplicateCredential);
                    }
                    credential = Some(self.credential_header(v)?);
                }
                continue;
            }
            if self.cfg.ignore_params.iter().any(|g| glob_match(g, &name)) {
                continue;
            }
            let value = match value {
                Some(v) if self.cfg.list_params.contains(&name) => {
                    let mut items: Vec<&str> = v.split(',').filter(|s| !s.is_empty()).collect();
                    items.sort_unstable();
                    items.dedup();
                    Some(items.join(","))
                }
                v => v,
            };
            params.push((name, value));
        }
        // No page parameter means the default page (the operator said so by setting
        // page_param): the canonical form names it, because only `?page=1` means page 1 on
        // every API, so the origin answers the same question for both spellings.
        // Any spelling the origin may read as the page parameter counts as present: `%5B`/`%5D`
        // for JSON:API's `page[number]`, and another case.
        let names_page = |n: &str| {
            n.replace("%5B", "[")
                .replace("%5D", "]")
                .eq_ignore_ascii_case(&self.cfg.page_param)
        };
        if !self.cfg.page_param.is_empty() && !params.iter().any(|(n, _)| names_page(n)) {
            params.push((
                self.cfg.page_param.clone(),
                Some(self.cfg.default_page.clone()),
            ));
        }
        if self.cfg.sort_query {
            // Stable by name only: repeated parameters keep their relative order, which may matter.
            params.sort_by(|a, b| a.0.cmp(&b.0));
        }
        for (i, (name, value)) in params.iter().enumerate() {
            out.push(if i == 0 { '?' } else { '&' });
            out.push_str(name);
            if let Some(v) = value {
                out.push('=');
                out.push_str(v);
            }
        }
        Ok(Normalized {
            path_and_query: out,
            path_len,
            credential,
        })
    }

    fn credential_header(&self, encoded: &str) -> Result<HeaderValue, NormalizeError> {
        let raw = percent_encoding::percent_decode_str(encoded).collect::<Vec<u8>>();
        let mut v = Vec::with_capacity(self.cfg.auth_scheme.len() + 1 + raw.len());
        v.extend_from_slice(self.cfg.auth_scheme.as_bytes());
        v.push(b' ');
        v.extend_from_slice(&raw);
        let mut hv = HeaderValue::from_bytes(&v).map_err(|_| NormalizeError::BadCredential)?;
        hv.set_sensitive(true);
        Ok(hv)
    }
}

/// The cache key for a GET of `path_and_query` on `origin` (`proto://host`, as the origin is
/// told); per-credential entries carry a hash of the credential.
pub fn cache_key(origin: &str, path_and_query: &str, credential: Option<&HeaderValue>) -> String {
    match credential {
        None => {
            let mut k = String::with_capacity(4 + origin.len() + path_and_query.len());
            k.push_str("GET ");
            k.push_str(origin);
            k.push_str(path_and_query);
            k
        }
        Some(c) => format!("GET {origin}{path_and_query} #cred={}", credential_hash(c)),
    }
}

/// The loose reading of a normalized path that `[[routes]]` are also matched against, the way
/// lenient origins read it: `%2F`, `%5C` and `\\` as `/`, `;parameters` dropped from every
/// segment, slashes merged, dot segments removed (after the `;` went, so `/x/..;/me` is `/me`),
/// and lowercased when `case_insensitive`.
pub fn route_path(path: &str, case_insensitive: bool) -> std::borrow::Cow<'_, str> {
    let lower = case_insensitive && path.bytes().any(|b| b.is_ascii_uppercase());
    let loose = path.contains([';', '\\', '%']) || path.contains("//") || path.contains("/.");
    if !lower && !loose {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut p = path.replace('\\', "/");
    for esc in ["%2F", "%2f", "%5C", "%5c"] {
        if p.contains(esc) {
            p = p.replace(esc, "/");
        }
    }
    let mut out = String::with_capacity(p.len());
    for (i, seg) in p.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(seg.split(';').next().unwrap_or(""));
    }
    let mut out = remove_dot_segments(&merge_slashes(&out));
    if case_insensitive {
        out.make_ascii_lowercase();
    }
    std::borrow::Cow::Owned(out)
}

/// `//a///b/` is `/a/b/`.
fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c != '/' || !out.ends_with('/') {
            out.push(c);
        }
    }
    out
}

/// Hex sha256 of a credential, so per-credential keys never hold the secret itself.
pub fn credential_hash(credential: &HeaderValue) -> String {
    hex(&Sha256::digest(credential.as_bytes()))
}

/// Lowercase hex of `bytes`, for the hashes that go into keys.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Uppercase percent-encodings and decode the ones that stand for unreserved characters.
pub(crate) fn normalize_percent(s: &str) -> Result<String, NormalizeError> {
    if !s.contains('%') && s.is_ascii() {
        return Ok(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_val);
            let lo = bytes.get(i + 2).copied().and_then(hex_val);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(NormalizeError::BadPercentEncoding);
            };
            let v = hi * 16 + lo;
            if is_unreserved(v) {
                out.push(v as char);
            } else {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(hi)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(lo)]));
            }
            i += 3;
        } else if b.is_ascii() {
            out.push(b as char);
            i += 1;
        } else {
            // Raw non-ASCII bytes (which the http crate lets through) are encoded, as RFC 3986 asks.
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
            i += 1;
        }
    }
    Ok(out)
}

/// RFC 3986 §5.2.4 for an absolute path.
fn remove_dot_segments(path: &str) -> String {
    if !path.contains("/.") {
        return path.to_string();
    }
    let mut segments: Vec<&str> = Vec::new();
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    let last = parts.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in parts.iter().enumerate() {
        match *seg {
            "." => trailing_slash = i == last,
            ".." => {
                segments.pop();
                trailing_slash = i == last;
            }
            s => {
                segments.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

/// `*` at the start and/or end of a pattern matches any run of characters.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    match (pattern.strip_prefix('*'), pattern.strip_suffix('*')) {
        _ if pattern == "*" => true,
        (Some(rest), _) if rest.ends_with('*') => name.contains(&rest[..rest.len() - 1]),
        (Some(suffix), _) => name.ends_with(suffix),
        (None, Some(prefix)) => name.starts_with(prefix),
        (None, None) => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(target: &str) -> Normalized {
        let cfg = NormalizeConfig {
            list_params: vec!["fields".into()],
            ..Default::default()
        };
        Normalizer::new(&cfg).normalize(target).unwrap()
    }

    #[test]
    fn page_dedupe_is_off_by_default() {
        assert_eq!(n("/x").path_and_query, "/x");
        assert_eq!(n("/x?page=1").path_and_query, "/x?page=1");
    }

    #[test]
    fn default_page_is_made_explicit() {
        let page = |param: &str, default: &str, sort_query: bool| NormalizeConfig {
            page_param: param.into(),
            default_page: default.into(),
            sort_query,
            ..Default::default()
        };
        // (config, target, canonical form)
        let rows = [
            (page("page", "1", true), "/x", "/x?page=1"),
            (page("page", "1", true), "/x?page=1", "/x?page=1"),
            (page("page", "1", true), "/x?pa%67e=1", "/x?page=1"),
            (page("page", "1", true), "/x?page=2", "/x?page=2"),
            (page("page", "1", true), "/x?b=2&a=1", "/x?a=1&b=2&page=1"),
            (page("page", "1", true), "/x?z=1&page=1", "/x?page=1&z=1"),
            (page("page", "1", true), "/x?apiKey=k", "/x?page=1"),
            (page("page", "1", true), "/x?utm_source=m", "/x?page=1"),
            (page("page", "1", true), "/x?page=", "/x?page="),
            (page("page", "1", true), "/x?page", "/x?page"),
            (page("page", "1", true), "/x?Page=3", "/x?Page=3"),
            (
                page("page[number]", "1", true),
                "/x?page%5Bnumber%5D=2",
                "/x?page%5Bnumber%5D=2",
            ),
            (page("page[number]", "1", true), "/x", "/x?page[number]=1"),
            (page("page", "1", false), "/x?z=1", "/x?z=1&page=1"),
            (page("_page", "1", true), "/posts", "/posts?_page=1"),
            (
                page("_page", "1", true),
                "/posts?_limit=10",
                "/posts?_limit=10&_page=1",
            ),
            (page("p", "0", true), "/x", "/x?p=0"),
            (
                page("page[number]", "1", true),
                "/x?a=1",
                "/x?a=1&page[number]=1",
            ),
            (page("", "1", true), "/x", "/x"),
            (page("", "1", true), "/x?page=1", "/x?page=1"),
        ];
        for (cfg, target, want) in rows {
            let norm = Normalizer::new(&cfg);
            let got = norm.normalize(target).unwrap().path_and_query;
            assert_eq!(got, want, "{target} ({})", cfg.page_param);
            assert!(got.parse::<http::Uri>().is_ok(), "{got} is a valid target");
            let again = norm.normalize(&got).unwrap().path_and_query;
            assert_eq!(again, want, "{target} twice");
        }
    }

    #[test]
    fn query_is_sorted_stably() {
        assert_eq!(n("/x?b=2&a=1").path_and_query, "/x?a=1&b=2");
        assert_eq!(n("/x?a=2&b=1&a=1").path_and_query, "/x?a=2&a=1&b=1");
        assert_eq!(n("/x?&&b&a=").path_and_query, "/x?a=&b");
    }

    #[test]
    fn ignored_and_list_params() {
        assert_eq!(n("/x?utm_source=m&id=3").path_and_query, "/x?id=3");
        assert_eq!(n("/x?fields=b,a,b").path_and_query, "/x?fields=a,b");
    }

    #[test]
    fn api_key_moves_to_credential() {
        let r = n("/x?apiKey=s3cr%65t&b=1");
        assert_eq!(r.path_and_query, "/x?b=1");
        assert_eq!(r.credential.unwrap().to_str().unwrap(), "api-token s3cret");
        let r = n("/x?API_KEY=k");
        assert_eq!(r.path_and_query, "/x");
        assert!(r.credential.is_some());
        // An empty key is dropped but gives no credential.
        assert!(n("/x?apiKey=").credential.is_none());
    }

    #[test]
    fn bad_credential_value_is_an_error() {
        let err = Normalizer::new(&NormalizeConfig::default()).normalize("/x?apiKey=a%0Ab");
        assert_eq!(err, Err(NormalizeError::BadCredential));
    }

    #[test]
    fn rfc3986_normalization() {
        assert_eq!(n("/a%2fb").path_and_query, "/a%2Fb");
        assert_eq!(n("/%7Euser/%41").path_and_query, "/~user/A");
        assert_eq!(n("/a/./b/../c").path_and_query, "/a/c");
        assert_eq!(n("/a/b/..").path_and_query, "/a/");
        assert_eq!(n("/../../x").path_and_query, "/x");
        assert_eq!(n("/a/%2E%2E/b").path_and_query, "/b");
        assert_eq!(n("").path_and_query, "/");
        assert_eq!(n("/x?q=%7e%2f").path_and_query, "/x?q=~%2F");
        assert_eq!(n("/x?q=1").path(), "/x");
    }

    #[test]
    fn raw_non_ascii_is_percent_encoded() {
        assert_eq!(n("/caf\u{e9}%41").path_and_query, "/caf%C3%A9A");
        assert_eq!(n("/caf\u{e9}").path_and_query, "/caf%C3%A9");
        assert_eq!(n("/caf%c3%a9").path_and_query, "/caf%C3%A9");
    }

    #[test]
    fn malformed_percent_is_rejected() {
        let r = Normalizer::new(&NormalizeConfig::default());
        assert_eq!(
            r.normalize("/a%zz"),
            Err(NormalizeError::BadPercentEncoding)
        );
        assert_eq!(r.normalize("/a%4"), Err(NormalizeError::BadPercentEncoding));
        assert_eq!(r.normalize("*"), Err(NormalizeError::NotAPath));
    }

    #[test]
    fn keys_hide_credentials_and_carry_the_host() {
        let c = HeaderValue::from_static("api-token abc");
        let k = cache_key("http://a.x", "/me", Some(&c));
        assert!(!k.contains("abc"));
        assert_eq!(cache_key("http://a.x", "/me", None), "GET http://a.x/me");
        assert_ne!(cache_key("http://b.x", "/me", None), "GET http://a.x/me");
        assert_ne!(
            k,
            cache_key(
                "http://a.x",
                "/me",
                Some(&HeaderValue::from_static("api-token abd"))
            )
        );
    }

    #[test]
    fn two_api_keys_are_refused() {
        let r = Normalizer::new(&NormalizeConfig::default());
        for t in ["/x?apiKey=a&apiKey=b", "/x?apiKey=a&api_key=a"] {
            assert_eq!(
                r.normalize(t),
                Err(NormalizeError::DuplicateCredential),
                "{t}"
            );
        }
        assert!(r.normalize("/x?apiKey=&apiKey=b").is_ok());
    }

    #[test]
    fn slashes() {
        // (target, merge_slashes, trailing_slash, expected)
        let rows = [
            ("//me", true, TrailingSlash::Keep, "/me"),
            ("/a///b//", true, TrailingSlash::Keep, "/a/b/"),
            ("/a//b", false, TrailingSlash::Keep, "/a//b"),
            ("/me/", true, TrailingSlash::Strip, "/me"),
            ("/me//", false, TrailingSlash::Strip, "/me"),
            ("/a/b/..", true, TrailingSlash::Strip, "/a"),
            ("/", true, TrailingSlash::Strip, "/"),
            ("//?q=a//b", true, TrailingSlash::Strip, "/?q=a//b"),
            ("/a/..//b", true, TrailingSlash::Keep, "/b"),
        ];
        for (target, merge_slashes, trailing_slash, want) in rows {
            let cfg = NormalizeConfig {
                merge_slashes,
                trailing_slash,
                ..Default::default()
            };
            let got = Normalizer::new(&cfg).normalize(target).unwrap();
            assert_eq!(got.path_and_query, want, "{target}");
            let again = Normalizer::new(&cfg)
                .normalize(&got.path_and_query)
                .unwrap();
            assert_eq!(again.path_and_query, want, "{target} twice");
        }
    }

    #[test]
    fn route_paths() {
        // (path, case_insensitive, expected)
        let rows = [
            ("/me", false, "/me"),
            ("/Me", false, "/Me"),
            ("/Me", true, "/me"),
            ("/me;x=1", false, "/me"),
            ("/a;v=1/b;c/", true, "/a/b/"),
            ("/%7e", true, "/%7e"),
            ("/public/..;/me", false, "/me"),
            ("/x%2F..%2Fme", false, "/me"),
            ("/a%5Cme", false, "/a/me"),
            ("/a\\me", false, "/a/me"),
            ("//me//", false, "/me/"),
        ];
        for (path, ci, want) in rows {
            assert_eq!(route_path(path, ci), want, "{path}");
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("utm_*", "utm_source"));
        assert!(glob_match("*_token", "csrf_token"));
        assert!(glob_match("*tok*", "a_tok_b"));
        assert!(glob_match("*", "x"));
        assert!(!glob_match("utm_*", "xutm_"));
        assert!(glob_match("id", "id") && !glob_match("id", "ids"));
    }
}
