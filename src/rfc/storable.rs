//! Storability and freshness of a response for a shared cache (RFC 9111 §3, §4.2; RFC 9213; Surrogate-Control).
//!
//! Everything here is pure: callers pass the clock in, so tests do not sleep.

use std::time::{Duration, SystemTime};

use http::{header, HeaderMap, StatusCode};

use super::directives::{parse_delta, surrogate_control, Directives};

/// Route settings that shape policy.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoutePolicy {
    /// This proxy's lifetime for the route.
    pub ttl: Option<Duration>,
    /// Route stale-while-revalidate window.
    pub stale_while_revalidate: Option<Duration>,
    /// Route stale-if-error window.
    pub stale_if_error: Option<Duration>,
    /// Requests on the route are keyed by credential.
    pub per_credential: bool,
    /// `shared-verified`: credentialed answers are shared, among credentials the origin accepted.
    pub verify: Option<crate::verify::VerifyPolicy>,
}

/// Settings from `[cache]` that shape policy.
#[derive(Debug, Clone, Copy)]
pub struct CachePolicy {
    /// Cap on heuristic freshness.
    pub heuristic_max: Duration,
    /// Whether Set-Cookie responses may be stored.
    pub store_set_cookie: bool,
}

/// Why a response was not stored: feeds logs and `Cache-Status: detail=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoStore {
    /// Status not cacheable, or not without explicit freshness.
    Status,
    /// `no-store` in the response (Cache-Control, CDN-Cache-Control or Surrogate-Control).
    NoStore,
    /// `no-store` in the request.
    RequestNoStore,
    /// `private`.
    Private,
    /// Credentialed request on a shared route without public / s-maxage / must-revalidate.
    Authorization,
    /// No explicit or heuristic freshness and no validators worth keeping.
    NoFreshness,
    /// `Vary: *`.
    VaryStar,
    /// The response sets cookies.
    SetCookie,
    /// Body above `max_object_size`.
    TooLarge,
    /// Fills already buffer `cache.max_fill_memory`: streamed through.
    FillMemory,
    /// Unsupported Content-Encoding from the origin.
    Encoding,
    /// `shared-verified`: not a 2xx, to an asker without a verdict (a 404 or a redirect to a key
    /// the origin may not have checked must not stand for verified readers).
    Unverified,
}

impl NoStore {
    /// Short token for headers and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            NoStore::Status => "status",
            NoStore::NoStore => "no-store",
            NoStore::RequestNoStore => "request-no-store",
            NoStore::Private => "private",
            NoStore::Authorization => "authorization",
            NoStore::NoFreshness => "no-freshness",
            NoStore::VaryStar => "vary-star",
            NoStore::SetCookie => "set-cookie",
            NoStore::TooLarge => "too-large",
            NoStore::FillMemory => "fill-memory",
            NoStore::Encoding => "content-encoding",
            NoStore::Unverified => "unverified-asker",
        }
    }
}

/// What storing a response means: its lifetime and how it may be served once stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Freshness lifetime in seconds.
    pub lifetime: u64,
    /// Age the response already had when received (RFC 9111 §4.2.3 corrected initial age).
    pub initial_age: u64,
    /// Serve-stale-while-revalidate window, seconds.
    pub swr: u64,
    /// Serve-stale-on-error window, seconds.
    pub sie: u64,
    /// Never serve stale and revalidate on every use (no-cache).
    pub no_cache: bool,
    /// Stale copies must not be served without revalidation (must-revalidate, proxy-revalidate, s-maxage).
    pub must_revalidate: bool,
}

impl Freshness {
    /// A plain lifetime with no stale windows and no revalidation requirements.
    pub fn for_lifetime(lifetime: u64) -> Self {
        Freshness {
            lifetime,
            initial_age: 0,
            swr: 0,
            sie: 0,
            no_cache: false,
            must_revalidate: false,
        }
    }

