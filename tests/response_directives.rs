//! How the origin's caching fields are read (issue 12): targeted fields replacing Cache-Control,
//! directive syntax, `Age` lists, the three HTTP-date formats, qualified `private` / `no-cache`,
//! and `must-understand`.

mod support;
use support::*;

use std::time::{Duration, SystemTime};

use apicache::Running;

/// An origin answering each path with `{}` and that path's headers from `table`.
async fn origin_with(
    table: &'static [(&'static str, &'static [(&'static str, &'static str)])],
) -> Origin {
    Origin::start(move |s| {
        let (status, path) = match s.path_and_query.strip_prefix("/299") {
            Some(rest) => (299, rest.to_string()),
            None => (200, s.path_and_query.clone()),
        };
        let headers = table
            .iter()
            .find(|(p, _)| *p == path)
            .map_or(&[][..], |(_, h)| *h);
        Reply::ok("{}").status(status).headers(headers)
    })
    .await
}

/// X-Cache of a second request for `path`, after a first one filled.
async fn second(p: &Running, path: &str) -> String {
    get(p, path).await;
    let (_, h, _) = get(p, path).await;
    hdr(&h, "x-cache").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_cdn_cache_control_replaces_cache_control_whole() {
    static TABLE: &[(&str, &[(&str, &str)])] = &[
        (
            "/no-store",
            &[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "max-age=60"),
            ],
        ),
        (
            "/private",
            &[
                ("cache-control", "private"),
                ("cdn-cache-control", "max-age=60"),
            ],
        ),
        (
            "/cdn-no-store",
            &[
                ("cache-control", "max-age=60"),
                ("cdn-cache-control", "no-store"),
            ],
        ),
    ];
    let origin = origin_with(TABLE).await;
    let p = proxy(&origin).await;
    assert_eq!(second(&p, "/no-store").await, "HIT");
    assert_eq!(second(&p, "/private").await, "HIT");
    assert_ne!(second(&p, "/cdn-no-store").await, "HIT");
    // Clients still see the origin's own Cache-Control.
    let (_, h, _) = get(&p, "/private").await;
    assert_eq!(hdr(&h, "cache-control"), "private");
    assert_eq!(
        origin.count_for("/no-store") + origin.count_for("/private"),
        2
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_cdn_cache_control_is_ignored_as_if_absent() {
    static TABLE: &[(&str, &[(&str, &str)])] = &[
        // Not Structured Field Dictionaries: an uppercase key, a trailing comma.
        (
            "/upper",
            &[
                ("cache-control", "max-age=5"),
                ("cdn-cache-control", "Max-Age=600"),
            ],
        ),
        (
            "/comma",
            &[
                ("cache-control", "max-age=5"),
                ("cdn-cache-control", "max-age=600,"),
            ],
        ),
        (
            "/no-store",
            &[
                ("cache-control", "no-store"),
                ("cdn-cache-control", "max-age=600,"),
            ],
        ),
    ];
    let origin = origin_with(TABLE).await;
    let p = proxy(&origin).await;
    for path in ["/upper", "/comma"] {
        assert_eq!(
            second(&p, path).await,
            "HIT",
            "{path}: Cache-Control's max-age=5 applies"
        );
    }
    assert_ne!(second(&p, "/no-store").await, "HIT");
    p.clock().advance(Duration::from_secs(10));
    for path in ["/upper", "/comma"] {
        let (_, h, _) = get(&p, path).await;
        assert_eq!(
            hdr(&h, "x-cache"),
            "MISS",
            "{path}: stale after Cache-Control's 5 s"
        );
    }
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whitespace_around_equals_gives_no_freshness() {
    static TABLE: &[(&str, &[(&str, &str)])] = &[
        ("/before", &[("cache-control", "max-age =3600")]),
        ("/after", &[("cache-control", "max-age= 3600")]),
        (
            "/swr",
            &[("cache-control", "max-age=1, stale-while-revalidate =3600")],
        ),
        ("/valid", &[("cache-control", "max-age=3600")]),
    ];
    let origin = origin_with(TABLE).await;
    let p = proxy(&origin).await;
    for path in ["/before", "/after"] {
        assert_ne!(second(&p, path).await, "HIT", "{path}");
    }
    assert_eq!(second(&p, "/valid").await, "HIT");
    get(&p, "/swr").await;
    p.clock().advance(Duration::from_secs(5));
    let (_, h, _) = get(&p, "/swr").await;
    assert_eq!(
        hdr(&h, "x-cache"),
        "MISS",
        "a malformed window grants no stale serving"
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_member_of_an_age_list_counts() {
    static TABLE: &[(&str, &[(&str, &str)])] = &[
        (
            "/list",
            &[("cache-control", "max-age=3600"), ("age", "7200, 0")],
        ),
        (
            "/lines",
            &[
                ("cache-control", "max-age=3600"),
                ("age", "7200"),
                ("age", "0"),
            ],
        ),
        (
            "/young",
            &[("cache-control", "max-age=3600"), ("age", "10, 9999")],
        ),
    ];
    let origin = origin_with(TABLE).await;
    let p = proxy(&origin).await;
    for path in ["/list", "/lines"] {
        assert_eq!(
            second(&p, path).await,
            "MISS",
            "{path}: already stale on arrival"
        );
    }
    get(&p, "/young").await;
    let (_, h, _) = get(&p, "/young").await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    assert_eq!(hdr(&h, "age"), "10");
    p.shutdown().await;
}

/// `now + secs` in the three HTTP-date formats, with names in the case and weekday given.
fn formats(secs: u64) -> [String; 3] {
    let imf = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(secs));
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let p: Vec<&str> = imf.split([' ', ',']).filter(|s| !s.is_empty()).collect();
    let day: u32 = p[1].parse().unwrap();
    [
        // Lowercase names, and a weekday that does not match the date.
        format!(
            "xyz, {} {} {} {} gmt",
            p[1],
            p[2].to_lowercase(),
            p[3],
            p[4]
        )
        .replace("xyz", "mon"),
        format!("Wednesday, {}-{}-{} {} GMT", p[1], p[2], &p[3][2..], p[4]),
        format!("Sun {} {day:>2} {} {}", p[2], p[4], p[3]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expires_is_read_in_all_three_date_formats() {
    let origin = Origin::start(|s| {
        let i: usize = s.path_and_query[1..].parse().unwrap();
        Reply::ok("{}")
            .header("date", &formats(0)[i])
            .header("expires", &formats(600)[i])
    })
    .await;
    let p = proxy(&origin).await;
    for i in 0..3 {
        let path = format!("/{i}");
        assert_eq!(second(&p, &path).await, "HIT", "{:?}", formats(600)[i]);
    }
    assert_eq!(origin.count(), 3);
    // An Expires that is no date at all still means "already expired".
    origin.set_handler(|_| {
        Reply::ok("{}")
            .header("expires", "next week")
            .header("etag", "\"e\"")
    });
    assert_ne!(second(&p, "/bad").await, "HIT");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qualified_private_and_no_cache_store_the_rest() {
    static TABLE: &[(&str, &[(&str, &str)])] = &[
        (
            "/cookie",
            &[
                ("cache-control", "max-age=60, private=\"Set-Cookie\""),
                ("set-cookie", "session=leader"),
                ("x-shared", "yes"),
            ],
        ),
        (
            "/debug",
            &[
                ("cache-control", "max-age=60, no-cache=\"X-Debug, X-Trace\""),
                ("x-debug", "1"),
                ("x-trace", "t"),
            ],
        ),
    ];
    let origin = origin_with(TABLE).await;
    let p = proxy(&origin).await;
    // The request the fields were sent for gets them; the next client is served without them.
    let (_, h, _) = get(&p, "/cookie").await;
    assert_eq!(hdr(&h, "set-cookie"), "session=leader");
    let (_, h, _) = get(&p, "/cookie").await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    assert!(!h.contains_key("set-cookie"));
    assert_eq!(hdr(&h, "x-shared"), "yes");
    let (_, h, _) = get(&p, "/debug").await;
    assert_eq!(hdr(&h, "x-debug"), "1");
    let (_, h, _) = get(&p, "/debug").await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    assert!(!h.contains_key("x-debug") && !h.contains_key("x-trace"));
    assert_eq!(origin.count(), 2);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn must_understand_overrides_no_store_for_understood_statuses() {
    static TABLE: &[(&str, &[(&str, &str)])] = &[
        (
            "/mu",
            &[("cache-control", "must-understand, no-store, max-age=60")],
        ),
        ("/plain", &[("cache-control", "max-age=60")]),
    ];
    let origin = origin_with(TABLE).await;
    let p = proxy(&origin).await;
    assert_eq!(second(&p, "/mu").await, "HIT");
    // 299 is a status this cache does not understand: must-understand forbids storing it.
    assert_ne!(second(&p, "/299/mu").await, "HIT");
    assert_eq!(second(&p, "/299/plain").await, "HIT");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surrogate_control_keeps_cache_controls_privacy() {
    static TABLE: &[(&str, &[(&str, &str)])] = &[
        // ESI's marker says nothing about caching: Cache-Control's private applies.
        (
            "/esi",
            &[
                ("cache-control", "private"),
                ("surrogate-control", "content=\"ESI/1.0\""),
                ("last-modified", "Tue, 14 Nov 2023 22:11:40 GMT"),
            ],
        ),
        (
            "/private",
            &[
                ("cache-control", "private"),
                ("surrogate-control", "max-age=60"),
            ],
        ),
        (
            "/lifetime",
            &[
                ("cache-control", "max-age=0"),
                ("surrogate-control", "max-age=60"),
            ],
        ),
    ];
    let origin = origin_with(TABLE).await;
    let p = proxy(&origin).await;
    assert_ne!(second(&p, "/esi").await, "HIT");
    assert_ne!(second(&p, "/private").await, "HIT");
    assert_eq!(second(&p, "/lifetime").await, "HIT");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_targeted_grant_does_not_share_a_private_credentialed_answer() {
    let origin = Origin::start(|s| {
        Reply::ok(format!("{{\"for\":\"{}\"}}", s.header("authorization")))
            .header("cache-control", "private")
            .header("cdn-cache-control", "max-age=60, must-revalidate")
    })
    .await;
    let p = proxy(&origin).await;
    let (_, _, a) = get_with(&p, "/me", &[("authorization", "Bearer alice")]).await;
    let (_, h, b) = get_with(&p, "/me", &[("authorization", "Bearer bob")]).await;
    assert_ne!(hdr(&h, "x-cache"), "HIT");
    assert_eq!(
        (text(&a).as_str(), text(&b).as_str()),
        ("{\"for\":\"Bearer alice\"}", "{\"for\":\"Bearer bob\"}")
    );
    assert_eq!(origin.count(), 2);
    p.shutdown().await;
}
