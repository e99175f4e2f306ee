//! The per-request facts gathered before the cache is consulted: normalized target, credential,
//! route, cache key, request directives, the headers Vary is matched against and, on
//! `shared-verified` routes, what the credential's verdict allows.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Method};

use super::Proxy;
use crate::config::Credentialed;
use crate::error::ProxyError;
use crate::forwarding::{Client, Forwarding};
use crate::normalize::{self, NormalizeError, Normalized};
use crate::request_id::REQUEST_ID;
use crate::rfc::cache_status::Detail;
use crate::rfc::directives::Directives;
use crate::rfc::storable::RequestFacts;
use crate::rfc::vary::Vary;
use crate::routes::Matched;
use crate::settings::Settings;
use crate::verify::{Admission, Asker, VerdictKey};

/// One request, as the cache sees it.
pub struct Ctx<'a> {
    /// The client's request head.
    pub head: &'a Parts,
    /// The client's address.
    pub peer: SocketAddr,
    /// The host and scheme the request is for, as the origin is told.
    pub client: Client,
    /// Normalized target.
    pub norm: Normalized,
    /// `Authorization`, or the API key moved out of the query.
    pub credential: Option<HeaderValue>,
    /// The route the path matched.
    pub route: Matched,
    /// Why the request is forwarded uncached whatever is stored (route or credential policy).
    pub bypass: Option<Detail>,
    /// The cache key (empty unless the request may be served from the cache).
    pub key: String,
    /// The request's Cache-Control (with Pragma).
    pub directives: Directives,
    /// The request headers as the origin sees them, for Vary.
    pub vary: Cow<'a, HeaderMap>,
    /// Milliseconds spent waiting for the origin, for the access log.
    pub origin_ms: Option<u128>,
    /// On a `shared-verified` route: the request's verdict class and the route's lifetimes.
    pub asker: Option<Asker>,
    /// On a `shared-verified` route, for a request the cache may answer: what its verdict allows.
    pub admission: Option<Admission>,
    /// The request id: logged, sent to the origin and echoed to the client.
    pub request_id: HeaderValue,
    /// The settings this request is answered under, start to end (a reload does not change
    /// them midway).
    pub set: Arc<Settings>,
}

impl<'a> Ctx<'a> {
    /// Gather the facts; a request the cache cannot key safely is refused (400, 414, 421).
    pub fn new(
        proxy: &Proxy,
        set: Arc<Settings>,
        head: &'a Parts,
        peer: SocketAddr,
        request_id: HeaderValue,
    ) -> Result<Self, ProxyError> {
        let cfg = &set.cfg;
        let target = head.uri.path_and_query().map_or("/", |p| p.as_str());
        if target.len() as u64 > cfg.server.max_uri_length.as_u64() {
            return Err(ProxyError::UriTooLong);
        }
        let client = cfg.forwarding.client(head, peer)?;
        let norm = set.normalizer.normalize(target)?;
        let mut auth = head.headers.get_all(header::AUTHORIZATION).iter();
        let credential = match (auth.next(), auth.next()) {
            // The key would hash one line and the origin might answer for another.
            (Some(_), Some(_)) => return Err(NormalizeError::DuplicateCredential.into()),
            (Some(a), None) => Some(a.clone()),
            _ => norm.credential.clone(),
        };
        let (route, ambiguous) =
            match normalize::route_path(norm.path(), cfg.normalize.case_insensitive_paths) {
                Cow::Borrowed(_) => (cfg.routes.at(norm.path()), false),
                Cow::Owned(loose) => stricter(cfg.routes.at(norm.path()), cfg.routes.at(&loose)),
            };
        let mut per_credential = route.policy.per_credential;
        let mut bypass = (!route.cache).then_some(Detail::Route);
        if ambiguous {
            bypass = Some(Detail::AmbiguousRoute);
        }
        if route.id.is_none() && credential.is_some() {
            match cfg.cache.credentialed {
                Credentialed::Rfc => {}
                Credentialed::PerCredential => per_credential = true,
                Credentialed::Pass => bypass = Some(Detail::Credentialed),
            }
        }
        let vary = vary_headers(
            &head.headers,
            head,
            peer,
            &client,
            credential.as_ref(),
            &cfg.forwarding,
        );
        let mut ctx = Ctx {
            head,
            peer,
            vary,
            client,
            norm,
            credential,
            route,
            bypass,
            key: String::new(),
            directives: Directives::default(),
            origin_ms: None,
            asker: None,
            admission: None,
            request_id,
            set,
        };
        ctx.route.policy.per_credential = per_credential;
        if !ctx.is_read() {
            return Ok(ctx);
        }
        let origin = ctx.client.origin();
        // Only a read's answer is a verdict: a CORS preflight or a POST says nothing about
        // whether the credential may read. Nor does one for a path the origin may read as
        // another route's.
        if let (Some(route), Some(policy), false) =
            (ctx.route.id, ctx.route.policy.verify, ambiguous)
        {
            let pattern = ctx.set.cfg.routes.pattern(route);
            let key = VerdictKey::new(
                pattern,
                &origin,
                ctx.credential.as_ref(),
                head.headers.get_all(header::COOKIE).iter(),
            );
            ctx.asker = Some(Asker { key, policy });
        }
        if ctx.bypass.is_none() {
            ctx.key = ctx.read_key(&origin);
            ctx.directives = Directives::from_request(&head.headers);
            ctx.admission = ctx.asker.map(|a| proxy.verdicts().admit(&a.key));
        }
        Ok(ctx)
    }

