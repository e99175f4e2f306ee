//! Loading certificate/key pairs: what loads, what fails with which key and reason, and
//! reloads that swap only a good pair. Every key type and PEM form is also served end to end in
//! `tests/tls_listener.rs`.

use super::*;

/// A fresh directory under the system temp dir, unique to this process and `name`.
pub(crate) fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("apicache-tls-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A self-signed ECDSA P-256 certificate for `localhost` and its PKCS#8 key, written to
/// `dir/<name>.crt` and `dir/<name>.key`.
pub(crate) fn self_signed(dir: &Path, name: &str) -> TlsConfig {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let tls = TlsConfig {
        cert_file: dir.join(format!("{name}.crt")),
        key_file: dir.join(format!("{name}.key")),
    };
    std::fs::write(&tls.cert_file, ck.cert.pem()).unwrap();
    std::fs::write(&tls.key_file, ck.signing_key.serialize_pem()).unwrap();
    tls
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n")
}

fn load_err(tls: &TlsConfig) -> LoadError {
    load(tls).expect_err("should not load")
}

#[test]
fn a_good_pair_loads_with_its_chain() {
    let dir = temp_dir("good");
    let tls = self_signed(&dir, "a");
    let ck = load(&tls).unwrap();
    assert_eq!(ck.cert.len(), 1);
    let written = std::fs::read(&tls.cert_file).unwrap();
    let der = CertificateDer::from_pem_slice(&written).unwrap();
    assert_eq!(ck.cert[0], der);
    // One file holding both the chain and the key serves as both.
    let both = dir.join("both.pem");
    let mut text = std::fs::read_to_string(&tls.key_file).unwrap();
    text += &std::fs::read_to_string(&tls.cert_file).unwrap();
    std::fs::write(&both, text).unwrap();
    load(&TlsConfig {
        cert_file: both.clone(),
        key_file: both,
    })
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_files_fail_naming_the_key_and_why() {
    let dir = temp_dir("bad");
    let a = self_signed(&dir, "a");
    let b = self_signed(&dir, "b");
    let write = |name: &str, text: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let empty = write("empty.pem", b"\n  \n");
    let garbage = write("garbage.pem", b"hello, I am not PEM\n");
    let broken = write(
        "broken.pem",
        b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    );
    let encrypted = write(
        "enc.pem",
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    // PKCS#8 with an algorithm no provider knows (OID 1.2.3.4).
    let unknown_alg = [
        0x30, 0x10, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2a, 0x03, 0x04, 0x04, 0x04, 0x01,
        0x02, 0x03, 0x04,
    ];
    let unknown = write("unknown.pem", pem("PRIVATE KEY", &unknown_alg).as_bytes());
    let huge = write("huge.pem", &vec![b'A'; (MAX_PEM_BYTES + 1) as usize]);
    let missing = dir.join("missing.pem");
    let with = |cert: &Path, key: &Path| TlsConfig {
        cert_file: cert.to_path_buf(),
        key_file: key.to_path_buf(),
    };
    // (cert, key, field at fault, words of the reason)
    let rows: Vec<(TlsConfig, &str, &str)> = vec![
        (with(&missing, &a.key_file), "cert_file", "cannot read"),
        (with(&empty, &a.key_file), "cert_file", "empty"),
        (with(&garbage, &a.key_file), "cert_file", "no CERTIFICATE"),
        (
            with(&a.key_file, &a.key_file),
            "cert_file",
            "no CERTIFICATE",
        ),
        (with(&broken, &a.key_file), "cert_file", "not valid PEM"),
        (with(&huge, &a.key_file), "cert_file", "larger than"),
        (with(&a.cert_file, &missing), "key_file", "cannot read"),
        (with(&a.cert_file, &empty), "key_file", "empty"),
        (
            with(&a.cert_file, &a.cert_file),
            "key_file",
            "no unencrypted",
        ),
        (with(&a.cert_file, &encrypted), "key_file", "no unencrypted"),
        (with(&a.cert_file, &unknown), "key_file", "unsupported"),
        (
            with(&a.cert_file, &b.key_file),
            "key_file",
            "does not match",
        ),
    ];
    for (tls, field, words) in rows {
        let e = load_err(&tls);
        assert_eq!(e.field, field, "{tls:?}: {e:?}");
        assert!(e.reason.contains(words), "{tls:?}: {e:?}");
        let path = if field == "cert_file" {
            &tls.cert_file
        } else {
            &tls.key_file
        };
        assert_eq!(&e.path, path);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_validation_names_file_key_and_pem_path() {
    let dir = temp_dir("cfg");
    let a = self_signed(&dir, "a");
    let b = self_signed(&dir, "b");
    let toml = |section: &str, cert: &Path, key: &Path| {
        format!(
            "[origin]\nurl = \"http://a:1\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [{section}]\ncert_file = {:?}\nkey_file = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        )
    };
    let c = Config::parse(&toml("server.tls", &a.cert_file, &a.key_file)).unwrap();
    assert_eq!(c.server.tls.as_ref(), Some(&a));
    let c = Config::parse(&toml("admin.tls", &a.cert_file, &a.key_file)).unwrap();
    assert_eq!(c.admin.unwrap().tls.as_ref(), Some(&a));
    for section in ["server.tls", "admin.tls"] {
        let e = Config::parse(&toml(section, &a.cert_file, &b.key_file))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("<inline>: key `{section}.key_file`: "))
                && e.contains(&b.key_file.display().to_string())
                && e.contains("does not match"),
            "{e}"
        );
    }
    let e = Config::parse(
        "[origin]\nurl = \"http://a:1\"\n[server.tls]\ncert_file = \"x\"\nkey = \"y\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("server.tls"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reload_swaps_only_a_good_pair() {
    let dir = temp_dir("reload");
    let a = self_signed(&dir, "a");
    let b = self_signed(&dir, "b");
    let r = CertResolver::new("server.tls", &a).unwrap();
    let first = r.current();
    r.reload(&b).unwrap();
    let second = r.current();
    assert_ne!(first.cert, second.cert);
    // A mismatched pair is refused and the current one stays.
    let mixed = TlsConfig {
        cert_file: a.cert_file.clone(),
        key_file: b.key_file.clone(),
    };
    let e = r.reload(&mixed).unwrap_err().to_string();
    assert!(
        e.contains("key `server.tls.key_file`") && e.contains("does not match"),
        "{e}"
    );
    assert_eq!(r.current().cert, second.cert);
    // Renewal in place: same paths, new contents.
    let renewed = self_signed(&dir, "b");
    r.reload(&renewed).unwrap();
    assert_ne!(r.current().cert, second.cert);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn handles_reload_all_or_nothing_and_refuse_turning_tls_on_or_off() {
    let dir = temp_dir("handles");
    let a = self_signed(&dir, "a");
    let b = self_signed(&dir, "b");
    let cfg = |server: Option<&TlsConfig>, admin: Option<&TlsConfig>| {
        let mut c = Config::for_origin("http://a:1").unwrap();
        c.server.tls = server.cloned();
        c.admin = Some(crate::config::AdminConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            token: None,
            token_env: None,
            tls: admin.cloned(),
        });
        c
    };
    let h = TlsHandles::new(&cfg(Some(&a), Some(&a))).unwrap();
    let before = h.server.as_ref().unwrap().current();
    // The admin pair is bad: neither listener changes.
    let bad = TlsConfig {
        cert_file: a.cert_file.clone(),
        key_file: b.key_file.clone(),
    };
    let e = h
        .reload(&cfg(Some(&b), Some(&bad)), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("admin.tls.key_file"), "{e}");
    assert_eq!(h.server.as_ref().unwrap().current().cert, before.cert);
    h.reload(&cfg(Some(&b), Some(&b)), &[]).unwrap();
    assert_ne!(h.server.as_ref().unwrap().current().cert, before.cert);
    assert_eq!(
        h.admin.as_ref().unwrap().current().cert,
        h.server.as_ref().unwrap().current().cert
    );
    let e = h.reload(&cfg(None, Some(&b)), &[]).unwrap_err().to_string();
    assert!(e.contains("server.tls") && e.contains("restart"), "{e}");
    let plain = TlsHandles::new(&cfg(None, None)).unwrap();
    assert!(plain.server.is_none() && plain.admin.is_none());
    let e = plain
        .reload(&cfg(None, Some(&a)), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("admin.tls") && e.contains("restart"), "{e}");
    plain.reload(&cfg(None, None), &[]).unwrap();
    // A listener whose TLS the file turned off (a restart-needed key) keeps its certificate
    // unread, even when its files are gone.
    h.reload(&cfg(None, Some(&b)), &["server.tls"]).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
