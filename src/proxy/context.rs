//! The per-request facts gathered before the cache is consulted: normalized target, credential,
//! route, cache key, request directives and the headers Vary is matched against.

use std::borrow::Cow;
use std::net::SocketAddr;

use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Method};

use super::Proxy;
use crate::error::ProxyError;
use crate::normalize::{self, Normalized};
use crate::origin;
use crate::rfc::directives::Directives;
use crate::routes::Matched;

/// One request, as the cache sees it.
pub struct Ctx<'a> {
    /// The client's request head.
    pub head: &'a Parts,
    /// The client's address.
    pub peer: SocketAddr,
    /// Normalized target.
    pub norm: Normalized,
    /// `Authorization`, or the API key moved out of the query.
    pub credential: Option<HeaderValue>,
    /// The route the path matched.
    pub route: Matched,
    /// The cache key (empty unless the request may be served from the cache).
    pub key: String,
    /// The request's Cache-Control (with Pragma).
    pub directives: Directives,
    /// The request headers as the origin sees them, for Vary.
    pub vary: Cow<'a, HeaderMap>,
    /// Milliseconds spent waiting for the origin, for the access log.
    pub origin_ms: Option<u128>,
}

impl<'a> Ctx<'a> {
    /// Gather the facts; an unnormalizable target is a 400.
    pub fn new(proxy: &Proxy, head: &'a Parts, peer: SocketAddr) -> Result<Self, ProxyError> {
        let target = head.uri.path_and_query().map_or("/", |p| p.as_str());
        let norm = proxy.normalizer().normalize(target)?;
        let credential = head
            .headers
            .get(header::AUTHORIZATION)
            .cloned()
            .or_else(|| norm.credential.clone());
        let route = proxy.config().routes.at(norm.path());
        let mut ctx = Ctx {
            head,
            peer,
            vary: vary_headers(&head.headers, &norm),
            norm,
            credential,
            route,
            key: String::new(),
            directives: Directives::default(),
            origin_ms: None,
        };
        if ctx.is_read() && ctx.route.cache {
            let per_credential = ctx.route.policy.per_credential;
            ctx.key = normalize::cache_key(
                &ctx.norm.path_and_query,
                ctx.credential.as_ref().filter(|_| per_credential),
            );
            ctx.directives = Directives::from_request(&head.headers);
        }
        Ok(ctx)
    }

    /// GET or HEAD: the methods the cache answers.
    pub fn is_read(&self) -> bool {
        self.head.method == Method::GET || self.head.method == Method::HEAD
    }

    /// The request's headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.head.headers
    }
}

/// The request headers as the origin sees them, for Vary matching: hop-by-hop fields removed and a
/// moved API key present as `Authorization`. Borrowed when nothing changes (the common case).
fn vary_headers<'a>(h: &'a HeaderMap, norm: &Normalized) -> Cow<'a, HeaderMap> {
    let moved = norm.credential.is_some() && !h.contains_key(header::AUTHORIZATION);
    if !moved && !h.contains_key(header::CONNECTION) && !h.contains_key(header::TE) {
        return Cow::Borrowed(h);
    }
    let mut eff = h.clone();
    origin::strip_hop_by_hop(&mut eff);
    if let (true, Some(c)) = (moved, &norm.credential) {
        eff.insert(header::AUTHORIZATION, c.clone());
    }
    Cow::Owned(eff)
}