    /// The key a read of this URL is stored under on this request's route. Entries a
    /// `shared-verified` route stores are marked: they may only be served to verified
    /// credentials, so a reload that gives the path another policy must not find them.
    pub fn read_key(&self, origin: &str) -> String {
        let per_credential = self.route.policy.per_credential;
        let mut key = normalize::cache_key(
            origin,
            &self.norm.path_and_query,
            self.credential.as_ref().filter(|_| per_credential),
        );
        if self.route.policy.verify.is_some() {
            key.push_str(" #verified");
        }
        key
    }

    /// The headers of this request's origin request, with this request's id (replacing any the
    /// client sent that was not kept). With `origin.preserve_host`, `Host` is the client's host
    /// as keyed (none for HTTP/1.0 without one: the origin's authority).
    pub fn origin_headers(&self) -> HeaderMap {
        let mut h = self.set.cfg.forwarding.headers(
            self.headers(),
            &self.client,
            self.head.version,
            self.peer,
            self.credential.as_ref(),
        );
        if self.set.cfg.origin.preserve_host {
            let host = self.client.public().host;
            if let (false, Ok(v)) = (host.is_empty(), HeaderValue::from_str(&host)) {
                h.insert(header::HOST, v);
            }
        }
        h.insert(REQUEST_ID, self.request_id.clone());
        h
    }

    /// What storability needs to know about this request, for an answer that just arrived
    /// (a pass-through, a HEAD, a POST: their send time is not tracked, so no response delay).
    pub fn facts_now(&self, no_store: bool) -> RequestFacts {
        let now = SystemTime::now();
        RequestFacts {
            authorized: self.credential.is_some(),
            no_store,
            unverified: self.admission == Some(Admission::Unverified),
            request_time: now,
            response_time: now,
        }
    }

    /// What concurrent requests for this request's variant collapse on. A request still to be
    /// verified only waits for its own credential's answer, never for another's.
    pub fn flight(&self, vary: &Vary) -> String {
        let mut flight = vary.flight_key(&self.key, &self.vary);
        if let (Some(Admission::Unverified), Some(asker)) = (&self.admission, &self.asker) {
            flight.push_str(&asker.key.flight_suffix());
        }
        flight
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

/// The route for a path read strictly and loosely: the loose reading's when the strict one
/// matches nothing, or when it is stricter (no caching over per-credential over shared-verified
/// over shared): a path variant the origin may read as a protected path gets that path's policy.
/// `true` when the two readings are different routes and either is `shared-verified`: the origin
/// would judge the credential on one route while its verdict counted on the other.
fn stricter(strict: Matched, loose: Matched) -> (Matched, bool) {
    let rank = |m: &Matched| match (m.cache, m.policy.per_credential, m.policy.verify) {
        (false, _, _) => 3,
        (true, true, _) => 2,
        (true, false, Some(_)) => 1,
        _ => 0,
    };
    let ambiguous = strict.id.is_some()
        && strict.id != loose.id
        && (strict.policy.verify.is_some() || loose.policy.verify.is_some());
    let pick = if strict.id.is_none() || rank(&loose) > rank(&strict) {
        loose
    } else {
        strict
    };
    (pick, ambiguous)
}

/// The request headers as the origin sees them, for Vary matching. Borrowed when the origin gets
/// the client's fields unchanged (the common case); otherwise exactly the origin request's
/// fields, so a field the origin varies on can never differ between the key and the origin.
fn vary_headers<'a>(
    h: &'a HeaderMap,
    head: &Parts,
    peer: SocketAddr,
    who: &Client,
    credential: Option<&HeaderValue>,
    fwd: &Forwarding,
) -> Cow<'a, HeaderMap> {
    let moved = credential.is_some() && !h.contains_key(header::AUTHORIZATION);
    if !moved
        && !h.contains_key(header::CONNECTION)
        && !h.contains_key(header::TE)
        && !fwd.rewrites(h, who)
    {
        return Cow::Borrowed(h);
    }
    Cow::Owned(fwd.headers(h, who, head.version, peer, credential))
}
