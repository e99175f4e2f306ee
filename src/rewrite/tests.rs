use super::*;

fn origin(url: &str) -> OriginAddr {
    let uri: http::Uri = url.parse().unwrap();
    let base = uri.path().trim_end_matches('/').to_string();
    OriginAddr::new(uri.scheme_str().unwrap(), uri.authority().unwrap(), &base)
}

fn public(scheme: &str, host: &str) -> Public {
    Public {
        scheme: scheme.into(),
        host: host.into(),
    }
}

/// Rewrite one field value; `None` when it is left as it is.
fn one(o: &OriginAddr, name: &str, value: &str, p: &Public) -> Option<String> {
    let mut h = HeaderMap::new();
    h.insert(
        HeaderName::from_bytes(name.as_bytes()).unwrap(),
        HeaderValue::from_str(value).unwrap(),
    );
    o.rewrite(&mut h, p);
    let got = h.get(name).unwrap().to_str().unwrap().to_string();
    (got != value).then_some(got)
}

#[test]
fn urls_naming_the_origin_under_its_base_path() {
    let o = origin("http://127.0.0.1:18080/base");
    let p = public("https", "api.example.com");
    // (value, rewritten Location or None for untouched)
    let rows: &[(&str, Option<&str>)] = &[
        (
            "http://127.0.0.1:18080/base/x?y",
            Some("https://api.example.com/x?y"),
        ),
        (
            "http://127.0.0.1:18080/base",
            Some("https://api.example.com/"),
        ),
        (
            "http://127.0.0.1:18080/base?q=1#f",
            Some("https://api.example.com/?q=1#f"),
        ),
        (
            "http://127.0.0.1:18080/base/#f",
            Some("https://api.example.com/#f"),
        ),
        // Scheme and host ignore case; the path does not.
        (
            "HTTP://127.0.0.1:18080/base/x",
            Some("https://api.example.com/x"),
        ),
        ("http://127.0.0.1:18080/Base/x", None),
        // Not under the base path: the proxy cannot reach it.
        ("http://127.0.0.1:18080/basement", None),
        ("http://127.0.0.1:18080/other", None),
        ("http://127.0.0.1:18080", None),
        // Other ports, hosts, schemes, userinfo.
        ("http://127.0.0.1:18081/base/x", None),
        ("http://127.0.0.1/base/x", None),
        ("https://127.0.0.1:18080/base/x", None),
        ("http://u@127.0.0.1:18080/base/x", None),
        ("http://evil.example/base/x", None),
        ("http://127.0.0.1:18080.evil/base/x", None),
        ("http://127.0.0.1:1808/base/x", None),
        // Relative references are the client's already.
        ("/base/x", None),
        ("x/y", None),
        ("?page=2", None),
        // A network-path reference takes the origin's scheme; it stays one.
        ("//127.0.0.1:18080/base/x", Some("//api.example.com/x")),
        ("//127.0.0.1:18080/other", None),
        // A path that would read as a host on its own stays a path.
        (
            "http://127.0.0.1:18080/base//evil.example/x",
            Some("https://api.example.com//evil.example/x"),
        ),
        // Malformed: untouched, no panic.
        ("http:", None),
        ("http://", None),
        ("http://[::1", None),
        ("http://127.0.0.1:99999999999999999999/base", None),
        ("http://127.0.0.1:-1/base", None),
        ("", None),
        (":", None),
    ];
    for (value, want) in rows {
        assert_eq!(one(&o, "location", value, &p).as_deref(), *want, "{value}");
        assert_eq!(
            one(&o, "content-location", value, &p).as_deref(),
            *want,
            "{value}"
        );
    }
}

#[test]
fn default_ports_and_literals_are_the_same_authority() {
    let p = public("http", "api.example:8080");
    // (origin.url, value, rewritten)
    let rows: &[(&str, &str, Option<&str>)] = &[
        (
            "http://origin",
            "http://ORIGIN:80/x",
            Some("http://api.example:8080/x"),
        ),
        (
            "http://origin",
            "http://origin:/x",
            Some("http://api.example:8080/x"),
        ),
        (
            "http://origin:80/",
            "http://origin/x",
            Some("http://api.example:8080/x"),
        ),
        (
            "http://origin:80/",
            "http://origin:080/x",
            Some("http://api.example:8080/x"),
        ),
        ("http://origin:8080", "http://origin/x", None),
        (
            "http://[::1]:9000",
            "http://[::1]:9000/x",
            Some("http://api.example:8080/x"),
        ),
        ("http://[::1]:9000", "http://[::1]/x", None),
        ("http://[::1]:9000", "http://[::2]:9000/x", None),
        // A base path with a trailing slash is the same base path.
        (
            "http://origin/v1/",
            "http://origin/v1/x",
            Some("http://api.example:8080/x"),
        ),
        (
            "http://origin/v1/",
            "http://origin/v1",
            Some("http://api.example:8080/"),
        ),
    ];
    for (url, value, want) in rows {
        let o = origin(url);
        assert_eq!(
            one(&o, "location", value, &p).as_deref(),
            *want,
            "{url} {value}"
        );
    }
}

