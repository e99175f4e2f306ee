//! `cache.expose_cache_headers_to_cors`: browser code may read a cross-origin response's fields
//! only when `Access-Control-Expose-Headers` names them (Fetch standard), so a dashboard that
//! calls the API through apicache cannot see `X-Cache`, `Cache-Status` or `Age` unless they are
//! added there.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS,
};
use http::{HeaderMap, HeaderValue};

/// The fields added to `Access-Control-Expose-Headers`.
pub const CACHE_FIELDS: [&str; 3] = ["X-Cache", "Cache-Status", "Age"];

/// On a CORS answer (one with `Access-Control-Allow-Origin`), add [`CACHE_FIELDS`] to
/// `Access-Control-Expose-Headers`: merged into the origin's list (all its lines, order kept, no
/// name twice, case-insensitively). A `*` already exposes every field unless the answer allows
/// credentials (then `*` is just a name), so such a list is left as it is; so is one that is not
/// visible ASCII.
pub fn expose_cache_fields(h: &mut HeaderMap) {
    if !h.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN) {
        return;
    }
    let credentials = h
        .get(ACCESS_CONTROL_ALLOW_CREDENTIALS)
        .is_some_and(|v| v.as_bytes() == b"true");
    let mut listed: Vec<&str> = Vec::new();
    for line in h.get_all(ACCESS_CONTROL_EXPOSE_HEADERS) {
        let Ok(line) = line.to_str() else { return };
        listed.extend(line.split(',').map(str::trim).filter(|n| !n.is_empty()));
    }
    if !credentials && listed.contains(&"*") {
        return;
    }
    let missing = CACHE_FIELDS
        .iter()
        .filter(|f| !listed.iter().any(|n| n.eq_ignore_ascii_case(f)));
    let merged: Vec<&str> = listed.iter().copied().chain(missing.copied()).collect();
    if merged.len() == listed.len() {
        return;
    }
    if let Ok(v) = HeaderValue::from_str(&merged.join(", ")) {
        h.insert(ACCESS_CONTROL_EXPOSE_HEADERS, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expose_headers_merge_table() {
        let all = "X-Cache, Cache-Status, Age";
        type Fields<'a> = &'a [(&'a str, &'a str)];
        // (response fields, Access-Control-Expose-Headers after, or None when absent)
        let rows: &[(Fields<'_>, Option<&str>)] = &[
            // Not a CORS answer: untouched.
            (&[], None),
            (
                &[("access-control-expose-headers", "X-Total")],
                Some("X-Total"),
            ),
            (&[("access-control-allow-origin", "*")], Some(all)),
            (
                &[
                    ("access-control-allow-origin", "https://dash.example"),
                    ("access-control-expose-headers", "X-Total, Link"),
                ],
                Some("X-Total, Link, X-Cache, Cache-Status, Age"),
            ),
            // Several lines are one list; names already there are not repeated.
            (
                &[
                    ("access-control-allow-origin", "*"),
                    ("access-control-expose-headers", "x-cache"),
                    ("access-control-expose-headers", "ETag, age"),
                ],
                Some("x-cache, ETag, age, Cache-Status"),
            ),
            (
                &[
                    ("access-control-allow-origin", "*"),
                    ("access-control-expose-headers", "Age,X-Cache,Cache-Status"),
                ],
                Some("Age,X-Cache,Cache-Status"),
            ),
            // `*` already exposes everything to requests without credentials.
            (
                &[
                    ("access-control-allow-origin", "*"),
                    ("access-control-expose-headers", "*"),
                ],
                Some("*"),
            ),
            // With credentials `*` is a field name like any other.
            (
                &[
                    ("access-control-allow-origin", "https://dash.example"),
                    ("access-control-allow-credentials", "true"),
                    ("access-control-expose-headers", "*"),
                ],
                Some("*, X-Cache, Cache-Status, Age"),
            ),
            (
                &[
                    ("access-control-allow-origin", "*"),
                    ("access-control-expose-headers", " , ,"),
                ],
                Some(all),
            ),
        ];
        for (fields, want) in rows {
            let mut h = HeaderMap::new();
            for (k, v) in *fields {
                h.append(*k, HeaderValue::from_static(v));
            }
            expose_cache_fields(&mut h);
            let got: Vec<&str> = h
                .get_all(ACCESS_CONTROL_EXPOSE_HEADERS)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            match want {
                None => assert!(got.is_empty(), "{fields:?}: {got:?}"),
                Some(w) => assert_eq!(got.join(" | "), *w, "{fields:?}"),
            }
        }
        // A list that is not visible ASCII is not rewritten.
        let mut h = HeaderMap::new();
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        let odd = HeaderValue::from_bytes(b"X-\xe9").unwrap();
        h.insert(ACCESS_CONTROL_EXPOSE_HEADERS, odd.clone());
        expose_cache_fields(&mut h);
        assert_eq!(h[ACCESS_CONTROL_EXPOSE_HEADERS], odd);
    }
}