    /// How long past freshness the object may still be useful (moka expiry = lifetime + this):
    /// the longest stale window that applies, at least `keep.grace` while it may be served stale
    /// at all (for a request's `max-stale`), or `keep.revalidate` for an object with validators.
    pub fn stale_window(&self, has_validators: bool, keep: Retention) -> Duration {
        let serve = if self.must_revalidate || self.no_cache {
            Duration::ZERO
        } else {
            Duration::from_secs(self.swr.max(self.sie)).max(keep.grace)
        };
        // A stale object with validators saves a body download on revalidation: keep it a while.
        let revalidate = if has_validators {
            keep.revalidate
        } else {
            Duration::ZERO
        };
        serve.max(revalidate)
    }
}

/// How long stale objects are kept beyond their own windows (`[cache]` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// `cache.keep_for_revalidation`: an object with validators, for a conditional refresh.
    pub revalidate: Duration,
    /// `cache.stale_grace`: any object that may be served stale, so `max-stale` finds it.
    pub grace: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            revalidate: Duration::from_secs(3600),
            grace: Duration::from_secs(10),
        }
    }
}

/// Status codes that are heuristically cacheable (RFC 9110 §15.1).
pub fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Inputs about the request for [`evaluate`].
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts {
    /// The request carried credentials (Authorization or a moved API key).
    pub authorized: bool,
    /// Request Cache-Control had no-store.
    pub no_store: bool,
    /// On a `shared-verified` route, the asker had no verdict: only an answer that accepts it
    /// (a 2xx) may be stored for others.
    pub unverified: bool,
    /// When the request was sent to the origin.
    pub request_time: SystemTime,
    /// When the response headers arrived.
    pub response_time: SystemTime,
}

/// Decide whether a response may be stored, and with what freshness (RFC 9111 §3, §4.2; RFC 9213; Surrogate-Control).
pub fn evaluate(
    status: StatusCode,
    headers: &HeaderMap,
    req: RequestFacts,
    route: RoutePolicy,
    cache: CachePolicy,
) -> Result<Freshness, NoStore> {
    if req.no_store {
        return Err(NoStore::RequestNoStore);
    }
    if matches!(status.as_u16(), 100..=199 | 206 | 304) {
        return Err(NoStore::Status);
    }
    let fields = ResponseDirectives::of(headers);
    let effective = &fields.effective;
    let targeted = fields.source != Source::CacheControl;
    // RFC 9111 §5.2.2.3: must-understand lets a cache that knows the status ignore no-store, and
    // forbids storing for one that does not.
    if effective.must_understand && !understood(status) {
        return Err(NoStore::Status);
    }
    if fields.no_store() {
        return Err(NoStore::NoStore);
    }
    // A per-credential entry is only ever served to the same credential: it acts as that user's private cache.
    let own_cache = route.per_credential && req.authorized;
    if fields.private() && !own_cache {
        return Err(NoStore::Private);
    }
    // `X-Request-Id` is unique per request (apicache generates one when the client sent none),
    // so varying on it is varying on everything.
    if headers.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|f| f.trim() == "*" || f.trim().eq_ignore_ascii_case("x-request-id"))
        })
    }) {
        return Err(NoStore::VaryStar);
    }
    // `private="Set-Cookie"` (or no-cache=) stores the response without its cookies.
    let cookies_withheld = fields.withheld().any(|f| f == "set-cookie");
    if !cache.store_set_cookie && headers.contains_key(header::SET_COOKIE) && !cookies_withheld {
        return Err(NoStore::SetCookie);
    }
    // On a shared-verified route, an answer that refuses its asker speaks for that asker alone.
    if route.verify.is_some() && matches!(status.as_u16(), 401 | 403 | 407) {
        return Err(NoStore::Status);
    }
    if route.verify.is_some() && req.unverified && !status.is_success() {
        return Err(NoStore::Unverified);
    }
    // The operator opted in: the origin's acceptance of each credential stands in for §3.5's
    // explicit permission (`private` still forbids sharing, above).
    if req.authorized && !route.per_credential && route.verify.is_none() {
        // RFC 9111 §3.5, read strictly across both fields: a credentialed answer is shared only
        // when one field grants it and Cache-Control does not call it private.
        if fields.cache_control().private {
            return Err(NoStore::Private);
        }
        if !fields.grants_credentialed() {
            return Err(NoStore::Authorization);
        }
    }

    let date = headers
        .get(header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(super::date::parse);
    let date_value = date.unwrap_or(req.response_time);
    let explicit = explicit_lifetime(effective, headers, date_value, targeted);
    let lifetime = if let Some(ttl) = route.ttl.filter(|_| heuristically_cacheable(status)) {
        Some(ttl.as_secs())
    } else if let Some(l) = explicit {
        Some(l)
    } else if heuristically_cacheable(status) || effective.public {
        heuristic_lifetime(headers, date_value, cache.heuristic_max)
    } else {
        None
    };
    let has_validators =
        headers.contains_key(header::ETAG) || headers.contains_key(header::LAST_MODIFIED);
    let lifetime = match lifetime {
        Some(l) => l,
        // Stored only as a validator source: stale at once, revalidated on every use.
        None if has_validators && heuristically_cacheable(status) => 0,
        None => return Err(NoStore::NoFreshness),
    };

    let age_value = age_value(headers);
    let apparent_age = req
        .response_time
        .duration_since(date_value)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let response_delay = req
        .response_time
        .duration_since(req.request_time)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let initial_age = apparent_age.max(age_value.saturating_add(response_delay));

    let route_overrides = route.ttl.is_some();
    Ok(Freshness {
        lifetime,
        initial_age: if route_overrides { 0 } else { initial_age },
        swr: route
            .stale_while_revalidate
            .map(|d| d.as_secs())
            .or(effective.stale_while_revalidate)
            .unwrap_or(0),
        sie: route
            .stale_if_error
            .map(|d| d.as_secs())
            .or(effective.stale_if_error)
            .unwrap_or(0),
        no_cache: !route_overrides && effective.no_cache,
        must_revalidate: !route_overrides
            && (effective.must_revalidate
                || effective.proxy_revalidate
                || effective.s_maxage.is_some()),
    })
}

