//! Cache-Control, CDN-Cache-Control, Surrogate-Control and Pragma parsing, and the storability
//! decision built on them, on arbitrary header values.

#![no_main]

mod common;

use std::time::{Duration, SystemTime};

use apicache::rfc::directives::{no_transform, surrogate_control, Directives};
use apicache::rfc::storable::{evaluate, CachePolicy, RequestFacts, Retention, RoutePolicy};
use http::{header, HeaderMap, HeaderName, StatusCode};
use libfuzzer_sys::fuzz_target;

/// Delta-seconds are capped at 2^31 (RFC 9111 §1.2.2).
const CAP: u64 = 1 << 31;

const NAMES: [&str; 9] = [
    "cache-control",
    "cdn-cache-control",
    "surrogate-control",
    "pragma",
    "age",
    "expires",
    "date",
    "last-modified",
    "etag",
];

fuzz_target!(|input: (u16, u32, u8, &[u8])| {
    let (status, clock, flags, data) = input;
    let mut headers = HeaderMap::new();
    for v in common::header_values(data) {
        // The first byte picks which header the rest of the line belongs to.
        let Some(&pick) = v.as_bytes().first() else {
            continue;
        };
        let name = HeaderName::from_static(NAMES[usize::from(pick) % NAMES.len()]);
        let rest = http::HeaderValue::from_bytes(&v.as_bytes()[1..]).expect("a suffix of a value");
        if let Ok(s) = rest.to_str() {
            let mut d = Directives::default();
            d.parse_into(s);
            check_caps(&d);
        }
        headers.append(name, rest);
    }

    let cc = Directives::from_headers(&headers, &header::CACHE_CONTROL);
    check_caps(&cc);
    // from_headers is parse_into over each readable line, in order.
    let mut folded = Directives::default();
    for v in headers.get_all(header::CACHE_CONTROL) {
        if let Ok(s) = v.to_str() {
            folded.parse_into(s);
        }
    }
    assert_eq!(cc, folded);
    let cdn = Directives::from_headers(&headers, &HeaderName::from_static("cdn-cache-control"));
    check_caps(&cdn);
    if let Some(sc) = surrogate_control(&headers) {
        check_caps(&sc);
    }
    let req = Directives::from_request(&headers);
    check_caps(&req);
    assert!(!cc.no_cache || req.no_cache);
    assert_eq!(no_transform(&headers), cc.no_transform);

    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(clock));
    let facts = RequestFacts {
        authorized: flags & 1 != 0,
        no_store: flags & 2 != 0,
        request_time: now,
        response_time: now + Duration::from_secs(u64::from(flags >> 4)),
    };
    let route = RoutePolicy {
        ttl: (flags & 4 != 0).then(|| Duration::from_secs(60)),
        stale_while_revalidate: None,
        stale_if_error: (flags & 8 != 0).then(|| Duration::from_secs(30)),
        per_credential: flags & 16 != 0,
    };
    let policy = CachePolicy {
        heuristic_max: Duration::from_secs(86_400),
        store_set_cookie: false,
    };
    let status = StatusCode::from_u16(100 + status % 500).expect("100..=599 is a status");
    if let Ok(fresh) = evaluate(status, &headers, facts, route, policy) {
        // no-store anywhere addressed to a shared cache forbids storing.
        assert!(!cc.no_store && !facts.no_store);
        let _ = fresh.stale_window(true, Retention::default());
    }
});

fn check_caps(d: &Directives) {
    for v in [
        d.max_age,
        d.s_maxage,
        d.stale_while_revalidate,
        d.stale_if_error,
        d.min_fresh,
    ]
    .into_iter()
    .flatten()
    {
        assert!(v <= CAP, "{d:?}");
    }
    if let Some(v) = d.max_stale {
        assert!(v <= CAP || v == u64::MAX, "{d:?}");
    }
}
