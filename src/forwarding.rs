//! Who asked, as the origin is told: the request's host and scheme (`X-Forwarded-*` believed
//! only from `server.trusted_proxies`), the hosts this proxy answers for, and the headers a
//! forwarded request carries.
//!
//! The host and scheme the origin is told are part of the cache key: an origin that builds
//! absolute URLs from `X-Forwarded-Host` must never have one client's host served to another.

use std::net::{IpAddr, SocketAddr};

use http::request::Parts;
use http::{header, HeaderMap, HeaderName, HeaderValue, Version};
use ipnet::IpNet;

use crate::config::{NormalizeConfig, ServerConfig};
use crate::error::ProxyError;
use crate::normalize::NormalizeError;
use crate::origin;
use crate::rewrite::Public;

/// Forwarding fields a client outside `trusted_proxies` may not set: they are removed (and the
/// first three set by apicache). Frameworks read all of these for the scheme, host or client.
const FORWARDED_FIELDS: [&str; 15] = [
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "forwarded",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "x-forwarded-server",
    "x-forwarded-protocol",
    "x-real-ip",
    "x-host",
    "x-original-host",
    "front-end-https",
    "x-url-scheme",
];

/// Marks a request that arrived over TLS: a TLS listener inserts it into each request's
/// extensions, and the request's scheme (absent a trusted `X-Forwarded-Proto`) is then `https`.
#[derive(Debug, Clone, Copy)]
pub struct Tls;

/// The compiled `server.hosts`, `server.trusted_proxies` and `normalize.strip_request_headers`.
#[derive(Debug, Clone, Default)]
pub struct Forwarding {
    trusted: Vec<IpNet>,
    hosts: Vec<String>,
    strip: Vec<HeaderName>,
    drop_underscores: bool,
    via: String,
}

/// The host and scheme a request is for, as the origin will be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// Normalized host (lowercase, default port dropped); empty for HTTP/1.0 without Host. From
    /// a trusted proxy: its `X-Forwarded-Host` list, each element normalized.
    pub host: String,
    /// The listener's scheme (`http`; `https` for [`Tls`]), or what a trusted proxy said in
    /// `X-Forwarded-Proto` (`http`/`https` list).
    pub proto: String,
    /// From a trusted proxy: a hash of the other forwarding fields it sent (the origin may build
    /// URLs from `Forwarded`, `X-Forwarded-Prefix`, …), so they are part of the key too.
    pub extra: Option<String>,
    /// The peer is a trusted proxy: its forwarding fields are kept and appended to.
    pub trusted: bool,
}

impl Client {
    /// `proto://host` (and the hash of other forwarding fields), the key's prefix.
    pub fn origin(&self) -> String {
        match &self.extra {
            None => format!("{}://{}", self.proto, self.host),
            Some(x) => format!("{}://{}#fwd={x}", self.proto, self.host),
        }
    }

    /// The scheme and host the client used: the first of each list (the one nearest the client).
    /// Both are in the key, so a response rewritten for them is only served to their requests.
    pub fn public(&self) -> Public {
        Public {
            scheme: first(&self.proto).to_string(),
            host: first(&self.host).to_string(),
        }
    }
}

/// The first element of a list `trusted_view` joined.
fn first(list: &str) -> &str {
    list.split(',').next().unwrap_or("")
}