#[test]
fn https_origins_and_their_origin_host() {
    let p = public("https", "api.example.com");
    // (origin.url, origin.host, value, rewritten)
    let rows: &[(&str, Option<&str>, &str, Option<&str>)] = &[
        (
            "https://10.0.0.5",
            None,
            "https://10.0.0.5:443/x",
            Some("https://api.example.com/x"),
        ),
        ("https://10.0.0.5", None, "http://10.0.0.5/x", None),
        ("https://10.0.0.5", None, "https://10.0.0.5:80/x", None),
        (
            "https://10.0.0.5/v1",
            Some("api.internal"),
            "https://API.internal/v1/x",
            Some("https://api.example.com/x"),
        ),
        (
            "https://10.0.0.5/v1",
            Some("api.internal"),
            "https://api.internal:443/v1/x?y",
            Some("https://api.example.com/x?y"),
        ),
        // The URL's own authority still counts.
        (
            "https://10.0.0.5/v1",
            Some("api.internal"),
            "https://10.0.0.5/v1/x",
            Some("https://api.example.com/x"),
        ),
        (
            "https://10.0.0.5/v1",
            Some("api.internal"),
            "https://api.internal:8443/v1/x",
            None,
        ),
        (
            "https://10.0.0.5/v1",
            Some("api.internal:8443"),
            "https://api.internal:8443/v1/x",
            Some("https://api.example.com/x"),
        ),
        (
            "https://10.0.0.5/v1",
            Some("api.internal"),
            "https://api.internal.evil/v1/x",
            None,
        ),
        (
            "http://10.0.0.5:8080",
            Some("api.internal"),
            "//api.internal/x",
            Some("//api.example.com/x"),
        ),
    ];
    for (url, host, value, want) in rows {
        let o = origin(url).with_host(*host);
        assert_eq!(
            one(&o, "location", value, &p).as_deref(),
            *want,
            "{url} {host:?} {value}"
        );
    }
}

#[test]
fn without_a_public_host_urls_become_paths() {
    let o = origin("http://origin:1/base");
    let p = public("http", "");
    let rows: &[(&str, Option<&str>)] = &[
        ("http://origin:1/base/x?y", Some("/x?y")),
        ("//origin:1/base/x", Some("/x")),
        ("http://origin:1/base", Some("/")),
        ("http://origin:1/base?q", Some("/?q")),
        // Never `//evil.example/x`, which names another host.
        (
            "http://origin:1/base//evil.example/x",
            Some("/.//evil.example/x"),
        ),
        // Nor `/\evil.example/`, which browsers read the same way.
        (
            "http://origin:1/base/\\evil.example/",
            Some("/./\\evil.example/"),
        ),
        ("http://other/base/x", None),
    ];
    for (value, want) in rows {
        assert_eq!(one(&o, "location", value, &p).as_deref(), *want, "{value}");
    }
}

