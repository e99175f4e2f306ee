//! The origin's own URLs in response fields, rewritten to the address the client used
//! (`origin.rewrite_urls`). Like nginx's default `proxy_redirect`, plus `Link` and
//! `Content-Location`: a URL whose scheme and authority are the origin's (`origin.url`), and whose
//! path is under its base path, becomes the same path on the client's public scheme and host
//! (`http://10.0.0.5:8080/base/x?y` → `https://api.example.com/x?y`). Anything else is left as
//! it is, and so is a value that does not parse. Pure: bytes in, bytes out, linear in the value.

use http::uri::Authority;
use http::{header, HeaderMap, HeaderName, HeaderValue};

/// `Refresh` (HTML's `N; url=…`), which browsers follow like a redirect.
pub const REFRESH: HeaderName = HeaderName::from_static("refresh");

/// Bytes rewriting may add to one response's fields (a long public host times many `Link`
/// targets). Beyond it, targets are written as absolute paths, which are always shorter.
const MAX_GROWTH: usize = 8 * 1024;

/// The origin as configured: what an absolute URL must start with to name it.
#[derive(Debug, Clone)]
pub struct OriginAddr {
    /// Lowercase scheme.
    scheme: String,
    /// Lowercase host, an IPv6 literal with its brackets.
    host: String,
    /// The port, the scheme's default when none is written.
    port: u16,
    /// `origin.host` (lowercase host, port): the name the origin is told it has, so it may
    /// build its URLs with it.
    alias: Option<(String, u16)>,
    /// Path prefix without a trailing `/` ("" for none): stripped from rewritten URLs, since the
    /// proxy adds it to every path it forwards.
    base_path: String,
}

/// Where the client reached the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Public {
    /// `http` or `https`.
    pub scheme: String,
    /// Normalized `host[:port]`; "" when the request named none (HTTP/1.0): URLs then become
    /// absolute paths, which resolve against whatever the client asked.
    pub host: String,
}

/// How a field's value holds URLs.
#[derive(Clone, Copy)]
enum Shape {
    /// The whole value is one URI reference (`Location`, `Content-Location`).
    Whole,
    /// `N; url=…` (`Refresh`).
    Refresh,
    /// `<uri>; params, <uri>; params` (`Link`, RFC 8288).
    Link,
}

/// The fields rewritten, and how each holds its URLs.
const FIELDS: [(HeaderName, Shape); 4] = [
    (header::LOCATION, Shape::Whole),
    (header::CONTENT_LOCATION, Shape::Whole),
    (REFRESH, Shape::Refresh),
    (header::LINK, Shape::Link),
];

impl OriginAddr {
    /// The origin of `origin.url`: its scheme, authority and base path (no trailing `/`).
    pub fn new(scheme: &str, authority: &Authority, base_path: &str) -> Self {
        let scheme = scheme.to_ascii_lowercase();
        let default = if scheme == "https" { 443 } else { 80 };
        OriginAddr {
            port: authority.port_u16().unwrap_or(default),
            host: authority.host().to_ascii_lowercase(),
            alias: None,
            base_path: base_path.trim_end_matches('/').to_string(),
            scheme,
        }
    }

    /// URLs naming `host` (`origin.host`: `host[:port]`, the scheme's default port when none)
    /// are the origin's too. A value that is not an authority adds nothing.
    pub fn with_host(mut self, host: Option<&str>) -> Self {
        if let Some(a) = host.and_then(|h| h.parse::<Authority>().ok()) {
            let default = if self.scheme == "https" { 443 } else { 80 };
            let port = a.port_u16().unwrap_or(default);
            self.alias = Some((a.host().to_ascii_lowercase(), port));
        }
        self
    }

    /// Rewrite every URL naming the origin in `Location`, `Content-Location`, `Refresh` and
    /// `Link` to `public`. Values that name something else, or do not parse, stay as they are.
    pub fn rewrite(&self, h: &mut HeaderMap, public: &Public) {
        let mut budget = MAX_GROWTH;
        for (name, shape) in FIELDS {
            if !h.contains_key(&name) {
                continue;
            }
            let mut changed = false;
            let values: Vec<HeaderValue> = h
                .get_all(&name)
                .iter()
                .map(
                    |v| match self.value(v.as_bytes(), shape, public, &mut budget) {
                        Some(new) => {
                            changed = true;
                            let mut new = new;
                            new.set_sensitive(v.is_sensitive());
                            new
                        }
                        None => v.clone(),
                    },
                )
                .collect();
            if changed {
                h.remove(&name);
                for v in values {
                    h.append(name.clone(), v);
                }
            }
        }
    }

