//! HTTPS on the listeners (`[server.tls]`, `[admin.tls]`): ALPN picks HTTP/1.1 or h2, every key
//! type and PEM form serves, requests over TLS are `https` to the origin and in rewritten URLs,
//! handshakes are held to the header-read deadline and to `max_connections`, a bad pair fails at
//! start, and a reload swaps the certificate for new connections. Certificates come from a
//! private CA made in each test (`support::certs`).

mod support;
use support::*;

use std::time::{Duration, Instant};

use http::Version;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET /a` as reqwest sends it to `port` (the host, port included, is in the cache key).
fn request_a(port: u16) -> String {
    format!("GET /a HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n")
}

async fn tls_proxy(origin: &Origin, leaf: &Leaf) -> apicache::Running {
    ProxyBuilder::new(origin)
        .server_key(&leaf.toml_line())
        .start()
        .await
}

/// Protocols a client offers in ALPN.
type Offer<'a> = &'a [&'a [u8]];

/// The certificate the server at `addr` shows a new connection.
async fn served_cert(ca: &Ca, addr: std::net::SocketAddr) -> Vec<u8> {
    let s = tls_connect(addr, ca.rustls_config(&[b"http/1.1"], false)).await;
    let certs = s.get_ref().1.peer_certificates().expect("a certificate");
    certs[0].to_vec()
}

/// Read from `s` until the server closes it (EOF or reset); how long that took. Bounded by 10 s.
async fn closed_after(s: &mut tokio::net::TcpStream, since: Instant) -> Duration {
    let mut buf = [0u8; 512];
    let wait = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the server closes the connection within 10 s");
    since.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_h2_clients_get_their_protocol_and_cached_answers() {
    let origin = cacheable_origin().await;
    let ca = Ca::new("protocols");
    let leaf = ca.leaf("proxy", KeyKind::EcdsaP256Sec1);
    let p = tls_proxy(&origin, &leaf).await;
    let h1 = ca.client(p.addr, true);
    let h2 = ca.client(p.addr, false);
    // (client, path, version, X-Cache)
    let rows = [
        (&h1, "/a", Version::HTTP_11, "MISS"),
        (&h1, "/a", Version::HTTP_11, "HIT"),
        (&h2, "/a", Version::HTTP_2, "HIT"),
        (&h2, "/b", Version::HTTP_2, "MISS"),
        (&h2, "/b", Version::HTTP_2, "HIT"),
        (&h1, "/b", Version::HTTP_11, "HIT"),
    ];
    for (client, path, version, cache) in rows {
        let r = client.get(https_url(p.addr, path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.version(), version, "{path}");
        assert_eq!(
            hdr(r.headers(), "x-cache"),
            cache,
            "{path} over {version:?}"
        );
        let body = r.text().await.unwrap();
        assert_eq!(body, format!("{{\"path\":\"{path}\"}}"));
    }
    assert_eq!(origin.count(), 2);

    // ALPN as negotiated: the server prefers h2, takes http/1.1, and without ALPN sniffs.
    let offers: [(Offer, Option<&[u8]>); 4] = [
        (&[b"h2", b"http/1.1"], Some(b"h2")),
        (&[b"http/1.1", b"h2"], Some(b"h2")),
        (&[b"http/1.1"], Some(b"http/1.1")),
        (&[], None),
    ];
    for (offer, want) in offers {
        let s = tls_connect(p.addr, ca.rustls_config(offer, false)).await;
        let conn = s.get_ref().1;
        assert_eq!(conn.alpn_protocol(), want, "{offer:?}");
        assert_eq!(
            conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
    }
    // TLS 1.2 still works, and HTTP/1.1 without ALPN is served.
    for (alpn, tls12) in [(&[b"http/1.1" as &[u8]][..], true), (&[][..], false)] {
        let mut s = tls_connect(p.addr, ca.rustls_config(alpn, tls12)).await;
        if tls12 {
            assert_eq!(
                s.get_ref().1.protocol_version(),
                Some(rustls::ProtocolVersion::TLSv1_2)
            );
        }
        let resp = tls_exchange(&mut s, &request_a(p.addr.port())).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.to_ascii_lowercase().contains("x-cache: hit"), "{resp}");
    }
    assert_eq!(origin.count(), 2);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_ecdsa_and_ed25519_keys_each_load_and_serve() {
    let origin = cacheable_origin().await;
    let ca = Ca::new("kinds");
    for kind in [
        KeyKind::EcdsaP256Sec1,
        KeyKind::EcdsaP384,
        KeyKind::RsaPkcs1,
        KeyKind::RsaPkcs8,
        KeyKind::Ed25519,
    ] {
        let leaf = ca.leaf(&format!("{kind:?}"), kind);
        let p = tls_proxy(&origin, &leaf).await;
        let r = ca
            .client(p.addr, false)
            .get(https_url(p.addr, "/k"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{kind:?}: {e:?}"));
        assert_eq!((r.status().as_u16(), r.version()), (200, Version::HTTP_2));
        assert_eq!(
            served_cert(&ca, p.addr).await,
            leaf.der.to_vec(),
            "{kind:?}"
        );
        p.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_requests_are_https_to_the_origin_and_in_rewritten_urls() {
    let origin = Origin::start(|_| Reply::ok("")).await;
    let own = origin.url();
    origin.set_handler(move |s| match s.path_and_query.as_str() {
        "/old" => Reply::ok("")
            .status(301)
            .header("location", &format!("{own}/new"))
            .header("cache-control", "max-age=60"),
        _ => Reply::ok("{}"),
    });
    let ca = Ca::new("scheme");
    let leaf = ca.leaf("proxy", KeyKind::EcdsaP256Sec1);
    let p = tls_proxy(&origin, &leaf).await;
    let client = ca.client(p.addr, true);
    let port = p.addr.port();
    for cache in ["MISS", "HIT"] {
        let r = client.get(https_url(p.addr, "/old")).send().await.unwrap();
        assert_eq!(r.status(), 301);
        assert_eq!(hdr(r.headers(), "x-cache"), cache);
        assert_eq!(
            hdr(r.headers(), "location"),
            format!("https://localhost:{port}/new")
        );
    }
    assert_eq!(origin.last().header("x-forwarded-proto"), "https");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listener_over_tls() {
    let origin = cacheable_origin().await;
    let ca = Ca::new("admin");
    let leaf = ca.leaf("admin", KeyKind::EcdsaP384);
    let p = ProxyBuilder::new(&origin)
        .admin()
        .admin_key(&leaf.toml_line())
        .start()
        .await;
    let admin = p.admin_addr.unwrap();
    let client = ca.client(admin, false);
    let r = client
        .get(https_url(admin, "/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!((r.status().as_u16(), r.version()), (200, Version::HTTP_2));
    let r = client
        .get(https_url(admin, "/stats"))
        .header("authorization", BEARER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(served_cert(&ca, admin).await, leaf.der.to_vec());
    // Plain HTTP on the admin port gets no HTTP answer; the public port stays plain HTTP.
    let plain = raw(admin, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(!plain.starts_with("HTTP/"), "{plain}");
    let (s, h, _) = get(&p, "/public").await;
    assert_eq!((s, hdr(&h, "x-cache")), (200, "MISS"));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_or_half_sent_handshakes_are_closed_at_the_header_read_deadline() {
    let origin = cacheable_origin().await;
    let ca = Ca::new("silent");
    let leaf = ca.leaf("proxy", KeyKind::EcdsaP256Sec1);
    let p = ProxyBuilder::new(&origin)
        .server_key(&leaf.toml_line())
        .server_key("header_read_timeout = \"1s\"")
        .start()
        .await;
    let start = Instant::now();
    let mut silent = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let mut half = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    // A handshake record announcing 512 bytes, and the start of a ClientHello.
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc])
        .await
        .unwrap();
    for (name, s) in [("silent", &mut silent), ("half", &mut half)] {
        let after = closed_after(s, start).await;
        // Never before the deadline counted from accept.
        assert!(after >= Duration::from_millis(900), "{name}: {after:?}");
    }
    // Plain HTTP on a TLS port fails its handshake at once.
    let plain = raw(p.addr, "GET /a HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(!plain.starts_with("HTTP/"), "{plain}");
    let r = ca
        .client(p.addr, true)
        .get(https_url(p.addr, "/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshaking_connection_holds_a_slot_and_never_holds_up_accept() {
    let origin = cacheable_origin().await;
    let ca = Ca::new("slots");
    let leaf = ca.leaf("proxy", KeyKind::EcdsaP256Sec1);
    let p = ProxyBuilder::new(&origin)
        .server_key(&leaf.toml_line())
        .server_key("max_connections = 1")
        .server_key("header_read_timeout = \"60s\"")
        .start()
        .await;
    let start = Instant::now();
    let mut silent = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    // The silent handshake holds the only slot: the next client evicts it (it is idle), and is
    // served long before the 60 s deadline would have freed it.
    let request = ca.client(p.addr, true).get(https_url(p.addr, "/a")).send();
    let r = tokio::time::timeout(Duration::from_secs(10), request)
        .await
        .expect("served while another connection is in its handshake")
        .unwrap();
    assert_eq!(r.status(), 200);
    let after = closed_after(&mut silent, start).await;
    assert!(after < Duration::from_secs(10), "{after:?}");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_serves_the_new_certificate_to_new_connections() {
    let origin = cacheable_origin().await;
    let ca = Ca::new("reload");
    let first = ca.leaf("first", KeyKind::EcdsaP256Sec1);
    let second = ca.leaf("second", KeyKind::Ed25519);
    let p = tls_proxy(&origin, &first).await;
    let resolver = p.tls().server.clone().expect("server.tls is set");
    assert!(p.tls().admin.is_none());
    assert_eq!(served_cert(&ca, p.addr).await, first.der.to_vec());
    // A connection open before the reload keeps its session.
    let mut open = tls_connect(p.addr, ca.rustls_config(&[b"http/1.1"], false)).await;

    resolver.reload(&second.tls).unwrap();
    assert_eq!(served_cert(&ca, p.addr).await, second.der.to_vec());
    assert_eq!(
        open.get_ref().1.peer_certificates().unwrap()[0].to_vec(),
        first.der.to_vec()
    );
    let resp = tls_exchange(&mut open, &request_a(p.addr.port())).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");

    // A renewal in place: same paths, new files.
    let renewed = ca.leaf("second", KeyKind::Ed25519);
    assert_ne!(renewed.der, second.der);
    resolver.reload(&renewed.tls).unwrap();
    assert_eq!(served_cert(&ca, p.addr).await, renewed.der.to_vec());

    // A bad pair is refused and the current certificate stays.
    let mismatched = apicache::config::TlsConfig {
        cert_file: first.tls.cert_file.clone(),
        key_file: renewed.tls.key_file.clone(),
    };
    let e = resolver.reload(&mismatched).unwrap_err().to_string();
    assert!(e.contains("server.tls.key_file"), "{e}");
    assert_eq!(served_cert(&ca, p.addr).await, renewed.der.to_vec());
    p.shutdown().await;
}

/// A key that is not the certificate's stops the binary at start with the file, key and reason.
#[test]
fn a_mismatched_pair_fails_at_start_naming_the_key() {
    let ca = Ca::new("mismatch");
    let a = ca.leaf("a", KeyKind::EcdsaP256Sec1);
    let b = ca.leaf("b", KeyKind::EcdsaP256Sec1);
    let cfg = ca.dir.join("apicache.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n\
             [origin]\nurl = \"http://127.0.0.1:9\"\n",
            a.tls.cert_file.display().to_string(),
            b.tls.key_file.display().to_string()
        ),
    )
    .unwrap();
    for check in [false, true] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_apicache"));
        if check {
            cmd.arg("--check-config");
        }
        let out = cmd.arg("--config").arg(&cfg).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        let want = format!(
            "apicache: {}: key `server.tls.key_file`: {}: does not match the first certificate in {}",
            cfg.display(),
            b.tls.key_file.display(),
            a.tls.cert_file.display()
        );
        assert!(stderr.contains(&want), "{stderr}");
    }
}
