//! Surrogate-Key parsing and tag templates on arbitrary values: keys are bounded, distinct,
//! whitespace-free, taken from the header, and never collide with the internal URL tags.

#![no_main]

mod common;

use apicache::cache::tags::{
    parse_surrogate_keys, render_template, template_params, url_tag, MAX_HEADER_LEN, MAX_KEY_LEN,
};
use http::HeaderMap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &[u8])| {
    let (template, data) = input;
    let mut headers = HeaderMap::new();
    for v in common::header_values(data) {
        headers.append("surrogate-key", v);
    }
    let keys = parse_surrogate_keys(&headers);
    let mut budget = 0usize;
    for (i, k) in keys.iter().enumerate() {
        assert!(!k.is_empty() && k.len() <= MAX_KEY_LEN, "{k:?}");
        assert!(!k.bytes().any(|b| b.is_ascii_whitespace()), "{k:?}");
        assert!(!keys[..i].contains(k), "duplicate {k:?}");
        assert!(
            headers
                .get_all("surrogate-key")
                .iter()
                .any(|v| v.to_str().is_ok_and(|s| s.contains(k.as_str()))),
            "{k:?} is not in the header"
        );
        assert_ne!(url_tag("/"), *k);
        budget += k.len() + 1;
    }
    assert!(budget <= MAX_HEADER_LEN);

    let params = template_params(template);
    let values: Vec<(&str, &str)> = params.iter().map(|p| (p.as_str(), "v")).collect();
    let rendered = render_template(template, values.iter().copied());
    // Braces around a placeholder can spell another: "{v}{{}}" renders as "v{v}".
    if !template.contains("{{") && !params.iter().any(|p| p.contains('{')) {
        for p in &params {
            assert!(
                !rendered.contains(&format!("{{{p}}}")),
                "{p:?} in {rendered:?}"
            );
        }
    }
});
