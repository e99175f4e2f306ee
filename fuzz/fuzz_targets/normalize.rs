//! Normalizer on arbitrary request targets: no panics, idempotence, and a moved API key never
//! changes the forwarded target or the key (it only becomes the credential).

#![no_main]

use apicache::config::NormalizeConfig;
use apicache::normalize::{cache_key, credential_hash, NormalizeError, Normalized, Normalizer};
use libfuzzer_sys::fuzz_target;

const KEY_NAMES: [&str; 4] = ["apiKey", "api_key", "APIKEY", "api%5Fkey"];

fuzz_target!(|input: (&str, u8, u8, &[u8])| {
    let (target, name_pick, pos, secret_bytes) = input;
    let cfg = NormalizeConfig {
        list_params: vec!["fields".into()],
        page_param: "page".into(),
        ..NormalizeConfig::default()
    };
    let n = Normalizer::new(&cfg);
    let base = n.normalize(target);
    if let Ok(base) = &base {
        check_normalized(&n, &cfg, base);
    }

    // Splice one well-formed API key parameter into the query at a fuzzer-chosen place.
    let secret: String = secret_bytes
        .iter()
        .map(|b| {
            char::from(
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                    [usize::from(b % 62)],
            )
        })
        .collect();
    if secret.is_empty() {
        return;
    }
    let param = format!("{}={secret}", KEY_NAMES[usize::from(name_pick % 4)]);
    let spliced = match target.split_once('?') {
        None => format!("{target}?{param}"),
        Some((path, query)) => {
            let mut pieces: Vec<&str> = query.split('&').collect();
            let at = usize::from(pos) % (pieces.len() + 1);
            pieces.insert(at, &param);
            format!("{path}?{}", pieces.join("&"))
        }
    };
    let with_key = n.normalize(&spliced);
    let Ok(base) = base else {
        // The spliced key can only make an earlier malformed key irrelevant, never add an error.
        return;
    };
    let with_key = match with_key {
        // The target already had a key: two keys are refused, never half-moved.
        Err(NormalizeError::DuplicateCredential) if base.credential.is_some() => return,
        r => r.expect("adding a valid API key cannot make a valid target invalid"),
    };
    check_normalized(&n, &cfg, &with_key);
    assert_eq!(
        with_key.path_and_query, base.path_and_query,
        "a moved API key changed the forwarded target"
    );
    let ours = format!("api-token {secret}");
    let cred = with_key
        .credential
        .as_ref()
        .expect("a moved key gives a credential");
    assert!(base.credential.is_none());
    assert_eq!(cred.as_bytes(), ours.as_bytes());
    let key = cache_key("http://api.example", &with_key.path_and_query, Some(cred));
    assert_eq!(
        key,
        format!(
            "GET http://api.example{} #cred={}",
            with_key.path_and_query,
            credential_hash(cred)
        )
    );
    // An 8+ char alphanumeric secret with a non-hex char can only show up via the query itself.
    if secret.len() >= 8
        && secret.bytes().any(|b| !b.is_ascii_hexdigit())
        && !base.path_and_query.contains(&secret)
    {
        assert!(!key.contains(&secret), "API key leaked into the cache key");
    }
});

fn check_normalized(n: &Normalizer, cfg: &NormalizeConfig, out: &Normalized) {
    let pq = &out.path_and_query;
    assert!(pq.starts_with('/'), "{pq:?}");
    assert!(pq.is_char_boundary(out.path_len) && out.path_len <= pq.len());
    assert!(!out.path().contains('?'));
    let again = n.normalize(pq).expect("normalized output normalizes again");
    assert_eq!(&again.path_and_query, pq, "normalization is not idempotent");
    assert_eq!(again.path_len, out.path_len);
    assert!(again.credential.is_none(), "an API key parameter survived");
    if let Some((_, query)) = pq.split_once('?') {
        for piece in query.split('&') {
            let name = piece.split('=').next().unwrap_or("");
            assert!(
                !cfg.auth_params.iter().any(|a| a.eq_ignore_ascii_case(name)),
                "API key parameter {name:?} left in {pq:?}"
            );
        }
    }
}
