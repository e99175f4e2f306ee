//! The origin's address never reaches clients: `Location`, `Content-Location`, `Refresh` and
//! `Link` URLs naming the origin are rewritten to the client's public scheme and host, on every
//! path (fills, pass-through, unsafe methods, POST answers stored for GETs, 304 and HEAD
//! updates, kept 206 parts); what is stored is the rewritten form. `origin.preserve_host` sends
//! the client's host to the origin, which stays keyed by it.

mod support;
use support::*;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderMap;

const HOST: (&str, &str) = ("host", "api.example.com");

/// An origin whose handler gets its own `http://127.0.0.1:port`, as frameworks build absolute
/// URLs from the Host they were sent.
async fn origin_with(handler: impl Fn(&Seen, &str) -> Reply + Send + Sync + 'static) -> Origin {
    let origin = Origin::start(|_| Reply::ok("")).await;
    let own = origin.url();
    origin.set_handler(move |s| handler(s, &own));
    origin
}

/// Every response field as one string, to check the origin's address appears nowhere.
fn fields(h: &HeaderMap) -> String {
    h.iter()
        .map(|(k, v)| format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_to_the_origin_point_at_the_proxy() {
    let origin = origin_with(|s, own| match s.path_and_query.as_str() {
        "/base/old" => Reply::ok("")
            .status(301)
            .header("location", &format!("{own}/base/new?x=1"))
            .header("cache-control", "max-age=60"),
        "/base/pass/temp" => Reply::ok("")
            .status(302)
            .header("location", &format!("{own}/base/new")),
        _ => Reply::ok("{}"),
    })
    .await;
    let p = ProxyBuilder::for_url(&format!("{}/base", origin.url()))
        .route(r#"path = "/pass/{*rest}", cache = false"#)
        .start()
        .await;
    let addr = origin.addr.to_string();
    // Filled and stored: the stored copy is the rewritten one.
    for cache in ["MISS", "HIT"] {
        let (s, h, _) = get_with(&p, "/old", &[HOST]).await;
        assert_eq!(s, 301);
        assert_eq!(hdr(&h, "location"), "http://api.example.com/new?x=1");
        assert_eq!(hdr(&h, "x-cache"), cache);
        assert!(!fields(&h).contains(&addr), "{h:?}");
    }
    let stored = stored_headers(&p, "http://api.example.com", "/old").await;
    assert_eq!(
        stored.expect("stored")["location"],
        "http://api.example.com/new?x=1"
    );
    // Passed through uncached (a `cache = false` route).
    let (s, h, _) = get_with(&p, "/pass/temp", &[HOST]).await;
    assert_eq!(
        (s, hdr(&h, "location")),
        (302, "http://api.example.com/new")
    );
    assert_eq!(hdr(&h, "x-cache"), "PASS");
    // HTTP/1.0 without Host: there is no public host, so the URL becomes a path.
    let got = raw(p.addr, "GET /pass/temp HTTP/1.0\r\n\r\n").await;
    assert!(
        got.to_ascii_lowercase().contains("location: /new\r\n"),
        "{got}"
    );
    assert!(!got.contains(&addr), "{got}");
    assert_eq!(origin.count(), 3);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_pagination_is_rewritten_and_stored_per_host() {
    // json-server's pagination header.
    let origin = origin_with(|s, own| {
        let path = s.path_and_query.split('?').next().unwrap_or("");
        Reply::ok("[{\"id\":1}]")
            .header("cache-control", "public, max-age=60")
            .header(
                "link",
                &format!(
                    "<{own}{path}?_page=1>; rel=\"first\", <{own}{path}?_page=2>; rel=\"next\", \
                     <{own}{path}?_page=5>; rel=\"last\""
                ),
            )
    })
    .await;
    let p = proxy(&origin).await;
    let want = |host: &str| {
        format!(
            "<http://{host}/posts?_page=1>; rel=\"first\", <http://{host}/posts?_page=2>; \
             rel=\"next\", <http://{host}/posts?_page=5>; rel=\"last\""
        )
    };
    let (_, h, _) = get_with(&p, "/posts?_page=1", &[HOST]).await;
    assert_eq!(
        (hdr(&h, "x-cache"), hdr(&h, "link")),
        ("MISS", &*want("api.example.com"))
    );
    // A second client of the same host is served the stored, rewritten copy.
    let (_, h, _) = get_with(&p, "/posts?_page=1", &[HOST]).await;
    assert_eq!(
        (hdr(&h, "x-cache"), hdr(&h, "link")),
        ("HIT", &*want("api.example.com"))
    );
    // Another host never gets links to the first one: its own entry, its own links.
    let (_, h, _) = get_with(&p, "/posts?_page=1", &[("host", "other.example:8080")]).await;
    assert_eq!(
        (hdr(&h, "x-cache"), hdr(&h, "link")),
        ("MISS", &*want("other.example:8080"))
    );
    assert_eq!(origin.count(), 2);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_location_and_refresh_are_rewritten() {
    let origin = origin_with(|_, own| {
        Reply::ok("{}")
            .header("cache-control", "max-age=60")
            .header("content-location", &format!("{own}/page.json"))
            .header("refresh", &format!("5; url={own}/next"))
    })
    .await;
    let p = proxy(&origin).await;
    for cache in ["MISS", "HIT"] {
        let (_, h, _) = get_with(&p, "/page", &[HOST]).await;
        assert_eq!(hdr(&h, "x-cache"), cache);
        assert_eq!(
            hdr(&h, "content-location"),
            "http://api.example.com/page.json"
        );
        assert_eq!(hdr(&h, "refresh"), "5; url=http://api.example.com/next");
    }
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_of_other_hosts_and_relative_ones_are_untouched() {
    let origin = origin_with(|_, own| {
        // The same port under another name is another authority.
        let localhost = own.replace("127.0.0.1", "localhost");
        Reply::ok("{}")
            .status(302)
            .header("location", "http://elsewhere.example/x")
            .header("content-location", "/page")
            .header(
                "link",
                &format!("</posts?_page=2>; rel=next, <https://cdn.example/a.png>; rel=preload, <{localhost}/y>; rel=alternate"),
            )
            .header("refresh", "0; url=other/page")
    })
    .await;
    let p = proxy(&origin).await;
    let (s, h, _) = get_with(&p, "/r", &[HOST]).await;
    assert_eq!(s, 302);
    assert_eq!(hdr(&h, "location"), "http://elsewhere.example/x");
    assert_eq!(hdr(&h, "content-location"), "/page");
    let localhost = format!("http://localhost:{}", origin.addr.port());
    assert_eq!(
        hdr(&h, "link"),
        format!("</posts?_page=2>; rel=next, <https://cdn.example/a.png>; rel=preload, <{localhost}/y>; rel=alternate")
    );
    assert_eq!(hdr(&h, "refresh"), "0; url=other/page");
    p.shutdown().await;
}

/// An origin that redirects `/r` to its own `/target`, cacheably.
async fn redirecting_origin() -> Origin {
    origin_with(|_, own| {
        Reply::ok("")
            .status(301)
            .header("location", &format!("{own}/target"))
            .header("cache-control", "max-age=60")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheme_comes_from_a_trusted_forwarded_proto_only() {
    let origin = redirecting_origin().await;
    let https = [
        ("host", "lb.internal"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "api.example.com"),
    ];
    let p = ProxyBuilder::new(&origin)
        .config(|c| c.server.trusted_proxies = vec!["127.0.0.0/8".into()])
        .start()
        .await;
    let (_, h, _) = get_with(&p, "/r", &https).await;
    assert_eq!(hdr(&h, "location"), "https://api.example.com/target");
    // The same URL over plain http is another entry: never the https answer, nor the reverse.
    let (_, h, _) = get_with(&p, "/r", &[HOST]).await;
    assert_eq!(
        (hdr(&h, "x-cache"), hdr(&h, "location")),
        ("MISS", "http://api.example.com/target")
    );
    let (_, h, _) = get_with(&p, "/r", &https).await;
    assert_eq!(
        (hdr(&h, "x-cache"), hdr(&h, "location")),
        ("HIT", "https://api.example.com/target")
    );
    let (_, h, _) = get_with(&p, "/r", &[HOST]).await;
    assert_eq!(
        (hdr(&h, "x-cache"), hdr(&h, "location")),
        ("HIT", "http://api.example.com/target")
    );
    p.shutdown().await;
    // From an untrusted peer, the forwarding fields are ignored: its Host, plain http.
    let p = proxy(&origin).await;
    let (_, h, _) = get_with(&p, "/r", &https).await;
    assert_eq!(hdr(&h, "location"), "http://lb.internal/target");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_urls_false_passes_them_through() {
    let origin = redirecting_origin().await;
    let p = ProxyBuilder::new(&origin)
        .origin_key("rewrite_urls = false")
        .start()
        .await;
    let (_, h, _) = get_with(&p, "/r", &[HOST]).await;
    assert_eq!(hdr(&h, "location"), format!("{}/target", origin.url()));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preserve_host_sends_the_clients_host_and_keys_by_it() {
    let origin = origin_with(|s, own| {
        Reply::ok(format!("host={}", s.header("host")))
            .header("cache-control", "max-age=60")
            .header("link", &format!("<{own}/x>; rel=next"))
    })
    .await;
    // Without it, the origin is sent its own authority.
    let p = proxy(&origin).await;
    get_with(&p, "/default", &[HOST]).await;
    assert_eq!(origin.last().header("host"), origin.addr.to_string());
    p.shutdown().await;

    let p = ProxyBuilder::new(&origin)
        .origin_key("preserve_host = true")
        .start()
        .await;
    // (Host sent, what the origin saw, X-Cache)
    let rows = [
        ("a.example", "a.example", "MISS"),
        ("b.example:8080", "b.example:8080", "MISS"),
        ("a.example", "a.example", "HIT"),
        ("A.Example:80", "a.example", "HIT"),
        ("b.example:8080", "b.example:8080", "HIT"),
    ];
    for (sent, host, cache) in rows {
        let (_, h, b) = get_with(&p, "/p", &[("host", sent)]).await;
        assert_eq!(
            (text(&b), hdr(&h, "x-cache")),
            (format!("host={host}"), cache),
            "{sent}"
        );
        // URLs naming the origin's own address are still rewritten.
        assert_eq!(hdr(&h, "link"), format!("<http://{host}/x>; rel=next"));
    }
    assert_eq!(origin.count_for("/p"), 2);
    p.shutdown().await;

    // Behind a trusted load balancer, the host is the one it forwards (the one keyed).
    let p = ProxyBuilder::new(&origin)
        .origin_key("preserve_host = true")
        .config(|c| c.server.trusted_proxies = vec!["127.0.0.0/8".into()])
        .start()
        .await;
    let lb = [
        ("host", "lb.internal"),
        ("x-forwarded-host", "api.example.com"),
    ];
    let (_, _, b) = get_with(&p, "/lb", &lb).await;
    assert_eq!(text(&b), "host=api.example.com");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsafe_method_invalidates_a_location_naming_the_origin() {
    let origin = origin_with(|s, own| {
        if s.method == "POST" {
            Reply::ok("{}")
                .status(201)
                .header("location", &format!("{own}/v1/items/7"))
        } else {
            Reply::ok(format!("{{\"p\":\"{}\"}}", s.path_and_query))
                .header("cache-control", "max-age=60")
        }
    })
    .await;
    for rewrite in [true, false] {
        let p = ProxyBuilder::for_url(&format!("{}/v1", origin.url()))
            .origin_key(&format!("rewrite_urls = {rewrite}"))
            .start()
            .await;
        get_with(&p, "/items/7", &[HOST]).await;
        let (_, h, _) = get_with(&p, "/items/7", &[HOST]).await;
        assert_eq!(hdr(&h, "x-cache"), "HIT");
        let (s, h, _) = request(p.addr, "POST", "/items", &[HOST], b"{}").await;
        assert_eq!(s, 201);
        let location = match rewrite {
            true => "http://api.example.com/items/7".to_string(),
            false => format!("{}/v1/items/7", origin.url()),
        };
        assert_eq!(hdr(&h, "location"), location);
        let (_, h, _) = get_with(&p, "/items/7", &[HOST]).await;
        assert_eq!(hdr(&h, "x-cache"), "MISS", "rewrite_urls = {rewrite}");
        p.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_answer_naming_its_target_on_the_origin_is_stored_rewritten() {
    let origin = origin_with(|s, own| {
        let body = format!("{{\"{}\":\"{}\"}}", s.method, s.path_and_query);
        let r = Reply::ok(body).header("cache-control", "max-age=60");
        match s.method.as_str() {
            "POST" => r.header("content-location", &format!("{own}/v1/items/9")),
            _ => r,
        }
    })
    .await;
    let p = ProxyBuilder::for_url(&format!("{}/v1", origin.url()))
        .start()
        .await;
    let (s, h, _) = request(p.addr, "POST", "/items/9", &[HOST], b"{}").await;
    assert_eq!(s, 200);
    assert!(hdr(&h, "cache-status").contains("stored"), "{h:?}");
    assert_eq!(
        hdr(&h, "content-location"),
        "http://api.example.com/items/9"
    );
    let (_, h, b) = get_with(&p, "/items/9", &[HOST]).await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    assert_eq!(text(&b), "{\"POST\":\"/v1/items/9\"}");
    assert_eq!(
        hdr(&h, "content-location"),
        "http://api.example.com/items/9"
    );
    assert_eq!(origin.count(), 1);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_from_a_304_and_a_head_are_stored_rewritten() {
    let rev = Arc::new(Mutex::new(1));
    let r = rev.clone();
    let origin = origin_with(move |s, own| {
        let n = *r.lock().unwrap();
        let link = format!("<{own}/list?rev={n}>; rel=next");
        let reply = match s.header("if-none-match").as_str() {
            "\"e1\"" => Reply::not_modified(&[]),
            _ => Reply::ok("[1,2,3]"),
        };
        reply
            .header("etag", "\"e1\"")
            .header("cache-control", "max-age=1")
            .header("link", &link)
    })
    .await;
    let p = proxy(&origin).await;
    let link = |n: u32| format!("<http://api.example.com/list?rev={n}>; rel=next");
    let (_, h, _) = get_with(&p, "/list", &[HOST]).await;
    assert_eq!(hdr(&h, "link"), link(1));

    // Stale: revalidated, and the 304's Link replaces the stored one, rewritten.
    *rev.lock().unwrap() = 2;
    p.clock().advance(Duration::from_secs(2));
    let (_, h, _) = get_with(&p, "/list", &[HOST]).await;
    assert!(hdr(&h, "cache-status").contains("fwd-status=304"), "{h:?}");
    assert_eq!(hdr(&h, "link"), link(2));
    let stored = stored_headers(&p, "http://api.example.com", "/list").await;
    assert_eq!(stored.expect("stored")["link"], link(2).as_str());

    // Stale again: a HEAD is forwarded and its 200 updates the stored response.
    *rev.lock().unwrap() = 3;
    p.clock().advance(Duration::from_secs(2));
    let (_, h, _) = head_with(&p, "/list", &[HOST]).await;
    assert_eq!(origin.last().method, "HEAD");
    assert_eq!(hdr(&h, "link"), link(3));
    let (_, h, _) = get_with(&p, "/list", &[HOST]).await;
    assert_eq!((hdr(&h, "x-cache"), hdr(&h, "link")), ("HIT", &*link(3)));
    assert_eq!(origin.count(), 3);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_206_parts_are_rewritten() {
    let body: Vec<u8> = (0..2048).map(|i| (i % 251) as u8).collect();
    let whole = body.clone();
    let origin = origin_with(move |s, own| {
        let range = s.header("range");
        let reply = match range.strip_prefix("bytes=").and_then(|r| r.split_once('-')) {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
                Reply::ok(whole[a..=b].to_vec())
                    .status(206)
                    .header("content-range", &format!("bytes {a}-{b}/2048"))
            }
            None => Reply::ok(whole.clone()),
        };
        reply
            .header("etag", "\"big\"")
            .header("cache-control", "max-age=60")
            .header("link", &format!("<{own}/big.meta>; rel=describedby"))
    })
    .await;
    let p = ProxyBuilder::new(&origin)
        .config(|c| c.cache.max_object_size = bytesize::ByteSize::kib(1))
        .start()
        .await;
    let want = "<http://api.example.com/big.meta>; rel=describedby";
    // Too large to store whole: streamed through, and ranges are forwarded.
    let (_, h, _) = get_with(&p, "/big", &[HOST]).await;
    assert_eq!(hdr(&h, "link"), want);
    let (s, h, b) = get_with(&p, "/big", &[HOST, ("range", "bytes=0-99")]).await;
    assert_eq!((s, &b[..], hdr(&h, "link")), (206, &body[..100], want));
    // A range inside the kept part is served from it, with the rewritten field.
    let (s, h, b) = get_with(&p, "/big", &[HOST, ("range", "bytes=10-19")]).await;
    assert_eq!((s, &b[..], hdr(&h, "x-cache")), (206, &body[10..20], "HIT"));
    assert_eq!(hdr(&h, "link"), want);
    assert_eq!(origin.count(), 2);
    p.shutdown().await;
}