/// Which field the directives this proxy obeys came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `Cache-Control`: no targeted field applies.
    CacheControl,
    /// `Surrogate-Control` addressed to this proxy.
    Surrogate,
    /// A valid `CDN-Cache-Control` (RFC 9213).
    Cdn,
}

/// A response's caching fields as this proxy reads them.
#[derive(Debug, Clone)]
pub struct ResponseDirectives {
    /// What this proxy obeys: Surrogate-Control addressed to it, else a valid CDN-Cache-Control,
    /// else Cache-Control. An invalid CDN-Cache-Control is ignored as if absent.
    pub effective: Directives,
    /// Where `effective` came from.
    pub source: Source,
    /// Cache-Control, when a targeted field replaced it.
    replaced: Option<Directives>,
}

impl ResponseDirectives {
    /// Read a response's Surrogate-Control, CDN-Cache-Control and Cache-Control.
    pub fn of(headers: &HeaderMap) -> Self {
        let targeted = surrogate_control(headers)
            .map(|d| (d, Source::Surrogate))
            .or_else(|| {
                Directives::from_structured(headers, "cdn-cache-control").map(|d| (d, Source::Cdn))
            });
        let cc = || Directives::from_headers(headers, &header::CACHE_CONTROL);
        match targeted {
            Some((effective, source)) => ResponseDirectives {
                effective,
                source,
                replaced: Some(cc()),
            },
            None => ResponseDirectives {
                effective: cc(),
                source: Source::CacheControl,
                replaced: None,
            },
        }
    }

    /// The response's own Cache-Control.
    pub fn cache_control(&self) -> &Directives {
        self.replaced.as_ref().unwrap_or(&self.effective)
    }

    /// Cache-Control's privacy directives that still bind: a valid CDN-Cache-Control replaces
    /// Cache-Control whole (RFC 9213 §2.2), but Surrogate-Control, as at Fastly, only its lifetime.
    fn binding_cache_control(&self) -> Option<&Directives> {
        self.replaced
            .as_ref()
            .filter(|_| self.source == Source::Surrogate)
    }

    /// `no-store` applies (and `must-understand` does not lift it).
    pub fn no_store(&self) -> bool {
        let cc = self.binding_cache_control();
        (self.effective.no_store && !self.effective.must_understand)
            || cc.is_some_and(|c| c.no_store && !c.must_understand)
    }

