//! Tests of the origin's TLS keys: roots, CA bundles, `host`, `http2`.

use super::*;
use crate::config::Config;

/// A directory of its own under the temp dir, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("apicache-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ca_pem() -> String {
    rcgen::generate_simple_self_signed(vec!["ca.test".to_string()])
        .unwrap()
        .cert
        .pem()
}

#[test]
fn roots_come_from_the_platform_and_ca_file() {
    let dir = Dir::new("roots");
    let bundle = dir.file("bundle.pem", &format!("{}{}", ca_pem(), ca_pem()));
    let platform = |file: Option<&Path>| rustls_native_certs::load_certs_from_paths(file, None);
    let one = vec![CertificateDer::from(
        rcgen::generate_simple_self_signed(vec!["x.test".to_string()])
            .unwrap()
            .cert
            .der()
            .to_vec(),
    )];
    let garbage = vec![CertificateDer::from(b"not a certificate".to_vec())];
    let missing = dir.0.join("missing.pem");
    // (platform store, ca_file certificates, Ok(roots) or Err(part of the reason))
    let rows: Vec<(_, Vec<CertificateDer<'static>>, Result<usize, &str>)> = vec![
        (platform(None), vec![], Err("no trusted CA certificates")),
        (platform(None), vec![], Err("set origin.ca_file")),
        (platform(Some(&missing)), vec![], Err("missing.pem")),
        (platform(Some(&bundle)), vec![], Ok(2)),
        (platform(None), one.clone(), Ok(1)),
        (platform(Some(&missing)), one.clone(), Ok(1)),
        (platform(Some(&bundle)), one, Ok(3)),
        (platform(Some(&bundle)), garbage, Err("certificate 1 of")),
    ];
    for (i, (platform, extra, want)) in rows.into_iter().enumerate() {
        let got = roots(platform, extra, Some(Path::new("ca.pem")));
        match (got, want) {
            (Ok(r), Ok(n)) => assert_eq!(r.len(), n, "row {i}"),
            (Err(why), Err(part)) => assert!(why.contains(part), "row {i}: {why}"),
            (got, want) => panic!("row {i}: want {want:?}, got {:?}", got.map(|r| r.len())),
        }
    }
}

/// Valid, or the key an error names and part of its reason.
type Outcome = Result<(), (&'static str, &'static str)>;

#[test]
fn origin_tls_keys_are_validated() {
    let dir = Dir::new("keys");
    let ca = dir.file("ca.pem", &ca_pem());
    let key_only = dir.file(
        "key.pem",
        &rcgen::KeyPair::generate().unwrap().serialize_pem(),
    );
    let broken = dir.file(
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
    );
    let ca_line = |p: &Path| format!("ca_file = {:?}\n", p.display().to_string());
    let missing = ca_line(&dir.0.join("nope.pem"));
    let good = ca_line(&ca);
    // (url, extra [origin] lines, Ok or Err((key, part of the reason)))
    let rows: Vec<(&str, String, Outcome)> = vec![
        ("https://a.test", good.clone(), Ok(())),
        ("https://a.test:8443/v1", good.clone(), Ok(())),
        (
            "https://a.test",
            "insecure_skip_verify = true\n".into(),
            Ok(()),
        ),
        ("http://a.test", "http2 = \"always\"\n".into(), Ok(())),
        (
            "https://a.test",
            missing.clone(),
            Err(("origin.ca_file", "cannot read")),
        ),
        // Refused even where it has no effect: a reload must not take a bad file.
        (
            "http://a.test",
            missing,
            Err(("origin.ca_file", "cannot read")),
        ),
        (
            "https://a.test",
            ca_line(&key_only),
            Err(("origin.ca_file", "holds no certificate")),
        ),
        (
            "https://a.test",
            ca_line(&broken),
            Err(("origin.ca_file", "not a PEM file")),
        ),
        (
            "ftp://a.test",
            String::new(),
            Err(("origin.url", "http:// or https://")),
        ),
        (
            "https://a.test",
            "http2 = \"sometimes\"\n".into(),
            Err(("origin.http2", "unknown variant")),
        ),
        (
            "https://a.test",
            "insecure_skip_verify = \"yes\"\n".into(),
            Err(("origin.insecure_skip_verify", "invalid type")),
        ),
        (
            "http://a.test",
            "host = \"a b\"\n".into(),
            Err(("origin.host", "not a host[:port]")),
        ),
        (
            "http://a.test",
            "host = \"u@a.test\"\n".into(),
            Err(("origin.host", "not a host[:port]")),
        ),
        (
            "http://a.test",
            "host = \"\"\n".into(),
            Err(("origin.host", "not a host[:port]")),
        ),
        (
            "http://a.test",
            "host = \"api.internal\"\npreserve_host = true\n".into(),
            Err(("origin.host", "contradicts origin.preserve_host")),
        ),
        (
            "https://a.test",
            format!("{good}preserve_host = true\nhttp2 = \"always\"\n"),
            Err(("origin.http2", "contradicts origin.preserve_host")),
        ),
        (
            "https://a.test",
            format!("{good}preserve_host = true\nhttp2 = \"never\"\n"),
            Ok(()),
        ),
    ];
    for (url, lines, want) in rows {
        let text = format!("[origin]\nurl = {url:?}\n{lines}");
        match (Config::parse(&text), want) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err((key, part))) => {
                let e = e.to_string();
                assert!(
                    e.contains(&format!("key `{key}`")) && e.contains(part),
                    "{text}: {e}"
                );
            }
            (got, want) => panic!("{text}: want {want:?}, got {:?}", got.err()),
        }
    }
}

