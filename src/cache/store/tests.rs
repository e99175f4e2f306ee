//! Store tests: variants, tags, purges, parts, eviction.
use super::*;
use crate::cache::object::NewObject;
use crate::rfc::coding::Coding;
use crate::rfc::storable::Freshness;
use bytes::Bytes;
use http::StatusCode;

fn obj(body: &'static str, tags: &[&str]) -> Arc<CachedObject> {
    Arc::new(CachedObject::new(
        NewObject {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from_static(body.as_bytes()),
            origin_encoded: None,
            etag: http::HeaderValue::from_static("\"e\""),
            origin_etag: None,
            freshness: Freshness::for_lifetime(60),
            vary: Default::default(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            no_transform: false,
            compressible: false,
        },
        Instant::now(),
    ))
}

#[test]
fn an_entry_weighs_its_key_and_tag_links() {
    let entry = |tags: &[&str]| Entry {
        objects: vec![obj("body", tags)],
        gen: 1,
        tags: tags.iter().map(|t| t.to_string()).collect(),
    };
    let plain = entry(&[]).weight("GET /a");
    let long_key = entry(&[]).weight(&format!("GET /{}", "a".repeat(1000)));
    assert_eq!(long_key, plain + 2 * 999, "the key is held twice");
    let tags: Vec<String> = (0..50).map(|i| format!("tag-{i}")).collect();
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    let tagged = entry(&tags).weight("GET /a");
    // Each link costs its tag twice in the entry, once in the object, and the index overhead.
    assert!(
        tagged >= plain + 50 * (TAG_LINK_OVERHEAD + 48),
        "{plain} {tagged}"
    );
}

#[tokio::test]
async fn tag_purge_removes_only_tagged() {
    let s = Store::new(1 << 20, 4);
    s.insert("GET /a".into(), obj("a", &["p1", "all"])).await;
    s.insert("GET /b".into(), obj("b", &["p2", "all"])).await;
    assert_eq!(s.purge_tag("p1", false).await, 1);
    assert!(matches!(
        s.lookup("GET /a", &HeaderMap::new()).await,
        Lookup::Miss
    ));
    assert!(matches!(
        s.lookup("GET /b", &HeaderMap::new()).await,
        Lookup::Hit(_)
    ));
    s.run_pending_tasks().await;
    assert!(s.tag_index().keys("p1").is_empty());
    assert_eq!(s.purge_tag("all", true).await, 1);
    match s.lookup("GET /b", &HeaderMap::new()).await {
        Lookup::Hit(o) => assert!(o.ttl(s.clock().now()) < 0),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn replacement_keeps_index_exact() {
    let s = Store::new(1 << 20, 4);
    s.insert("GET /a".into(), obj("a", &["t1"])).await;
    s.insert("GET /a".into(), obj("a2", &["t2"])).await;
    s.run_pending_tasks().await;
    assert!(s.tag_index().keys("t1").is_empty());
    assert_eq!(s.tag_index().keys("t2").len(), 1);
}

#[tokio::test]
async fn swap_replaces_only_the_live_original() {
    let s = Store::new(1 << 20, 4);
    let a = obj("aaaaaaaaaaaaaaaaaaaaaaaa", &["t"]);
    s.insert("GET /a".into(), a.clone()).await;
    let encoded = Arc::new(a.with_encodings([(Coding::Gzip, Bytes::from_static(b"gz"))]));
    assert!(s.swap("GET /a", &a, encoded.clone()).await);
    match s.lookup("GET /a", &HeaderMap::new()).await {
        Lookup::Hit(o) => assert!(Arc::ptr_eq(&o, &encoded)),
        other => panic!("{other:?}"),
    }
    s.run_pending_tasks().await;
    assert_eq!(s.tag_index().keys("t").len(), 1, "relinked, not lost");
    // The original is gone now: a second swap of it does nothing.
    let again = Arc::new(a.with_encodings([]));
    assert!(!s.swap("GET /a", &a, again).await);
    // A purged object is never swapped back in.
    let b = obj("b", &["u"]);
    s.insert("GET /b".into(), b.clone()).await;
    assert_eq!(s.purge_tag("u", false).await, 1);
    let late = Arc::new(b.with_encodings([]));
    assert!(!s.swap("GET /b", &b, late).await);
    assert!(matches!(
        s.lookup("GET /b", &HeaderMap::new()).await,
        Lookup::Miss
    ));
}

#[tokio::test]
async fn parts_live_beside_their_key_and_are_purged_with_it() {
    let s = Store::new(1 << 20, 4);
    let ticket = s.purge_ticket();
    s.set_parts("GET /p", vec![obj("part", &["url:/p"])], ticket)
        .await;
    assert_eq!(s.parts("GET /p").await.len(), 1);
    assert!(
        matches!(s.lookup("GET /p", &HeaderMap::new()).await, Lookup::Miss),
        "parts are not the URL's object"
    );
    assert_eq!(s.purge_tag("url:/p", false).await, 1);
    assert!(s.parts("GET /p").await.is_empty());
    // A purge between the origin request and the insert wins.
    let ticket = s.purge_ticket();
    s.purge_tag("url:/p", false).await;
    s.set_parts("GET /p", vec![obj("late", &["url:/p"])], ticket)
        .await;
    assert!(s.parts("GET /p").await.is_empty());
    s.set_parts("GET /q", vec![obj("q", &[])], s.purge_ticket())
        .await;
    s.set_parts("GET /q", vec![], s.purge_ticket()).await;
    assert!(s.parts("GET /q").await.is_empty());
}

#[tokio::test]
async fn replace_fill_replaces_only_the_response_it_updates() {
    let s = Store::new(1 << 20, 4);
    let hit = |s: &Store| {
        let s = s.clone();
        async move {
            match s.lookup("GET /a", &HeaderMap::new()).await {
                Lookup::Hit(o) => o,
                other => panic!("{other:?}"),
            }
        }
    };
    let a = obj("aaaa", &["t"]);
    s.insert("GET /a".into(), a.clone()).await;
    // The encoder swapped in a copy: still the same response, so it is replaced.
    let encoded = Arc::new(a.with_encodings([(Coding::Gzip, Bytes::from_static(b"g"))]));
    assert!(s.swap("GET /a", &a, encoded).await);
    let a2 = obj("aaaa", &["t"]);
    assert!(s.replace_fill("GET /a", &a, &a2, s.purge_ticket()).await);
    assert!(Arc::ptr_eq(&hit(&s).await, &a2));
    // A newer response stored meanwhile is never overwritten by an update of the old one.
    let newer = obj("bbbb", &["t"]);
    s.insert("GET /a".into(), newer.clone()).await;
    let late = obj("aaaa", &["t"]);
    assert!(!s.replace_fill("GET /a", &a2, &late, s.purge_ticket()).await);
    assert!(Arc::ptr_eq(&hit(&s).await, &newer));
    // A purge since the ticket wins: hard, nothing stored; the stored one is not revived.
    let ticket = s.purge_ticket();
    assert_eq!(s.purge_tag("t", false).await, 1);
    let after = obj("bbbb", &["t"]);
    assert!(!s.replace_fill("GET /a", &newer, &after, ticket).await);
    s.run_pending_tasks().await;
    assert!(matches!(
        s.lookup("GET /a", &HeaderMap::new()).await,
        Lookup::Miss
    ));
}

#[tokio::test]
async fn eviction_unlinks_tags() {
    let s = Store::new(64 * 1024, 4);
    for i in 0..2000 {
        s.insert(
            format!("GET /{i}"),
            obj("0123456789012345678901234567890123456789", &["t"]),
        )
        .await;
    }
    s.run_pending_tasks().await;
    assert!(s.weighted_size() <= 64 * 1024);
    assert_eq!(s.tag_index().keys("t").len() as u64, s.entry_count());
}
