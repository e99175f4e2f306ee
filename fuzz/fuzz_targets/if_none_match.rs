//! ETag lists (If-None-Match), If-Range and Range on arbitrary values: no panics, weak
//! comparison holds for well-formed tags, and a satisfiable range always lies inside the body.

#![no_main]

mod common;

use apicache::rfc::coding::Coding;
use apicache::rfc::conditional::{
    evaluate_range, none_match, not_modified_since, variant_etag, weaken, RangeOutcome,
};
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u64, bool, &[u8], &[u8])| {
    let (len, weak, opaque, data) = input;
    let values = common::header_values(data);
    let Some((first, rest)) = values.split_first() else {
        return;
    };
    // The first line is the current ETag as the origin sent it; the rest are request headers.
    let etag = Some(first.as_bytes());
    let etags: Vec<&[u8]> = etag.into_iter().collect();
    let matched = none_match(rest.iter(), &etags);
    assert!(
        !none_match(rest.iter(), &[]),
        "no current tag never matches"
    );
    let doubled: Vec<&[u8]> = etags.iter().chain(&etags).copied().collect();
    assert_eq!(none_match(rest.iter(), &doubled), matched);
    assert_eq!(weaken(&weaken(first)), weaken(first));
    assert_eq!(variant_etag(first, Coding::Identity), first);

    // A well-formed tag built from the fuzz bytes (etagc only) against the arbitrary list.
    let opaque: String = opaque
        .iter()
        .map(|&b| b & 0x7f)
        .filter(|&b| b == 0x21 || (0x23..=0x7e).contains(&b))
        .map(char::from)
        .collect();
    let tag = format!("{}\"{opaque}\"", if weak { "W/" } else { "" });
    let tag_value = HeaderValue::from_str(&tag).expect("etagc is visible ASCII");
    let t = tag.as_bytes();
    assert!(none_match(std::iter::once(&tag_value), &[t]));
    let weakened = weaken(&tag_value);
    assert!(none_match(std::iter::once(&weakened), &[t]));
    let star = HeaderValue::from_static("*");
    assert!(none_match(std::iter::once(&star), &[t]));
    for c in [Coding::Gzip, Coding::Br] {
        let v = variant_etag(&tag_value, c);
        assert!(
            !none_match(std::iter::once(&tag_value), &[v.as_bytes()]),
            "{tag} vs {v:?}"
        );
        assert!(none_match(
            rest.iter().chain([&tag_value]),
            &[t, v.as_bytes()]
        ));
    }

    let range = rest.first().unwrap_or(first);
    let outcome = evaluate_range(range, rest.get(1), len, etag, rest.get(2));
    if let RangeOutcome::Partial { start, end } = outcome {
        assert!(start <= end && end < len, "{start}-{end} of {len}");
    }
    let _ = not_modified_since(first, rest.first());
});