    /// Unqualified `private` applies.
    pub fn private(&self) -> bool {
        self.effective.private || self.binding_cache_control().is_some_and(|c| c.private)
    }

    /// Names of the fields qualified `private="…"` / `no-cache="…"` keep out of the cache.
    pub fn withheld(&self) -> impl Iterator<Item = &str> {
        fn lists(d: &Directives) -> impl Iterator<Item = &String> {
            d.private_fields.iter().chain(&d.no_cache_fields)
        }
        lists(&self.effective)
            .chain(self.binding_cache_control().into_iter().flat_map(lists))
            .map(String::as_str)
    }

    /// `public`, `s-maxage` or `must-revalidate` in either field: a shared cache may store the
    /// answer to a credentialed request (RFC 9111 §3.5).
    pub fn grants_credentialed(&self) -> bool {
        let grants = |d: &Directives| d.public || d.s_maxage.is_some() || d.must_revalidate;
        grants(&self.effective) || self.replaced.as_ref().is_some_and(grants)
    }
}

/// Response fields a shared cache must not store or reuse unvalidated: those named by qualified
/// `private="…"` and `no-cache="…"` (RFC 9111 §5.2.2.4, §5.2.2.7). The response is stored without them.
pub fn withheld_fields(headers: &HeaderMap) -> Vec<header::HeaderName> {
    ResponseDirectives::of(headers)
        .withheld()
        .filter_map(|f| header::HeaderName::from_bytes(f.as_bytes()).ok())
        .collect()
}

/// Whether a POST response may answer later GETs for its target (RFC 9111 §4, RFC 9110 §9.3.3):
/// a representation (200/203) whose `Content-Location` is the target URI and which carries
/// explicit freshness from the origin (a route `ttl` or a heuristic does not count).
pub fn post_reusable(status: StatusCode, headers: &HeaderMap, location_is_target: bool) -> bool {
    if !location_is_target || !matches!(status.as_u16(), 200 | 203) {
        return false;
    }
    let fields = ResponseDirectives::of(headers);
    let d = &fields.effective;
    d.s_maxage.is_some_and(|l| l > 0)
        || d.max_age.is_some_and(|l| l > 0)
        || (fields.source == Source::CacheControl && headers.contains_key(header::EXPIRES))
}

/// Status codes whose caching rules this cache implements (for `must-understand`): every final
/// status RFC 9110 defines, except 206, which is never stored.
pub fn understood(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200..=205 | 300..=305 | 307 | 308 | 400..=417 | 421 | 422 | 426 | 500..=505
    )
}

/// The `Age` field's value: the first member of the first line (RFC 9111 §5.1 asks a cache to use
/// the first when it is a list); an invalid value counts as absent.
fn age_value(headers: &HeaderMap) -> u64 {
    headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.split(',').next())
        .and_then(|s| parse_delta(s.trim()))
        .unwrap_or(0)
}

/// Lifetime from s-maxage, max-age or Expires, in that order (RFC 9111 §4.2.1).
fn explicit_lifetime(
    d: &Directives,
    headers: &HeaderMap,
    date_value: SystemTime,
    targeted: bool,
) -> Option<u64> {
    if let Some(s) = d.s_maxage {
        return Some(s);
    }
    if let Some(m) = d.max_age {
        return Some(m);
    }
    if targeted {
        return None;
    }
    let expires = headers.get(header::EXPIRES)?;
    // An invalid Expires (e.g. "0") means already expired (RFC 9111 §5.3).
    let Some(exp) = expires.to_str().ok().and_then(super::date::parse) else {
        return Some(0);
    };
    Some(
        exp.duration_since(date_value)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )
}

/// 10% of the time since Last-Modified, capped (RFC 9111 §4.2.2).
fn heuristic_lifetime(headers: &HeaderMap, date_value: SystemTime, cap: Duration) -> Option<u64> {
    let lm = headers
        .get(header::LAST_MODIFIED)?
        .to_str()
        .ok()
        .and_then(super::date::parse)?;
    let since = date_value.duration_since(lm).ok()?;
    Some((since.as_secs() / 10).min(cap.as_secs()))
}

#[cfg(test)]
mod tests;
