//! Table tests for storability and freshness.
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
        unverified: false,
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
            &[
                ("cache-control", "max-age=5"),
                ("vary", "Accept, X-Request-ID")
            ]
        ),
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
fn shared_verified_rules() {
    let verified = RoutePolicy {
        ttl: Some(Duration::from_secs(60)),
        verify: Some(crate::verify::VerifyPolicy {
            verify_ttl: Duration::from_secs(300),
            reject_ttl: Duration::from_secs(30),
        }),
        ..Default::default()
    };
    let forever = headers(&[("cache-control", "max-age=600")]);
    // (status, headers, credentialed, result)
    let rows = [
        (200, HeaderMap::new(), true, Ok(60)),
        (200, HeaderMap::new(), false, Ok(60)),
        (404, HeaderMap::new(), true, Ok(60)),
        (
            200,
            headers(&[("cache-control", "private")]),
            true,
            Err(NoStore::Private),
        ),
        // A refusal, even with a lifetime of its own, is never shared.
        (401, forever.clone(), true, Err(NoStore::Status)),
        (403, forever.clone(), false, Err(NoStore::Status)),
        (407, forever, true, Err(NoStore::Status)),
    ];
    // To an asker without a verdict, only an answer that accepts it is stored.
    for (status, want) in [
        (200, Ok(60)),
        (404, Err(NoStore::Unverified)),
        (301, Err(NoStore::Unverified)),
    ] {
        let f = RequestFacts {
            unverified: true,
            ..facts(true)
        };
        let got = evaluate(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            f,
            verified,
            CACHE,
        )
        .map(|f| f.lifetime);
        assert_eq!(got, want, "{status}");
    }
    for (status, h, authorized, want) in rows {
        let got = evaluate(
            StatusCode::from_u16(status).unwrap(),
            &h,
            facts(authorized),
            verified,
            CACHE,
        )
        .map(|f| f.lifetime);
        assert_eq!(got, want, "{status} {h:?} {authorized}");
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

#[test]
fn targeted_fields_replace_cache_control_table() {
    // (headers, expected lifetime or why not stored)
    type Row<'a> = (&'a [(&'a str, &'a str)], Result<u64, NoStore>);
    let rows: &[Row] = &[
        // A valid CDN-Cache-Control replaces Cache-Control whole, no-store and private included.
        (
            &[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "max-age=60"),
            ],
            Ok(60),
        ),
        (
            &[
                ("cache-control", "private"),
                ("cdn-cache-control", "max-age=60"),
            ],
            Ok(60),
        ),
        (
            &[
                ("cache-control", "max-age=60"),
                ("cdn-cache-control", "no-store"),
            ],
            Err(NoStore::NoStore),
        ),
        (
            &[
                ("cache-control", "max-age=60"),
                ("cdn-cache-control", "private"),
            ],
            Err(NoStore::Private),
        ),
        // An invalid one is ignored: Cache-Control applies as if it were absent.
        (
            &[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "max-age=60,"),
            ],
            Err(NoStore::NoStore),
        ),
        (
            &[
                ("cache-control", "max-age=7"),
                ("cdn-cache-control", "Max-Age=60"),
            ],
            Ok(7),
        ),
        (
            &[
                ("cache-control", "max-age=7"),
                ("cdn-cache-control", "no-store, "),
            ],
            Ok(7),
        ),
        // Without an explicit lifetime a targeted field does not fall back to Expires.
        (
            &[
                ("expires", "Tue, 14 Nov 2023 22:14:20 GMT"),
                ("date", "Tue, 14 Nov 2023 22:13:20 GMT"),
                ("cdn-cache-control", "public"),
            ],
            Err(NoStore::NoFreshness),
        ),
        // Surrogate-Control addressed to this proxy wins over both for the lifetime...
        (
            &[
                ("cache-control", "max-age=5"),
                ("surrogate-control", "max-age=30"),
                ("cdn-cache-control", "no-store"),
            ],
            Ok(30),
        ),
        // ...but, as at Fastly, Cache-Control's private and no-store still bind under it.
        (
            &[
                ("cache-control", "private"),
                ("surrogate-control", "max-age=30"),
            ],
            Err(NoStore::Private),
        ),
        (
            &[
                ("cache-control", "no-store"),
                ("surrogate-control", "max-age=30"),
            ],
            Err(NoStore::NoStore),
        ),
        // A Surrogate-Control with no caching directive is not a targeted field at all.
        (
            &[
                ("cache-control", "private"),
                ("surrogate-control", "content=\"ESI/1.0\""),
                ("last-modified", "Tue, 14 Nov 2023 22:11:40 GMT"),
            ],
            Err(NoStore::Private),
        ),
        (
            &[("cdn-cache-control", "no-store"), ("surrogate-control", "")],
            Err(NoStore::NoStore),
        ),
    ];
    for (h, want) in rows {
        assert_eq!(eval(200, h).map(|f| f.lifetime), *want, "{h:?}");
    }
}

