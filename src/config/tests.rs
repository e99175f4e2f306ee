//! Tests of the config's parsing and validation.

use super::*;

fn err(text: &str) -> String {
    Config::parse(text).unwrap_err().to_string()
}

#[test]
fn minimal_config_gets_defaults() {
    let c = Config::parse("[origin]\nurl = \"http://127.0.0.1:9000\"\n").unwrap();
    assert_eq!(c.cache.max_size, ByteSize::mib(256));
    assert_eq!(c.origin.authority.as_str(), "127.0.0.1:9000");
    assert_eq!(c.origin.base_path, "");
    assert!(c.origin.rewrite_urls && !c.origin.preserve_host);
    assert_eq!(c.normalize.page_param, "");
    assert!(c.routes.is_empty());
}

#[test]
fn full_example_parses() {
    let text = include_str!("../../config/apicache.toml");
    let c = Config::parse(text).unwrap();
    assert!(!c.routes.is_empty());
}

#[test]
fn effective_config_round_trips() {
    let c = Config::parse(include_str!("../../config/apicache.toml")).unwrap();
    let text = toml::to_string(&c).unwrap();
    assert!(text.contains("max_size = \"256MiB\""), "{text}");
    let rows = [
        (1500, "1500B"),
        (1536, "1536B"),
        (3072, "3KiB"),
        (0, "0B"),
        (8 << 30, "8GiB"),
    ];
    for (bytes, printed) in rows {
        assert_eq!(exact_size(bytes), printed);
        let back: ByteSize = printed.parse().unwrap();
        assert_eq!(back.as_u64(), bytes, "{printed}");
    }
    let again = Config::parse(&text).unwrap();
    assert_eq!(again.cache.max_size, c.cache.max_size);
    assert_eq!(again.routes.len(), c.routes.len());
}

#[test]
fn missing_origin_url_names_key() {
    let e = err("[origin]\n");
    assert!(e.contains("origin") && e.contains("url"), "{e}");
}

#[test]
fn unknown_key_is_rejected_with_its_path() {
    let e = err("[origin]\nurl = \"http://a:1\"\n[cache]\nmax_sise = \"1MiB\"\n");
    assert!(e.contains("cache") && e.contains("max_sise"), "{e}");
}

#[test]
fn bad_duration_names_key() {
    let e = err("[origin]\nurl = \"http://a:1\"\ntimeout = \"soon\"\n");
    assert!(e.contains("origin.timeout"), "{e}");
}

#[test]
fn bad_size_names_key() {
    let e = err("[origin]\nurl = \"http://a:1\"\n[cache]\nmax_size = \"lots\"\n");
    assert!(e.contains("cache.max_size"), "{e}");
}

#[test]
fn malformed_url_is_rejected() {
    assert!(err("[origin]\nurl = \"not a url\"\n").contains("origin.url"));
    assert!(err("[origin]\nurl = \"ftp://a:1\"\n").contains("not supported"));
    assert!(err("[origin]\nurl = \"127.0.0.1:9000\"\n").contains("origin.url"));
}

#[test]
fn route_tags_must_use_path_params() {
    let e = err(
        "[origin]\nurl = \"http://a:1\"\n[[routes]]\npath = \"/a/{id}\"\ntags = [\"x-{nope}\"]\n",
    );
    assert!(e.contains("routes[0].tags"), "{e}");
    let e = err("[origin]\nurl = \"http://a:1\"\n[[routes]]\npath = \"/a/{id\"\n");
    assert!(e.contains("routes[0].path"), "{e}");
    let e = err("[origin]\nurl = \"http://a:1\"\n[[routes]]\npath = \"/a\"\n[[routes]]\npath = \"users/{id}\"\n");
    assert!(
        e.contains("<inline>") && e.contains("routes[1].path") && e.contains("start with `/`"),
        "{e}"
    );
}

#[test]
fn hardening_keys_are_validated_with_their_names() {
    let base = "[origin]\nurl = \"http://a:1\"\n";
    let rows = [
        (
            "[server]\nheader_read_timeout = \"0s\"\n",
            "server.header_read_timeout",
        ),
        ("[server]\nidle_timeout = \"0s\"\n", "server.idle_timeout"),
        (
            "[server]\nmax_uri_length = \"10B\"\n",
            "server.max_uri_length",
        ),
        ("[server]\nhosts = [\"a b\"]\n", "server.hosts[0]"),
        (
            "[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
            "server.trusted_proxies[0]",
        ),
        (
            "[normalize]\nstrip_request_headers = [\"a:b\"]\n",
            "normalize.strip_request_headers[0]",
        ),
        (
            "[normalize]\ntrailing_slash = \"drop\"\n",
            "normalize.trailing_slash",
        ),
        ("[cache]\ncredentialed = \"maybe\"\n", "cache.credentialed"),
        (
            "[cache]\nmax_fill_memory = \"1MiB\"\n",
            "cache.max_fill_memory",
        ),
        ("max_header_size = \"1KiB\"\n", "origin.max_header_size"),
        ("preserve_host = \"yes\"\n", "origin.preserve_host"),
        ("rewrite_urls = 1\n", "origin.rewrite_urls"),
    ];
    for (extra, key) in rows {
        let e = err(&format!("{base}{extra}"));
        assert!(e.contains(key), "{extra}: {e}");
    }
    let c = Config::parse(&format!(
        "{base}[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.1\"]\nhosts = [\"API.x:80\"]\n"
    ))
    .unwrap();
    assert_eq!(c.cache.fill_memory(), 64 << 20);
    assert_eq!(c.server.hosts, ["API.x:80"]);
}

#[test]
fn route_auth_mode_parses() {
    let c = Config::parse(
        "[origin]\nurl = \"http://a:1\"\n[[routes]]\npath = \"/me/{*rest}\"\nauth = \"per-credential\"\n",
    )
    .unwrap();
    assert_eq!(c.routes[0].auth, AuthMode::PerCredential);
    assert!(
        err("[origin]\nurl = \"http://a:1\"\n[[routes]]\npath = \"/x\"\nauth = \"nobody\"\n")
            .contains("routes[0].auth")
    );
}

#[test]
fn origin_url_can_be_replaced_keeping_the_rest() {
    let c = Config::parse(
        "[origin]\nurl = \"http://api.internal:9000/v1\"\ntimeout = \"7s\"\n[server]\nvia = \"x\"\n",
    )
    .unwrap();
    let d = c.with_origin_url("http://127.0.0.1:4567").unwrap();
    assert_eq!(d.origin.url, "http://127.0.0.1:4567");
    assert_eq!(d.origin.authority.as_str(), "127.0.0.1:4567");
    assert_eq!(d.origin.base_path, "");
    assert_eq!(d.origin.timeout, Duration::from_secs(7));
    assert_eq!(d.server.via, "x");
    let e = d.with_origin_url("ftp://a:1").unwrap_err().to_string();
    assert!(e.contains("origin.url"), "{e}");
}