#[test]
fn what_the_keys_validate_into() {
    let dir = Dir::new("into");
    let ca = dir.file("ca.pem", &ca_pem());
    let parse = |url: &str, lines: &str| {
        Config::parse(&format!("[origin]\nurl = {url:?}\n{lines}"))
            .unwrap()
            .origin
    };
    let o = parse(
        "https://API.test/v1",
        &format!(
            "ca_file = {:?}\nhost = \"Internal.test:443\"\n",
            ca.display().to_string()
        ),
    );
    assert_eq!(o.scheme, Scheme::HTTPS);
    assert_eq!(o.authority.as_str(), "API.test");
    assert_eq!(
        o.host.as_deref(),
        Some("internal.test"),
        "default port dropped"
    );
    assert_eq!(o.http2, Http2::Auto);
    let tls = o.tls.expect("https has TLS settings");
    assert!(tls.verifies() && tls.roots() >= 1);
    let o = parse(
        "https://a.test",
        "insecure_skip_verify = true\nhttp2 = \"never\"\n",
    );
    assert!(!o.tls.unwrap().verifies());
    assert_eq!(o.http2, Http2::Never);
    let o = parse("http://a.test", "host = \"b.test:8080\"\n");
    assert!(o.tls.is_none());
    assert_eq!(o.host.as_deref(), Some("b.test:8080"));
    // (http2, preserve_host, the mode used)
    let rows = [
        ("auto", false, Http2::Auto),
        ("auto", true, Http2::Never),
        ("never", true, Http2::Never),
        ("always", false, Http2::Always),
        ("never", false, Http2::Never),
    ];
    for (mode, preserve, want) in rows {
        let lines = format!("http2 = {mode:?}\npreserve_host = {preserve}\n");
        assert_eq!(parse("http://a.test", &lines).http2_mode(), want, "{lines}");
    }
}

#[test]
fn a_relative_ca_file_is_relative_to_the_config_file() {
    let dir = Dir::new("relative");
    dir.file("ca.pem", &ca_pem());
    let cfg = dir.file(
        "apicache.toml",
        "[origin]\nurl = \"https://a.test\"\nca_file = \"ca.pem\"\n",
    );
    let c = Config::load(&cfg).unwrap();
    assert_eq!(
        c.origin.ca_file.as_deref(),
        Some(dir.0.join("ca.pem").as_path())
    );
    // Printed resolved, so the printed file loads from anywhere.
    let again = Config::parse(&c.effective_toml().unwrap()).unwrap();
    assert_eq!(again.origin.ca_file, c.origin.ca_file);
    std::fs::remove_file(dir.0.join("ca.pem")).unwrap();
    let e = Config::load(&cfg).unwrap_err().to_string();
    assert!(
        e.contains("apicache.toml") && e.contains("origin.ca_file") && e.contains("ca.pem"),
        "{e}"
    );
}