#[test]
fn must_understand_and_qualified_directives_table() {
    // (status, headers, expected lifetime or why not stored)
    type Row<'a> = (u16, &'a [(&'a str, &'a str)], Result<u64, NoStore>);
    let rows: &[Row] = &[
        (
            200,
            &[("cache-control", "must-understand, no-store, max-age=60")],
            Ok(60),
        ),
        (
            404,
            &[("cache-control", "must-understand, no-store, max-age=60")],
            Ok(60),
        ),
        (
            299,
            &[("cache-control", "must-understand, no-store, max-age=60")],
            Err(NoStore::Status),
        ),
        (
            299,
            &[("cache-control", "must-understand, max-age=60")],
            Err(NoStore::Status),
        ),
        (
            200,
            &[("cache-control", "no-store, max-age=60")],
            Err(NoStore::NoStore),
        ),
        (299, &[("cache-control", "max-age=60")], Ok(60)),
        // Qualified private / no-cache store the rest of the response.
        (
            200,
            &[("cache-control", "private=\"x-user\", max-age=60")],
            Ok(60),
        ),
        (
            200,
            &[
                ("cache-control", "private=\"set-cookie\", max-age=60"),
                ("set-cookie", "a=b"),
            ],
            Ok(60),
        ),
        (
            200,
            &[
                ("cache-control", "no-cache=\"set-cookie\", max-age=60"),
                ("set-cookie", "a=b"),
            ],
            Ok(60),
        ),
        (
            200,
            &[
                ("cache-control", "private=\"x-user\", max-age=60"),
                ("set-cookie", "a=b"),
            ],
            Err(NoStore::SetCookie),
        ),
        (
            200,
            &[("cache-control", "private, max-age=60")],
            Err(NoStore::Private),
        ),
    ];
    for (status, h, want) in rows {
        assert_eq!(
            eval(*status, h).map(|f| f.lifetime),
            *want,
            "{status} {h:?}"
        );
    }
    let h = headers(&[(
        "cache-control",
        "private=\"X-User\", no-cache=\"set-cookie, x-debug\"",
    )]);
    assert_eq!(withheld_fields(&h), ["x-user", "set-cookie", "x-debug"]);
    assert!(withheld_fields(&headers(&[("cache-control", "private")])).is_empty());
    let f = eval(200, &[("cache-control", "no-cache=\"x\", max-age=60")]).unwrap();
    assert!(
        !f.no_cache,
        "a qualified no-cache does not force revalidation of the rest"
    );
}

#[test]
fn age_list_uses_the_first_member() {
    // (Age lines, initial age)
    let rows: &[(&[&str], u64)] = &[
        (&["7200, 0"], 7200),
        (&["7200,0"], 7200),
        (&["7200", "0"], 7200),
        (&[" 30 "], 30),
        (&["x, 5"], 0),
        (&["-5"], 0),
    ];
    for (ages, want) in rows {
        let mut h: Vec<(&str, &str)> = vec![("cache-control", "max-age=60000")];
        h.extend(ages.iter().map(|a| ("age", *a)));
        assert_eq!(eval(200, &h).unwrap().initial_age, *want, "{ages:?}");
    }
}

#[test]
fn post_reuse_table() {
    // (status, headers, Content-Location is the target, reusable for GET)
    type Row<'a> = (u16, &'a [(&'a str, &'a str)], bool, bool);
    let rows: &[Row] = &[
        (200, &[("cache-control", "max-age=60")], true, true),
        (203, &[("cache-control", "s-maxage=60")], true, true),
        (
            200,
            &[("expires", "Tue, 14 Nov 2023 22:14:20 GMT")],
            true,
            true,
        ),
        (200, &[("cdn-cache-control", "max-age=60")], true, true),
        (200, &[("cache-control", "max-age=60")], false, false),
        (201, &[("cache-control", "max-age=60")], true, false),
        (
            200,
            &[("last-modified", "Tue, 14 Nov 2023 22:11:40 GMT")],
            true,
            false,
        ),
        (200, &[("cache-control", "public")], true, false),
        (200, &[], true, false),
    ];
    for (status, h, same, want) in rows {
        let status = StatusCode::from_u16(*status).unwrap();
        assert_eq!(
            post_reusable(status, &headers(h), *same),
            *want,
            "{status} {h:?}"
        );
    }
}

#[test]
fn credentialed_answers_need_a_grant_and_no_private_in_either_field() {
    // (headers, stored for a credentialed request on a shared route)
    type Row<'a> = (&'a [(&'a str, &'a str)], Result<u64, NoStore>);
    let rows: &[Row] = &[
        (
            &[
                ("cache-control", "private"),
                ("cdn-cache-control", "max-age=60, must-revalidate"),
            ],
            Err(NoStore::Private),
        ),
        (
            &[
                ("cache-control", "private"),
                ("surrogate-control", "max-age=60, must-revalidate"),
            ],
            Err(NoStore::Private),
        ),
        (
            &[
                ("cache-control", "public"),
                ("cdn-cache-control", "max-age=60"),
            ],
            Ok(60),
        ),
        (
            &[
                ("cache-control", "max-age=5"),
                ("cdn-cache-control", "max-age=60"),
            ],
            Err(NoStore::Authorization),
        ),
        (&[("cdn-cache-control", "max-age=60, public")], Ok(60)),
    ];
    for (h, want) in rows {
        let got = evaluate(
            StatusCode::OK,
            &headers(h),
            facts(true),
            RoutePolicy::default(),
            CACHE,
        );
        assert_eq!(got.map(|f| f.lifetime), *want, "{h:?}");
    }
}