impl Forwarding {
    /// Validate and compile; an error names the key and why.
    pub fn compile(
        server: &ServerConfig,
        normalize: &NormalizeConfig,
    ) -> Result<Self, (String, String)> {
        let mut trusted = Vec::new();
        for (i, p) in server.trusted_proxies.iter().enumerate() {
            let net = p
                .parse::<IpNet>()
                .or_else(|_| p.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    let why = format!("{p:?} is not a CIDR (10.0.0.0/8) or an address");
                    (format!("server.trusted_proxies[{i}]"), why)
                })?;
            trusted.push(net);
        }
        let mut hosts = Vec::new();
        for (i, h) in server.hosts.iter().enumerate() {
            let host = normalize_host(h, "http").ok_or_else(|| {
                let why = format!("{h:?} is not a host[:port]");
                (format!("server.hosts[{i}]"), why)
            })?;
            hosts.push(host);
        }
        let mut strip = Vec::new();
        for (i, n) in normalize.strip_request_headers.iter().enumerate() {
            let name = HeaderName::from_bytes(n.as_bytes()).map_err(|_| {
                let why = format!("{n:?} is not a header name");
                (format!("normalize.strip_request_headers[{i}]"), why)
            })?;
            strip.push(name);
        }
        Ok(Self {
            trusted,
            hosts,
            strip,
            drop_underscores: normalize.drop_underscore_headers,
            via: server.via.clone(),
        })
    }

    /// The host and scheme of a request. RFC 9112 §3.2: an HTTP/1.1 (or HTTP/2) request without
    /// a host, or with more than one, is a 400; a host outside `server.hosts` is a 421.
    pub fn client(&self, head: &Parts, peer: SocketAddr) -> Result<Client, ProxyError> {
        let trusted = self.trusted.iter().any(|n| n.contains(&peer.ip()));
        let listener = match head.extensions.get::<Tls>() {
            Some(Tls) => "https",
            None => "http",
        };
        let mut hosts = head.headers.get_all(header::HOST).iter();
        let host_field = hosts.next();
        if hosts.next().is_some() {
            return Err(NormalizeError::BadHost.into());
        }
        // The absolute-form target (or HTTP/2's :authority) wins over Host (RFC 9112 §3.2.2).
        let raw = match (head.uri.authority(), host_field) {
            (Some(a), _) => a.as_str(),
            (None, Some(h)) => h.to_str().map_err(|_| NormalizeError::BadHost)?,
            (None, None) if head.version <= Version::HTTP_10 => "",
            (None, None) => return Err(NormalizeError::MissingHost.into()),
        };
        let (proto, host, extra) = if trusted {
            trusted_view(&head.headers, raw, listener)?
        } else {
            let host = match raw {
                "" => String::new(),
                raw => normalize_host(raw, listener).ok_or(NormalizeError::BadHost)?,
            };
            (listener.to_string(), host, None)
        };
        if !self.hosts.is_empty() && !self.hosts.contains(&host) {
            return Err(ProxyError::Misdirected);
        }
        Ok(Client {
            host,
            proto,
            extra,
            trusted,
        })
    }

    /// Remove the fields the origin never sees (`normalize.strip_request_headers`, and names
    /// with `_`, which CGI-style origins read as the `-` spelling of a stripped field).
    pub fn strip(&self, h: &mut HeaderMap) {
        for n in &self.strip {
            h.remove(n);
        }
        if self.drop_underscores && h.keys().any(|k| k.as_str().contains('_')) {
            let doomed: Vec<HeaderName> = h
                .keys()
                .filter(|k| k.as_str().contains('_'))
                .cloned()
                .collect();
            for n in doomed {
                h.remove(n);
            }
        }
    }

    /// Whether the origin request differs from the client's in more than the fields apicache
    /// adds: something stripped, or forwarding fields an untrusted client sent.
    pub fn rewrites(&self, h: &HeaderMap, who: &Client) -> bool {
        self.strip.iter().any(|n| h.contains_key(n))
            || (self.drop_underscores && h.keys().any(|k| k.as_str().contains('_')))
            || (!who.trusted && FORWARDED_FIELDS.iter().any(|n| h.contains_key(*n)))
            || h.get_all(header::COOKIE).iter().nth(1).is_some()
    }

    /// Headers for the origin request, built from the client's.
    pub fn headers(
        &self,
        client: &HeaderMap,
        who: &Client,
        version: Version,
        peer: SocketAddr,
        credential: Option<&HeaderValue>,
    ) -> HeaderMap {
        let mut h = client.clone();
        origin::strip_hop_by_hop(&mut h);
        self.strip(&mut h);
        h.remove(header::HOST);
        join_cookies(&mut h);
        // Every line of a trusted proxy's list, in order: dropping later lines would let a client
        // choose the address the origin sees.
        let prev: Vec<&str> = h
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let xff = match prev.is_empty() || !who.trusted {
            true => peer.ip().to_string(),
            false => format!("{}, {}", prev.join(", "), peer.ip()),
        };
        if !who.trusted {
            for n in FORWARDED_FIELDS {
                h.remove(n);
            }
        }
        if let Ok(v) = HeaderValue::from_str(&xff) {
            h.insert("x-forwarded-for", v);
        }
        if !h.contains_key("x-forwarded-host") && !who.host.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&who.host) {
                h.insert("x-forwarded-host", v);
            }
        }
        if !h.contains_key("x-forwarded-proto") {
            if let Ok(v) = HeaderValue::from_str(&who.proto) {
                h.insert("x-forwarded-proto", v);
            }
        }
        if let Some(c) = credential {
            if !h.contains_key(header::AUTHORIZATION) {
                h.insert(header::AUTHORIZATION, c.clone());
            }
        }
        origin::add_via(&mut h, version, &self.via);
        h
    }
}

/// Several `Cookie` fields as one, `; `-separated: HTTP/2 clients send each cookie in its own
/// field, and an HTTP/1.1 origin must get them as one (RFC 9113 §8.2.3; many read only the
/// first line). An HTTP/2 origin takes either.
fn join_cookies(h: &mut HeaderMap) {
    if h.get_all(header::COOKIE).iter().nth(1).is_none() {
        return;
    }
    let mut joined = Vec::new();
    for v in h.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(mut v) = HeaderValue::from_bytes(&joined) {
        v.set_sensitive(true);
        h.insert(header::COOKIE, v);
    }
}

/// Most `X-Forwarded-For` hops walked back from the peer looking for the client.
const MAX_HOPS: usize = 32;