#[test]
fn link_targets() {
    let o = origin("http://origin:3000");
    let p = public("https", "api.example.com");
    let rows: &[(&str, Option<&str>)] = &[
        (
            r#"<http://origin:3000/posts?_page=2>; rel="next", <http://origin:3000/posts?_page=5>; rel="last""#,
            Some(
                r#"<https://api.example.com/posts?_page=2>; rel="next", <https://api.example.com/posts?_page=5>; rel="last""#,
            ),
        ),
        // Commas and angle brackets inside quoted parameters do not split or open a target.
        (
            r#"<http://origin:3000/a>; title="x, <http://origin:3000/b>", <http://other/c>; rel=x"#,
            Some(
                r#"<https://api.example.com/a>; title="x, <http://origin:3000/b>", <http://other/c>; rel=x"#,
            ),
        ),
        (
            r#"<http://origin:3000/a>; title="say \"hi\", then go""#,
            Some(r#"<https://api.example.com/a>; title="say \"hi\", then go""#),
        ),
        // Only other hosts and relative targets: unchanged.
        (r#"<http://other/a>; rel="next", </b>; rel=prev"#, None),
        // Empty list members and whitespace are kept.
        (
            " , <http://origin:3000/a>;rel=next ,, ",
            Some(" , <https://api.example.com/a>;rel=next ,, "),
        ),
        // Malformed: unchanged.
        ("http://origin:3000/a", None),
        ("<http://origin:3000/a", None),
        (r#"<http://origin:3000/a>; title="open"#, None),
        (r#"<http://origin:3000/a>; title="esc\"#, None),
        (
            "<http://origin:3000/a>; rel=next <http://origin:3000/b>",
            None,
        ),
        ("<http://origin:3000/a>; rel=next; x>", None),
        ("", None),
    ];
    for (value, want) in rows {
        assert_eq!(one(&o, "link", value, &p).as_deref(), *want, "{value}");
    }
}

#[test]
fn refresh_urls() {
    let o = origin("http://origin:3000");
    let p = public("https", "api.example.com");
    let rows: &[(&str, Option<&str>)] = &[
        (
            "5; url=http://origin:3000/x",
            Some("5; url=https://api.example.com/x"),
        ),
        (
            "0;URL=http://origin:3000/x",
            Some("0;URL=https://api.example.com/x"),
        ),
        (
            "0; Url = 'http://origin:3000/x' ",
            Some("0; Url = 'https://api.example.com/x' "),
        ),
        (
            "1.5, url=\"http://origin:3000/x\"",
            Some("1.5, url=\"https://api.example.com/x\""),
        ),
        // Unterminated quote: the URL runs to the end, as browsers read it.
        (
            "0; url='http://origin:3000/x",
            Some("0; url='https://api.example.com/x"),
        ),
        // Without `url=`, the rest is the URL.
        (
            "3; http://origin:3000/x  ",
            Some("3; https://api.example.com/x  "),
        ),
        (
            "3 http://origin:3000/x",
            Some("3 https://api.example.com/x"),
        ),
        ("5", None),
        ("5;", None),
        ("5; url=/x", None),
        ("5; url=http://other/x", None),
        ("soon; url=http://origin:3000/x", None),
        ("5x; url=http://origin:3000/x", None),
        ("; url=http://origin:3000/x", None),
        ("", None),
    ];
    for (value, want) in rows {
        assert_eq!(one(&o, "refresh", value, &p).as_deref(), *want, "{value}");
    }
}

#[test]
fn every_line_of_every_field_and_nothing_else() {
    let o = origin("http://origin:3000");
    let p = public("http", "api.example");
    let mut h = HeaderMap::new();
    h.append(
        "link",
        HeaderValue::from_static("<http://origin:3000/a>; rel=a"),
    );
    h.append("link", HeaderValue::from_static("<http://other/b>; rel=b"));
    h.append(
        "link",
        HeaderValue::from_static("<http://origin:3000/c>; rel=c"),
    );
    h.insert("location", HeaderValue::from_static("http://origin:3000/l"));
    h.insert(
        "x-location",
        HeaderValue::from_static("http://origin:3000/l"),
    );
    h.insert("content-type", HeaderValue::from_static("application/json"));
    o.rewrite(&mut h, &p);
    let links: Vec<_> = h
        .get_all("link")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        links,
        [
            "<http://api.example/a>; rel=a",
            "<http://other/b>; rel=b",
            "<http://api.example/c>; rel=c"
        ]
    );
    assert_eq!(h["location"], "http://api.example/l");
    assert_eq!(h["x-location"], "http://origin:3000/l");
    assert_eq!(h.len(), 6);
}

#[test]
fn growth_is_bounded_by_writing_paths() {
    let o = origin("http://o");
    let host = format!("{}.example", "h".repeat(200));
    let p = public("https", &host);
    let targets: Vec<String> = (0..200).map(|i| format!("<http://o/{i}>")).collect();
    let value = targets.join(",");
    let mut h = HeaderMap::new();
    h.insert("link", HeaderValue::from_str(&value).unwrap());
    h.insert("location", HeaderValue::from_static("http://o/x"));
    o.rewrite(&mut h, &p);
    // 200 × ~215 bytes would be ~43 KiB more: written as paths instead.
    let link = h["link"].to_str().unwrap();
    assert!(link.len() <= value.len(), "{}", link.len());
    assert!(link.starts_with("</0>,</1>"), "{link}");
    // Within the budget, other fields still get the absolute form.
    assert_eq!(h["location"], format!("https://{host}/x").as_str());
}

#[test]
fn obs_text_and_sensitive_values_survive() {
    let o = origin("http://o");
    let p = public("http", "api.example");
    let mut h = HeaderMap::new();
    let mut v = HeaderValue::from_bytes(b"<http://o/a>; title=\"caf\xe9\"").unwrap();
    v.set_sensitive(true);
    h.insert("link", v);
    o.rewrite(&mut h, &p);
    assert_eq!(
        h["link"].as_bytes(),
        b"<http://api.example/a>; title=\"caf\xe9\""
    );
    assert!(h["link"].is_sensitive());
}

#[test]
fn proxy_paths_for_invalidation() {
    let o = origin("http://origin:3000/v1");
    let rows: &[(&str, Option<&str>)] = &[
        ("http://origin:3000/v1/items/7", Some("/items/7")),
        ("//ORIGIN:3000/v1/items/7?x", Some("/items/7?x")),
        ("http://origin:3000/v1", Some("/")),
        ("http://origin:3000/v2/items/7", None),
        ("/v1/items/7", None),
        ("http://elsewhere/v1/items/7", None),
    ];
    for (value, want) in rows {
        assert_eq!(o.proxy_path(value).as_deref(), *want, "{value}");
    }
}
