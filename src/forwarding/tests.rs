use super::*;
use http::Request;

fn fwd(trusted: &[&str], hosts: &[&str]) -> Forwarding {
    let server = ServerConfig {
        trusted_proxies: trusted.iter().map(|s| s.to_string()).collect(),
        hosts: hosts.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    Forwarding::compile(&server, &NormalizeConfig::default()).unwrap()
}

fn head(version: Version, target: &str, headers: &[(&str, &str)]) -> Parts {
    let mut b = Request::builder().version(version).uri(target);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

const PEER: &str = "192.0.2.7:4000";
const LB: &str = "10.1.2.3:4000";

#[test]
fn host_normalization() {
    let rows = [
        ("API.Example.com", "http", Some("api.example.com")),
        ("api.example.com:80", "http", Some("api.example.com")),
        ("api.example.com:443", "https", Some("api.example.com")),
        ("api.example.com:443", "http", Some("api.example.com:443")),
        ("api.example.com:8080", "http", Some("api.example.com:8080")),
        ("[::1]:80", "http", Some("[::1]")),
        ("user@evil", "http", None),
        ("a b", "http", None),
        ("", "http", None),
        ("evil/x", "http", None),
        ("victim.example,evil", "http", None),
        ("a;b", "http", None),
        ("a'b", "http", None),
        (
            "internal_name.local:8080",
            "http",
            Some("internal_name.local:8080"),
        ),
        ("10.0.0.1", "http", Some("10.0.0.1")),
        ("[fe80::1]:8443", "http", Some("[fe80::1]:8443")),
    ];
    for (raw, proto, want) in rows {
        assert_eq!(normalize_host(raw, proto).as_deref(), want, "{raw}");
    }
}

#[test]
fn which_host_a_request_is_for() {
    let f = fwd(&["10.0.0.0/8"], &[]);
    let v11 = Version::HTTP_11;
    // (version, target, headers, peer, expected host/proto or error status)
    type Row<'a> = (
        Version,
        &'a str,
        &'a [(&'a str, &'a str)],
        &'a str,
        Result<(&'a str, &'a str), u16>,
    );
    let rows: &[Row<'_>] = &[
        (
            v11,
            "/a",
            &[("host", "API.x:80")],
            PEER,
            Ok(("api.x", "http")),
        ),
        (v11, "/a", &[], PEER, Err(400)),
        (Version::HTTP_10, "/a", &[], PEER, Ok(("", "http"))),
        (Version::HTTP_2, "/a", &[], PEER, Err(400)),
        (v11, "/a", &[("host", "a"), ("host", "b")], PEER, Err(400)),
        (v11, "/a", &[("host", "bad host")], PEER, Err(400)),
        (
            v11,
            "http://Other.x/a",
            &[("host", "a")],
            PEER,
            Ok(("other.x", "http")),
        ),
        // Untrusted peers cannot choose what the origin is told.
        (
            v11,
            "/a",
            &[
                ("host", "a"),
                ("x-forwarded-host", "evil"),
                ("x-forwarded-proto", "https"),
            ],
            PEER,
            Ok(("a", "http")),
        ),
        // A trusted load balancer can.
        (
            v11,
            "/a",
            &[
                ("host", "a"),
                ("x-forwarded-host", "Pub.x"),
                ("x-forwarded-proto", "HTTPS"),
            ],
            LB,
            Ok(("pub.x", "https")),
        ),
        (
            v11,
            "/a",
            &[("host", "a:443"), ("x-forwarded-proto", "https")],
            LB,
            Ok(("a", "https")),
        ),
    ];
    for (i, (version, target, headers, peer, want)) in rows.iter().enumerate() {
        let got = f.client(&head(*version, target, headers), peer.parse().unwrap());
        match (got, want) {
            (Ok(c), Ok((host, proto))) => {
                assert_eq!(
                    (c.host.as_str(), c.proto.as_str()),
                    (*host, *proto),
                    "row {i}"
                )
            }
            (Err(e), Err(status)) => assert_eq!(e.status().as_u16(), *status, "row {i}"),
            (got, _) => panic!("row {i}: {got:?}"),
        }
    }
}

#[test]
fn the_public_scheme_and_host() {
    let f = fwd(&["10.0.0.0/8"], &[]);
    let lists = [
        ("host", "lb"),
        ("x-forwarded-proto", "https, http"),
        ("x-forwarded-host", "Pub.x:443, lb"),
    ];
    // (TLS listener, Host or forwarding fields, peer, public scheme://host, keyed proto)
    type Row<'a> = (bool, &'a [(&'a str, &'a str)], &'a str, &'a str, &'a str);
    let rows: [Row<'_>; 6] = [
        (false, &[("host", "a:80")], PEER, "http://a", "http"),
        // A TLS listener: https, and :443 is the default port.
        (true, &[("host", "a:443")], PEER, "https://a", "https"),
        (true, &[("host", "a:80")], PEER, "https://a:80", "https"),
        // A trusted proxy's lists: the first element is the client's.
        (false, &lists, LB, "https://pub.x", "https,http"),
        // Behind TLS, a trusted proxy that says nothing keeps the listener's scheme.
        (true, &[("host", "a")], LB, "https://a", "https"),
        (false, &[], PEER, "http://", "http"),
    ];
    for (i, (tls, fields, peer, public, proto)) in rows.into_iter().enumerate() {
        let version = if fields.is_empty() {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        let mut h = head(version, "/", fields);
        if tls {
            h.extensions.insert(Tls);
        }
        let c = f.client(&h, peer.parse().unwrap()).unwrap();
        let p = c.public();
        assert_eq!(format!("{}://{}", p.scheme, p.host), public, "row {i}");
        assert_eq!(c.proto, proto, "row {i}");
    }
}

#[test]
fn allowed_hosts_answer_421_for_others() {
    let f = fwd(&[], &["API.example.com", "api.example.com:8443"]);
    let ok = |h: &str| {
        f.client(
            &head(Version::HTTP_11, "/", &[("host", h)]),
            PEER.parse().unwrap(),
        )
        .map(|c| c.host)
    };
    assert_eq!(ok("api.example.com:80").unwrap(), "api.example.com");
    assert!(ok("api.example.com:8443").is_ok());
    assert_eq!(ok("evil.example").unwrap_err().status().as_u16(), 421);
    let no_host = f.client(&head(Version::HTTP_10, "/", &[]), PEER.parse().unwrap());
    assert_eq!(no_host.unwrap_err().status().as_u16(), 421);
}

#[test]
fn forwarding_fields_replaced_unless_trusted() {
    let f = fwd(&["10.0.0.0/8", "127.0.0.1"], &[]);
    let client = head(
        Version::HTTP_11,
        "/",
        &[
            ("host", "api.x"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "host=evil"),
            ("x-http-method-override", "DELETE"),
            ("x-original-url", "/admin"),
            ("connection", "host"),
        ],
    );
    for (peer, trusted) in [(PEER, false), (LB, true)] {
        let peer: SocketAddr = peer.parse().unwrap();
        let who = f.client(&client, peer).unwrap();
        assert_eq!(who.trusted, trusted);
        let h = f.headers(&client.headers, &who, Version::HTTP_11, peer, None);
        assert_eq!(h["x-forwarded-host"], "api.x");
        assert!(!h.contains_key("x-http-method-override") && !h.contains_key("x-original-url"));
        assert!(!h.contains_key(header::HOST));
        if trusted {
            assert_eq!(h["x-forwarded-for"], "6.6.6.6, 10.1.2.3");
            assert_eq!(h["x-forwarded-proto"], "https");
            assert_eq!(h["forwarded"], "host=evil");
        } else {
            assert_eq!(h["x-forwarded-for"], "192.0.2.7");
            assert_eq!(h["x-forwarded-proto"], "http");
            assert!(!h.contains_key("forwarded"));
        }
    }
}

#[test]
fn the_client_behind_trusted_proxies() {
    let f = fwd(&["10.0.0.0/8"], &[]);
    let addr = |peer: &str, xff: &[&str]| {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        f.client_addr(&h, peer.parse().unwrap())
    };
    // (peer, X-Forwarded-For lines, client)
    let rows: &[(&str, &[&str], &str)] = &[
        (PEER, &[], "192.0.2.7:4000"),
        // An untrusted peer's own list is its word alone.
        (PEER, &["6.6.6.6"], "192.0.2.7:4000"),
        (LB, &[], "10.1.2.3:4000"),
        (LB, &["203.0.113.9"], "203.0.113.9"),
        // The nearest untrusted hop: what a client wrote farther left is not believed.
        (LB, &["6.6.6.6, 203.0.113.9, 10.0.0.7"], "203.0.113.9"),
        (LB, &["6.6.6.6", "203.0.113.9 , 10.0.0.7"], "203.0.113.9"),
        (LB, &["10.0.0.9, 10.0.0.7"], "10.0.0.9"),
        (LB, &["203.0.113.9:5555"], "203.0.113.9"),
        (LB, &["[2001:db8::1]:443"], "2001:db8::1"),
        (LB, &["2001:db8::1"], "2001:db8::1"),
        (LB, &["unknown"], "10.1.2.3:4000"),
        (LB, &["203.0.113.9, garbage, 10.0.0.7"], "10.1.2.3:4000"),
    ];
    for (peer, xff, want) in rows {
        assert_eq!(addr(peer, xff), *want, "{peer} {xff:?}");
    }
    let many = vec!["10.0.0.1"; 100].join(",");
    assert_eq!(addr(LB, &[&many]), "10.1.2.3:4000", "walk bounded");
}

#[test]
fn bad_config_names_the_key() {
    let mut s = ServerConfig {
        trusted_proxies: vec!["10.0.0.0/8".into(), "nope".into()],
        ..Default::default()
    };
    let n = NormalizeConfig::default();
    assert_eq!(
        Forwarding::compile(&s, &n).unwrap_err().0,
        "server.trusted_proxies[1]"
    );
    s.trusted_proxies.clear();
    s.hosts = vec!["a b".into()];
    assert_eq!(
        Forwarding::compile(&s, &n).unwrap_err().0,
        "server.hosts[0]"
    );
    s.hosts.clear();
    let n = NormalizeConfig {
        strip_request_headers: vec!["bad header".into()],
        ..Default::default()
    };
    let e = Forwarding::compile(&s, &n).unwrap_err().0;
    assert_eq!(e, "normalize.strip_request_headers[0]");
}

#[test]
fn cookie_fields_reach_the_origin_as_one() {
    let f = fwd(&[], &[]);
    let peer: SocketAddr = PEER.parse().unwrap();
    // (Cookie lines, what the origin gets)
    let rows: &[(&[&str], Option<&str>)] = &[
        (&[], None),
        (&["a=1"], Some("a=1")),
        (&["a=1", "b=2", "c=3"], Some("a=1; b=2; c=3")),
    ];
    for (lines, want) in rows {
        let mut fields: Vec<(&str, &str)> = vec![("host", "api.x")];
        fields.extend(lines.iter().map(|v| ("cookie", *v)));
        let client = head(Version::HTTP_2, "/", &fields);
        let who = f.client(&client, peer).unwrap();
        assert_eq!(f.rewrites(&client.headers, &who), lines.len() > 1);
        let h = f.headers(&client.headers, &who, Version::HTTP_2, peer, None);
        let got: Vec<_> = h.get_all(header::COOKIE).iter().collect();
        assert_eq!(got.len(), usize::from(want.is_some()), "{lines:?}");
        assert_eq!(got.first().map(|v| v.to_str().unwrap()), *want);
    }
}