impl Forwarding {
    /// Who sent the request, for the access log: the peer (`ip:port`), or, when the peer is a
    /// trusted proxy, the nearest `X-Forwarded-For` address that is not one (all of them
    /// trusted: the first). A hop that is not an address stops the walk: the peer it is.
    pub fn client_addr(&self, h: &HeaderMap, peer: SocketAddr) -> String {
        let trusted = |ip: IpAddr| self.trusted.iter().any(|n| n.contains(&ip));
        if !trusted(peer.ip()) {
            return peer.to_string();
        }
        // A line that is not text stops the walk: skipping it would let what a client wrote
        // before it pass for what a trusted proxy appended after.
        let Ok(lines) = h
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.to_str())
            .collect::<Result<Vec<&str>, _>>()
        else {
            return peer.to_string();
        };
        let hops = lines.iter().rev().flat_map(|l| l.rsplit(','));
        match forwarded_client(hops, trusted) {
            Some(ip) => ip.to_string(),
            None => peer.to_string(),
        }
    }
}

/// The client among `X-Forwarded-For` hops given nearest first: the first one `trusted` does not
/// vouch for, or the farthest if it vouches for all; `None` at a hop that is not an IP address
/// (`1.2.3.4:5` and `[::1]:5` count as their address) or when more than [`MAX_HOPS`] are trusted.
fn forwarded_client<'a>(
    hops: impl Iterator<Item = &'a str>,
    trusted: impl Fn(IpAddr) -> bool,
) -> Option<IpAddr> {
    let mut last = None;
    for (i, hop) in hops.enumerate() {
        if i == MAX_HOPS {
            return None;
        }
        let hop = hop.trim();
        let ip = hop
            .parse::<IpAddr>()
            .or_else(|_| hop.parse::<SocketAddr>().map(|a| a.ip()))
            .ok()?;
        if !trusted(ip) {
            return Some(ip);
        }
        last = Some(ip);
    }
    last
}

/// What a trusted proxy says: its `X-Forwarded-Proto` and `X-Forwarded-Host` lists (every
/// line, each element checked and normalized; the `listener`'s scheme when it sent none) and a
/// hash of its other forwarding fields. A value that is not a list of schemes or hosts is a 400:
/// keyed as it is, `a.example/x` would collide with another URL's key.
fn trusted_view(
    h: &HeaderMap,
    raw_host: &str,
    listener: &str,
) -> Result<(String, String, Option<String>), ProxyError> {
    let list = |name: &str| -> Result<Vec<String>, ProxyError> {
        let mut out = Vec::new();
        for v in h.get_all(name) {
            let s = v.to_str().map_err(|_| NormalizeError::BadHost)?;
            out.extend(
                s.split(',')
                    .map(|e| e.trim().to_ascii_lowercase())
                    .filter(|e| !e.is_empty()),
            );
        }
        Ok(out)
    };
    let protos = list("x-forwarded-proto")?;
    if protos.iter().any(|p| p != "http" && p != "https") {
        return Err(NormalizeError::BadHost.into());
    }
    let first = protos.first().map_or(listener, String::as_str);
    let mut hosts = Vec::new();
    for e in list("x-forwarded-host")? {
        hosts.push(normalize_host(&e, first).ok_or(NormalizeError::BadHost)?);
    }
    if hosts.is_empty() && !raw_host.is_empty() {
        hosts.push(normalize_host(raw_host, first).ok_or(NormalizeError::BadHost)?);
    }
    let proto = if protos.is_empty() {
        listener.to_string()
    } else {
        protos.join(",")
    };
    let mut hasher: Option<sha2::Sha256> = None;
    for name in &FORWARDED_FIELDS[3..] {
        for v in h.get_all(*name) {
            use sha2::Digest;
            let d = hasher.get_or_insert_with(sha2::Sha256::new);
            d.update(name.as_bytes());
            d.update(b":");
            d.update(v.as_bytes());
            d.update(b"\n");
        }
    }
    let extra = hasher.map(|d| {
        use sha2::Digest;
        crate::normalize::hex(&d.finalize()[..8])
    });
    Ok((proto, hosts.join(","), extra))
}

/// A Host value, normalized: lowercase, default port for `proto` dropped; `None` if it is not a
/// valid `host[:port]`.
pub fn normalize_host(raw: &str, proto: &str) -> Option<String> {
    let a: http::uri::Authority = raw.trim().parse().ok()?;
    if a.as_str().contains('@') || a.host().is_empty() {
        return None;
    }
    // A host is a name, an IPv4 address or a bracketed IPv6 one. The sub-delimiters `Authority`
    // also lets through (`,` `;` `'` …) would split or end a host where lists and quoted values
    // are built from it (X-Forwarded-Host, rewritten Refresh URLs).
    let name = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    let v6 = |b: u8| b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'[' | b']');
    let host = a.host().as_bytes();
    if !(host.iter().all(|b| name(*b)) || host.starts_with(b"[") && host.iter().all(|b| v6(*b))) {
        return None;
    }
    let host = a.host().to_ascii_lowercase();
    let default = match proto {
        "https" => 443,
        _ => 80,
    };
    Some(match a.port_u16() {
        Some(p) if p != default => format!("{host}:{p}"),
        _ => host,
    })
}

#[cfg(test)]
mod tests;
