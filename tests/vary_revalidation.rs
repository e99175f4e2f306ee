//! RFC 9111 §4.3.1: a request whose Vary values match no stored variant asks the origin with
//! If-None-Match listing the stored variants' ETags; a 304 makes the named variant this
//! request's too, without a body transfer.

mod support;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_304_over_the_stored_variants_etags_reuses_one() {
    let body = json_body(2048, "same-for-every-language");
    let b = body.clone();
    let origin = Origin::start(move |seen| {
        let lang = seen.header("accept-language");
        let etag = if lang == "de" { "\"de\"" } else { "\"any\"" };
        let inm = seen.header("if-none-match");
        if inm.split(',').any(|t| t.trim() == etag) {
            Reply::not_modified(&[
                ("etag", etag),
                ("cache-control", "max-age=60"),
                ("vary", "Accept-Language"),
            ])
        } else {
            Reply::ok(b.clone())
                .header("etag", etag)
                .header("vary", "Accept-Language")
                .header("cache-control", "max-age=60")
        }
    })
    .await;
    let p = proxy(&origin).await;

    let (s, _, got) = get_with(&p, "/v", &[("accept-language", "en")]).await;
    assert_eq!((s, &got[..]), (200, &body[..]));
    let bytes_before = origin.bytes_sent();

    // Another language: the origin is asked whether the stored variant will do. It will.
    let (s, h, got) = get_with(&p, "/v", &[("accept-language", "fr")]).await;
    assert_eq!((s, &got[..]), (200, &body[..]));
    assert_eq!(origin.count(), 2);
    assert_eq!(origin.last().header("if-none-match"), "\"any\"");
    assert_eq!(origin.bytes_sent(), bytes_before, "the body was sent again");
    assert_eq!(hdr(&h, "etag"), "\"any\"");
    assert!(hdr(&h, "cache-status").contains("fwd-status=304"), "{h:?}");

    // Stored as the "fr" variant now; "en" is still there.
    let h = get_with(&p, "/v", &[("accept-language", "fr")]).await.1;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    let h = get_with(&p, "/v", &[("accept-language", "en")]).await.1;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    assert_eq!(origin.count(), 2);

    // A variant the origin answers with its own representation: a 200, stored as usual.
    let (s, h, _) = get_with(&p, "/v", &[("accept-language", "de")]).await;
    assert_eq!((s, hdr(&h, "etag")), (200, "\"de\""));
    assert_eq!(origin.last().header("if-none-match"), "\"any\"");
    let h = get_with(&p, "/v", &[("accept-language", "de")]).await.1;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    assert_eq!(origin.count(), 3);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variants_of_who_is_asking_are_never_offered_to_someone_else() {
    // A version-number ETag shared by every user's page: the origin would say 304 to anyone.
    let origin = Origin::start(|seen| {
        let who = format!("{}{}", seen.header("cookie"), seen.header("authorization"));
        if seen.header("if-none-match").contains("W/\"v3\"") {
            return Reply::not_modified(&[
                ("etag", "W/\"v3\""),
                ("cache-control", "public, max-age=60"),
            ]);
        }
        Reply::ok(format!("{{\"page for\":\"{who}\"}}"))
            .header("etag", "W/\"v3\"")
            .header(
                "vary",
                if seen.path_and_query == "/c" {
                    "Cookie"
                } else {
                    "Accept-Language"
                },
            )
            .header("cache-control", "public, max-age=60")
    })
    .await;
    let p = proxy(&origin).await;
    // Varies on Cookie: bob's miss is a plain fill, never a 304 over alice's page.
    get_with(&p, "/c", &[("cookie", "u=alice")]).await;
    let (_, _, b) = get_with(&p, "/c", &[("cookie", "u=bob")]).await;
    assert_eq!(text(&b), "{\"page for\":\"u=bob\"}");
    assert_eq!(origin.last().header("if-none-match"), "");
    // A credentialed request is not offered other variants either.
    get_with(&p, "/l", &[("accept-language", "en")]).await;
    let (_, _, b) = get_with(
        &p,
        "/l",
        &[("accept-language", "fr"), ("authorization", "Bearer bob")],
    )
    .await;
    assert_eq!(text(&b), "{\"page for\":\"Bearer bob\"}");
    assert_eq!(origin.last().header("if-none-match"), "");
    p.shutdown().await;
}