    /// The path through the proxy (`/x?y`) of an absolute or network-path URL naming the
    /// origin under its base path: what an unsafe method's `Location` invalidates.
    pub fn proxy_path(&self, url: &str) -> Option<String> {
        let (_, rest) = self.split(url.as_bytes())?;
        let mut out = Vec::with_capacity(rest.len() + 1);
        write_path(rest, false, &mut out);
        String::from_utf8(out).ok()
    }

    /// One field value rewritten (`None`: nothing in it names the origin, or it does not
    /// parse). Written in absolute form while `budget` allows the growth, else as paths.
    fn value(
        &self,
        v: &[u8],
        shape: Shape,
        public: &Public,
        budget: &mut usize,
    ) -> Option<HeaderValue> {
        let rewrite = |relative| match shape {
            Shape::Whole => self.whole(v, public, relative),
            Shape::Refresh => self.refresh(v, public, relative),
            Shape::Link => self.link(v, public, relative),
        };
        let mut out = rewrite(false)?;
        if out.len() > v.len() + *budget {
            out = rewrite(true)?;
        }
        *budget -= out.len().saturating_sub(v.len());
        HeaderValue::from_bytes(&out).ok()
    }

    /// A value that is one URI reference.
    fn whole(&self, v: &[u8], public: &Public, relative: bool) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(v.len() + public.host.len() + 8);
        self.write_url(v, public, relative, &mut out).then_some(out)
    }

    /// `Refresh`, read as HTML's declarative refresh does: a time, `;` or `,`, then the URL,
    /// optionally after `url=` (any case) and in quotes.
    fn refresh(&self, v: &[u8], public: &Public, relative: bool) -> Option<Vec<u8>> {
        let mut i = skip_ws(v, 0);
        let time = i;
        while v.get(i).is_some_and(|b| b.is_ascii_digit() || *b == b'.') {
            i += 1;
        }
        if i == time
            || v.get(i)
                .is_some_and(|b| !matches!(b, b';' | b',' | b' ' | b'\t'))
        {
            return None;
        }
        i = skip_ws(v, i);
        if matches!(v.get(i), Some(b';' | b',')) {
            i = skip_ws(v, i + 1);
        }
        if v.len() >= i + 3 && v[i..i + 3].eq_ignore_ascii_case(b"url") {
            let eq = skip_ws(v, i + 3);
            if v.get(eq) == Some(&b'=') {
                i = skip_ws(v, eq + 1);
            }
        }
        let (start, end) = match v.get(i)? {
            &q @ (b'"' | b'\'') => {
                let s = i + 1;
                let len = v[s..].iter().position(|&b| b == q).unwrap_or(v.len() - s);
                (s, s + len)
            }
            _ => (
                i,
                v.len() - v[i..].iter().rev().take_while(|b| is_ws(**b)).count(),
            ),
        };
        let mut out = Vec::with_capacity(v.len() + public.host.len() + 8);
        out.extend_from_slice(&v[..start]);
        if !self.write_url(&v[start..end], public, relative, &mut out) {
            return None;
        }
        out.extend_from_slice(&v[end..]);
        Some(out)
    }

    /// `Link`: each `<target>` rewritten. Commas inside quoted parameters do not split; an
    /// unterminated quote, a missing `<`/`>` or an angle bracket among the parameters is malformed.
    fn link(&self, v: &[u8], public: &Public, relative: bool) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(v.len() + public.host.len() + 8);
        let (mut i, mut changed) = (0, false);
        loop {
            while v.get(i).is_some_and(|b| is_ws(*b) || *b == b',') {
                out.push(v[i]);
                i += 1;
            }
            if i == v.len() {
                break;
            }
            if v[i] != b'<' {
                return None;
            }
            let close = i + 1 + v[i + 1..].iter().position(|&b| b == b'>')?;
            out.push(b'<');
            changed |= self.write_url(&v[i + 1..close], public, relative, &mut out);
            out.push(b'>');
            i = close + 1;
            let mut quoted = false;
            while let Some(&b) = v.get(i) {
                match (quoted, b) {
                    (true, b'\\') => {
                        out.push(b);
                        i += 1;
                        v.get(i)?;
                    }
                    (_, b'"') => quoted = !quoted,
                    (false, b',') => break,
                    (false, b'<' | b'>') => return None,
                    _ => {}
                }
                out.push(v[i]);
                i += 1;
            }
            if quoted {
                return None;
            }
        }
        changed.then_some(out)
    }

    /// Append `url`, rewritten when it names the origin (true), else as it is (false).
    fn write_url(&self, url: &[u8], public: &Public, relative: bool, out: &mut Vec<u8>) -> bool {
        let Some((network_path, rest)) = self.split(url) else {
            out.extend_from_slice(url);
            return false;
        };
        let absolute = !relative && !public.host.is_empty();
        if absolute {
            if !network_path {
                out.extend_from_slice(public.scheme.as_bytes());
                out.push(b':');
            }
            out.extend_from_slice(b"//");
            out.extend_from_slice(public.host.as_bytes());
        }
        write_path(rest, !absolute, out);
        true
    }

    /// For a URL naming the origin under its base path: whether it is a network-path reference
    /// (`//host/x`, which takes the origin's scheme), and what follows the base path.
    fn split<'u>(&self, url: &'u [u8]) -> Option<(bool, &'u [u8])> {
        let (network_path, after) = match url.strip_prefix(b"//") {
            Some(after) => (true, after),
            None => {
                let colon = url.iter().position(|&b| b == b':')?;
                if !url[..colon].eq_ignore_ascii_case(self.scheme.as_bytes()) {
                    return None;
                }
                (false, url[colon + 1..].strip_prefix(b"//")?)
            }
        };
        let end = (after.iter())
            .position(|b| matches!(b, b'/' | b'?' | b'#'))
            .unwrap_or(after.len());
        let (authority, rest) = after.split_at(end);
        if !self.is_origin(authority) {
            return None;
        }
        let rest = rest.strip_prefix(self.base_path.as_bytes())?;
        match rest.first() {
            None | Some(b'/' | b'?' | b'#') => Some((network_path, rest)),
            // `/base` is not a prefix of `/basement`.
            Some(_) => None,
        }
    }

    /// Whether an authority is the origin's: host compared ignoring case, an absent or empty
    /// port is the scheme's default. Userinfo never matches.
    fn is_origin(&self, authority: &[u8]) -> bool {
        if authority.contains(&b'@') {
            return false;
        }
        let split = match authority.first() {
            Some(b'[') => authority.iter().position(|&b| b == b']').map(|i| i + 1),
            _ => Some(
                (authority.iter())
                    .rposition(|&b| b == b':')
                    .unwrap_or(authority.len()),
            ),
        };
        let Some(split) = split else {
            return false;
        };
        let (host, port) = authority.split_at(split);
        let port = match port {
            [] | [b':'] => Some(if self.scheme == "https" { 443 } else { 80 }),
            [b':', digits @ ..] if digits.iter().all(u8::is_ascii_digit) => {
                std::str::from_utf8(digits)
                    .ok()
                    .and_then(|d| d.parse().ok())
            }
            _ => None,
        };
        let named = |h: &str, p: u16| host.eq_ignore_ascii_case(h.as_bytes()) && port == Some(p);
        named(&self.host, self.port) || self.alias.as_ref().is_some_and(|(h, p)| named(h, *p))
    }
}

/// What follows the base path, as an absolute path: `""` → `/`, `?q` → `/?q`. As a reference
/// on its own (`alone`), `//x` is written `/.//x`, which stays a path: `//x` would name the host `x`.
fn write_path(rest: &[u8], alone: bool, out: &mut Vec<u8>) {
    // Browsers read `/\`, `/<TAB>/` and the like as `//`: a path that would name a host.
    let host_like = |b: u8| matches!(b, b'/' | b'\\' | b'\t' | b'\r' | b'\n');
    if alone && rest.first() == Some(&b'/') && rest.get(1).is_some_and(|b| host_like(*b)) {
        out.extend_from_slice(b"/.");
    } else if !rest.starts_with(b"/") {
        out.push(b'/');
    }
    out.extend_from_slice(rest);
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn skip_ws(v: &[u8], mut i: usize) -> usize {
    while v.get(i).is_some_and(|b| is_ws(*b)) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests;
