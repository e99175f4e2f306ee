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
    let cc = Directives::from_headers(headers, &header::CACHE_CONTROL);
    let cdn = headers.contains_key("cdn-cache-control").then(|| {
        Directives::from_headers(
            headers,
            &header::HeaderName::from_static("cdn-cache-control"),
        )
    });
    let sc = surrogate_control(headers);
    // Targeted fields speak to this proxy and replace Cache-Control for it (RFC 9213 §2.1).
    let targeted = sc.as_ref().or(cdn.as_ref());
    let effective = targeted.unwrap_or(&cc);

    if effective.no_store || cc.no_store {
        return Err(NoStore::NoStore);
    }
    // A per-credential entry is only ever served to the same credential: it acts as that user's private cache.
    let own_cache = route.per_credential && req.authorized;
    if (cc.private || effective.private) && !own_cache {
        return Err(NoStore::Private);
    }
    if headers.get_all(header::VARY).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|f| f.trim() == "*"))
    }) {
        return Err(NoStore::VaryStar);
    }
    if !cache.store_set_cookie && headers.contains_key(header::SET_COOKIE) {
        return Err(NoStore::SetCookie);
    }
    if req.authorized
        && !route.per_credential
        && !(cc.public || cc.s_maxage.is_some() || cc.must_revalidate)
    {
        return Err(NoStore::Authorization);
    }

    let date = headers
        .get(header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| httpdate::parse_http_date(s).ok());
    let date_value = date.unwrap_or(req.response_time);
    let explicit = explicit_lifetime(effective, headers, date_value, targeted.is_some());
    let lifetime = if let Some(ttl) = route.ttl.filter(|_| heuristically_cacheable(status)) {
        Some(ttl.as_secs())
    } else if let Some(l) = explicit {
        Some(l)
    } else if heuristically_cacheable(status) || cc.public {
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

    let age_value = headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_delta)
        .unwrap_or(0);
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
            .or(cc.stale_while_revalidate)
            .unwrap_or(0),
        sie: route
            .stale_if_error
            .map(|d| d.as_secs())
            .or(effective.stale_if_error)
            .or(cc.stale_if_error)
            .unwrap_or(0),
        no_cache: !route_overrides && effective.no_cache,
        must_revalidate: !route_overrides
            && (effective.must_revalidate
                || effective.proxy_revalidate
                || (targeted.is_none() && cc.s_maxage.is_some())),
    })
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
    let Some(exp) = expires
        .to_str()
        .ok()
        .and_then(|s| httpdate::parse_http_date(s).ok())
    else {
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
        .and_then(|s| httpdate::parse_http_date(s).ok())?;
    let since = date_value.duration_since(lm).ok()?;
    Some((since.as_secs() / 10).min(cap.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn facts(authorized: bool) -> RequestFacts {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        RequestFacts {
            authorized,
            no_store: false,
            request_time: now,
            response_time: now,
        }
    }

    const CACHE: CachePolicy = CachePolicy {
        heuristic_max: Duration::from_secs(86400),
        store_set_cookie: false,
    };

    fn eval(status: u16, h: &[(&str, &str)]) -> Result<Freshness, NoStore> {
        evaluate(
            StatusCode::from_u16(status).unwrap(),
            &headers(h),
            facts(false),
            RoutePolicy::default(),
            CACHE,
        )
    }

    #[test]
    fn precedence_of_lifetimes() {
        assert_eq!(
            eval(200, &[("cache-control", "max-age=10, s-maxage=20")])
                .unwrap()
                .lifetime,
            20
        );
        assert_eq!(
            eval(200, &[("cache-control", "max-age=10")])
                .unwrap()
                .lifetime,
            10
        );
        let f = eval(
            200,
            &[
                ("cache-control", "max-age=10"),
                ("cdn-cache-control", "max-age=99"),
            ],
        )
        .unwrap();
        assert_eq!(f.lifetime, 99);
        let f = eval(
            200,
            &[
                ("cache-control", "max-age=10"),
                ("cdn-cache-control", "max-age=99"),
                ("surrogate-control", "max-age=300+60, no-store;other"),
            ],
        )
        .unwrap();
        assert_eq!(f.lifetime, 300);
        assert_eq!(
            eval(
                200,
                &[
                    ("cache-control", "max-age=10"),
                    ("surrogate-control", "no-store")
                ]
            ),
            Err(NoStore::NoStore)
        );
    }

    #[test]
    fn expires_and_heuristics() {
        let f = eval(
            200,
            &[
                ("date", "Tue, 14 Nov 2023 22:13:20 GMT"),
                ("expires", "Tue, 14 Nov 2023 22:14:20 GMT"),
            ],
        )
        .unwrap();
        assert_eq!(f.lifetime, 60);
        assert_eq!(eval(200, &[("expires", "0")]).unwrap().lifetime, 0);
        let f = eval(
            200,
            &[
                ("date", "Tue, 14 Nov 2023 22:13:20 GMT"),
                ("last-modified", "Tue, 14 Nov 2023 22:11:40 GMT"),
            ],
        )
        .unwrap();
        assert_eq!(f.lifetime, 10);
        assert_eq!(eval(200, &[]), Err(NoStore::NoFreshness));
        assert_eq!(
            eval(500, &[("last-modified", "Tue, 14 Nov 2023 22:11:40 GMT")]),
            Err(NoStore::NoFreshness)
        );
        assert_eq!(
            eval(500, &[("cache-control", "max-age=5")])
                .unwrap()
                .lifetime,
            5
        );
        assert_eq!(
            eval(206, &[("cache-control", "max-age=5")]),
            Err(NoStore::Status)
        );
    }

    #[test]
    fn unstorable_responses() {
        assert_eq!(
            eval(200, &[("cache-control", "no-store, max-age=5")]),
            Err(NoStore::NoStore)
        );
        assert_eq!(
            eval(200, &[("cache-control", "private, max-age=5")]),
            Err(NoStore::Private)
        );
        assert_eq!(
            eval(200, &[("cache-control", "max-age=5"), ("vary", "*")]),
            Err(NoStore::VaryStar)
        );
        assert_eq!(
            eval(
                200,
                &[("cache-control", "max-age=5"), ("set-cookie", "a=b")]
            ),
            Err(NoStore::SetCookie)
        );
    }

    #[test]
    fn authorization_rules() {
        let h = headers(&[("cache-control", "max-age=5")]);
        let ok = StatusCode::OK;
        assert_eq!(
            evaluate(ok, &h, facts(true), RoutePolicy::default(), CACHE),
            Err(NoStore::Authorization)
        );
        let per = RoutePolicy {
            per_credential: true,
            ..Default::default()
        };
        assert!(evaluate(ok, &h, facts(true), per, CACHE).is_ok());
        for cc in [
            "public, max-age=5",
            "s-maxage=5",
            "max-age=5, must-revalidate",
        ] {
            let h = headers(&[("cache-control", cc)]);
            assert!(
                evaluate(ok, &h, facts(true), RoutePolicy::default(), CACHE).is_ok(),
                "{cc}"
            );
        }
    }

    #[test]
    fn route_ttl_overrides_lifetime_not_privacy() {
        let route = RoutePolicy {
            ttl: Some(Duration::from_secs(300)),
            ..Default::default()
        };
        let h = headers(&[("cache-control", "no-cache, max-age=0")]);
        let f = evaluate(StatusCode::OK, &h, facts(false), route, CACHE).unwrap();
        assert_eq!(f.lifetime, 300);
        assert!(!f.no_cache);
        let h = headers(&[("cache-control", "private")]);
        assert_eq!(
            evaluate(StatusCode::OK, &h, facts(false), route, CACHE),
            Err(NoStore::Private)
        );
        // Errors are not given the route's lifetime.
        assert_eq!(
            evaluate(
                StatusCode::BAD_GATEWAY,
                &HeaderMap::new(),
                facts(false),
                route,
                CACHE
            ),
            Err(NoStore::NoFreshness)
        );
    }

    #[test]
    fn age_is_corrected() {
        let f = eval(200, &[("cache-control", "max-age=60"), ("age", "15")]).unwrap();
        assert_eq!(f.initial_age, 15);
        let f = eval(
            200,
            &[(
                "cache-control",
                "max-age=60, stale-while-revalidate=5, stale-if-error=9",
            )],
        )
        .unwrap();
        assert_eq!((f.swr, f.sie), (5, 9));
        assert!(
            eval(200, &[("cache-control", "s-maxage=60")])
                .unwrap()
                .must_revalidate
        );
    }
}
