//! X-Request-Id: the client's when it is sane, otherwise one generated here; the origin gets it,
//! the client gets it back, and an origin's echo of it is never stored or replayed to others.

mod support;
use support::*;

/// An origin that echoes the request id it got, in a cacheable answer.
async fn echoing_origin() -> Origin {
    Origin::start(|s| {
        Reply::ok("{}")
            .header("cache-control", CACHEABLE)
            .header("x-request-id", &s.header("x-request-id"))
    })
    .await
}

fn is_generated(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|c| c.is_ascii_hexdigit())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origin_and_the_client_get_the_same_id() {
    let origin = echoing_origin().await;
    let p = proxy(&origin).await;
    // None sent: one is generated.
    let (_, h, _) = get(&p, "/a").await;
    let id = hdr(&h, "x-request-id").to_string();
    assert!(is_generated(&id), "{id}");
    assert_eq!(origin.last().header("x-request-id"), id);
    // A sane one is kept, end to end.
    let uuid = "3f2c1a9e-7b4d-4c1e-9a8b-0d6e5f4a3b2c";
    let (_, h, _) = get_with(&p, "/b", &[("x-request-id", uuid)]).await;
    assert_eq!(hdr(&h, "x-request-id"), uuid);
    assert_eq!(origin.last().header("x-request-id"), uuid);
    // An unusable one is replaced, for the origin too.
    let long = "a".repeat(200);
    for bad in ["two words", "quote\"d", long.as_str()] {
        let (_, h, _) = get_with(
            &p,
            "/c",
            &[("x-request-id", bad), ("cache-control", "no-cache")],
        )
        .await;
        let id = hdr(&h, "x-request-id").to_string();
        assert!(is_generated(&id), "{bad}: {id}");
        let seen = origin.last();
        assert_eq!(seen.headers.get_all("x-request-id").iter().count(), 1);
        assert_eq!(seen.header("x-request-id"), id, "{bad}");
    }
    // Two lines: neither is believed.
    let (_, h, _) = get_with(
        &p,
        "/d",
        &[("x-request-id", "one"), ("x-request-id", "two")],
    )
    .await;
    assert!(is_generated(hdr(&h, "x-request-id")));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoed_id_is_not_replayed_from_the_cache() {
    let origin = echoing_origin().await;
    let p = proxy(&origin).await;
    let (_, h, _) = get_with(&p, "/e", &[("x-request-id", "first")]).await;
    assert_eq!(
        (hdr(&h, "x-cache"), hdr(&h, "x-request-id")),
        ("MISS", "first")
    );
    let (_, h, _) = get_with(&p, "/e", &[("x-request-id", "second")]).await;
    assert_eq!(
        (hdr(&h, "x-cache"), hdr(&h, "x-request-id")),
        ("HIT", "second")
    );
    let (_, h, _) = get(&p, "/e").await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    assert!(is_generated(hdr(&h, "x-request-id")), "{h:?}");
    assert_eq!(h.get_all("x-request-id").iter().count(), 1);
    // The id is in no key: three ids, one stored object, one origin request.
    assert_eq!(origin.count(), 1);
    p.shutdown().await;
}
