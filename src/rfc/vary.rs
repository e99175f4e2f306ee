//! Vary (RFC 9111 §4.1): which request fields select a stored variant, matched in one place,
//! with list-valued fields normalized first ([`normalize_list`]).

use http::{header, HeaderMap, HeaderName, HeaderValue};

/// The request fields a stored response varies on, and the values they had when it was stored.
///
/// Accept-Encoding is not among them: codings are negotiated here from one stored object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vary {
    fields: Vec<HeaderName>,
    /// Per field: compared as a weighted list ([`ListFields`]), fixed when stored.
    lists: Vec<bool>,
    values: Vec<Option<HeaderValue>>,
}

/// The request fields whose values are weighted lists of case-insensitive members, compared
/// after [`normalize_list`]: Accept, Accept-Language, Accept-Encoding and `cache.vary_normalize`.
#[derive(Debug, Clone)]
pub struct ListFields(Vec<HeaderName>);

impl Default for ListFields {
    fn default() -> Self {
        ListFields(vec![
            header::ACCEPT,
            header::ACCEPT_LANGUAGE,
            header::ACCEPT_ENCODING,
        ])
    }
}

impl ListFields {
    /// The standard fields plus `extra`.
    pub fn with(extra: impl IntoIterator<Item = HeaderName>) -> Self {
        let mut l = ListFields::default();
        for n in extra {
            if !l.0.contains(&n) {
                l.0.push(n);
            }
        }
        l
    }

    fn contains(&self, name: &HeaderName) -> bool {
        self.0.contains(name)
    }
}

impl Vary {
    /// The variant selected by `request` for a response with `response`'s Vary header.
    pub fn of(response: &HeaderMap, request: &HeaderMap, lists: &ListFields) -> Vary {
        let fields = vary_fields(response);
        let lists: Vec<bool> = fields.iter().map(|f| lists.contains(f)).collect();
        let values = vary_values(&fields, &lists, request);
        Vary {
            fields,
            lists,
            values,
        }
    }

    /// Whether the response varies on nothing but codings.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Whether `request` selects this variant.
    pub fn matches(&self, request: &HeaderMap) -> bool {
        self.fields.is_empty() || vary_values(&self.fields, &self.lists, request) == self.values
    }

    /// Whether a 304 naming this variant's ETag may make it another request's variant (RFC 9111
    /// §4.3.1): not when it varies on who is asking, where one user's body must never be
    /// handed to another on the strength of an ETag the origin may reuse across users.
    pub fn shareable_by_etag(&self) -> bool {
        !self.fields.iter().any(|f| {
            matches!(
                f.as_str(),
                "cookie" | "authorization" | "proxy-authorization" | "x-api-key" | "x-auth-token"
            )
        })
    }

    /// Whether two variants vary on the same fields (they belong to one URL's variant set).
    pub fn same_fields(&self, other: &Vary) -> bool {
        self.fields == other.fields
    }

    /// The collapsing key for `request`'s variant of `key`: concurrent misses for different
    /// variants of one URL fill in parallel, one origin request per variant. Hashed, so large
    /// values do not grow the in-flight map.
    pub fn flight_key(&self, key: &str, request: &HeaderMap) -> String {
        use sha2::{Digest, Sha256};
        if self.fields.is_empty() {
            return key.to_string();
        }
        let mut h = Sha256::new();
        let values = vary_values(&self.fields, &self.lists, request);
        for (name, value) in self.fields.iter().zip(values) {
            h.update(name.as_str());
            h.update(b"\0");
            match value {
                Some(v) => h.update(v.as_bytes()),
                None => h.update(b"\x01absent"),
            }
            h.update(b"\0");
        }
        format!("{key} #vary={}", crate::normalize::hex(&h.finalize()[..8]))
    }

    /// Bytes held, for the cache's weigher.
    pub fn weight(&self) -> usize {
        self.fields
            .iter()
            .map(|f| f.as_str().len() + 17)
            .sum::<usize>()
            + self
                .values
                .iter()
                .map(|v| v.as_ref().map_or(0, |v| v.len()) + 16)
                .sum::<usize>()
    }
}

/// The fields a response's Vary names, sorted, without Accept-Encoding (handled here).
fn vary_fields(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut out: Vec<HeaderName> = Vec::new();
    for v in headers.get_all(header::VARY) {
        let Ok(s) = v.to_str() else { continue };
        for f in s.split(',') {
            let f = f.trim();
            if f.is_empty() || f.eq_ignore_ascii_case("accept-encoding") {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(f.as_bytes()) {
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
    }
    out.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    out
}

/// A request's values for the fields a response varies on, normalized for comparison: field
/// lines combined, whitespace around commas dropped, and list fields through [`normalize_list`].
fn vary_values(names: &[HeaderName], lists: &[bool], req: &HeaderMap) -> Vec<Option<HeaderValue>> {
    names
        .iter()
        .zip(lists)
        .map(|(n, list)| {
            let mut it = req.get_all(n).iter();
            let first = it.next()?;
            let mut joined = first.as_bytes().to_vec();
            for v in it {
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(v.as_bytes());
            }
            if let Some(v) = list.then(|| normalize_list(&joined)).flatten() {
                return HeaderValue::from_bytes(&v).ok();
            }
            // Whitespace differences are not semantic (RFC 9111 §4.1).
            let s: Vec<u8> = joined
                .split(|b| *b == b',')
                .map(|p| p.trim_ascii())
                .collect::<Vec<_>>()
                .join(&b","[..]);
            HeaderValue::from_bytes(&s).ok()
        })
        .collect()
}

/// Members beyond this are not normalized (the value is compared as written, whitespace aside).
const MAX_LIST_MEMBERS: usize = 64;

/// A weighted list (`member *( OWS ";" OWS param )`, `q` a weight) in a form that two values
/// with the same meaning share (RFC 9111 §4.1): the member itself (a language range, a media
/// range, a coding) and parameter names lowercased (case-insensitive, RFC 9110 §5.6.6, RFC 4647
/// §2); parameter values as sent (their case may matter); whitespace and empty members dropped;
/// `q` written canonically (`q=1` and a missing `q` are the same, `0.50` is `0.5`) and last.
/// Members are reordered only by weight, highest first: members of equal weight keep their
/// order, since recipients may read it as a preference (RFC 9110 §12.5.4). `None` when the value
/// does not parse (an invalid `q`, an open quote) or has too many members: then it is compared
/// as written.
pub fn normalize_list(value: &[u8]) -> Option<Vec<u8>> {
    let mut members: Vec<(u16, Vec<u8>)> = Vec::new();
    for raw in split_outside_quotes(value, b',')? {
        let raw = raw.trim_ascii();
        if raw.is_empty() {
            continue;
        }
        if members.len() == MAX_LIST_MEMBERS {
            return None;
        }
        let mut parts = split_outside_quotes(raw, b';')?.into_iter();
        let head = parts.next()?.trim_ascii();
        // A quoted member's case may matter: compared as written.
        if head.is_empty() || head.contains(&b'"') {
            return None;
        }
        let mut out = head.to_ascii_lowercase();
        let mut q = None;
        for p in parts {
            let p = p.trim_ascii();
            let (name, val) = match p.iter().position(|b| *b == b'=') {
                Some(i) => (&p[..i], Some(&p[i + 1..])),
                None => (p, None),
            };
            let value_ok = val.is_none_or(|v| is_token(v) || is_quoted(v));
            if !is_token(name) || !value_ok {
                return None;
            }
            // After `q` come accept-ext parameters, not media-type ones: moving `q` would change
            // what they belong to, so such a member is compared as written.
            if q.is_some() {
                return None;
            }
            if name.eq_ignore_ascii_case(b"q") {
                q = Some(qvalue(val?)?);
                continue;
            }
            out.push(b';');
            out.extend(name.to_ascii_lowercase());
            if let Some(v) = val {
                out.push(b'=');
                out.extend_from_slice(v);
            }
        }
        let q = q.unwrap_or(1000);
        if q != 1000 {
            out.extend_from_slice(format!(";q={}", qvalue_text(q)).as_bytes());
        }
        members.push((q, out));
    }
    // Stable: equal weights keep their order.
    members.sort_by_key(|m| std::cmp::Reverse(m.0));
    Some(
        members
            .into_iter()
            .map(|(_, m)| m)
            .collect::<Vec<_>>()
            .join(&b","[..]),
    )
}

/// RFC 9110 §5.6.2 token.
fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
}

/// A whole quoted-string (its inside was checked by [`split_outside_quotes`]).
fn is_quoted(s: &[u8]) -> bool {
    s.len() >= 2 && s[0] == b'"' && s[s.len() - 1] == b'"'
}

/// `s` split on `sep` outside quoted strings; `None` when a quote is left open.
fn split_outside_quotes(s: &[u8], sep: u8) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, &b) in s.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == sep && !quoted {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    if quoted {
        return None;
    }
    out.push(&s[start..]);
    Some(out)
}

/// An RFC 9110 §12.4.2 qvalue in thousandths: `0`, `0.5`, `0.125`, `1`, `1.000`.
fn qvalue(v: &[u8]) -> Option<u16> {
    let (int, frac) = match v.iter().position(|b| *b == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// A qvalue in thousandths written without trailing zeros: `0`, `0.5`, `0.125`.
fn qvalue_text(q: u16) -> String {
    if q == 0 {
        return "0".into();
    }
    let s = format!("0.{q:03}");
    s.trim_end_matches('0').to_string()
}

/// Add a field name to Vary unless already there (or `*`).
pub fn merge_vary(h: &mut HeaderMap, field: &str) {
    let present = h.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|f| f.trim().eq_ignore_ascii_case(field) || f.trim() == "*")
        })
    });
    if !present {
        if let Ok(v) = HeaderValue::from_str(field) {
            h.append(header::VARY, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn vary_fields_skip_accept_encoding() {
        let h = headers(&[
            ("vary", "Accept-Encoding, Accept-Language"),
            ("vary", "x-tenant"),
        ]);
        let names = vary_fields(&h);
        assert_eq!(names.len(), 2);
        let req = headers(&[("accept-language", "en,  fr")]);
        let lists = [false, false];
        assert_eq!(
            vary_values(&names, &lists, &req)[0].as_ref().unwrap(),
            "en,fr"
        );
        assert_eq!(vary_values(&names, &lists, &req)[1], None);
    }

    #[test]
    fn variant_matching_table() {
        let resp = headers(&[("vary", "Accept-Language, Accept-Encoding")]);
        let lists = ListFields::default();
        let stored = Vary::of(&resp, &headers(&[("accept-language", "en, fr")]), &lists);
        // (request headers, selects the stored variant)
        let rows: &[(&[(&str, &str)], bool)] = &[
            (&[("accept-language", "en, fr")], true),
            (&[("accept-language", "en,fr")], true),
            (
                &[("Accept-Language", "en"), ("accept-language", "fr")],
                true,
            ),
            (&[("accept-language", "fr, en")], false),
            (&[], false),
            (
                &[("accept-language", "en, fr"), ("accept-encoding", "br")],
                true,
            ),
        ];
        for (req, want) in rows {
            assert_eq!(stored.matches(&headers(req)), *want, "{req:?}");
        }
        let plain = Vary::of(
            &headers(&[("vary", "accept-encoding")]),
            &HeaderMap::new(),
            &lists,
        );
        assert!(plain.is_empty() && plain.matches(&headers(&[("x", "y")])));
        assert!(!plain.same_fields(&stored));
        // A field absent when stored must be absent to match.
        let absent = Vary::of(&headers(&[("vary", "x-tenant")]), &HeaderMap::new(), &lists);
        assert!(absent.matches(&HeaderMap::new()));
        assert!(!absent.matches(&headers(&[("x-tenant", "a")])));
    }

    #[test]
    fn list_normalization_table() {
        // (value, normalized; None: compared as written)
        let rows: &[(&str, Option<&str>)] = &[
            ("en-US, fr", Some("en-us,fr")),
            ("EN-us ,fr", Some("en-us,fr")),
            ("en-US,,  fr ,", Some("en-us,fr")),
            // Equal weights keep their order: a recipient may prefer the first.
            ("fr,en-us", Some("fr,en-us")),
            // Weights order members; q=1 and no q are the same.
            ("fr;q=0.5, en-US", Some("en-us,fr;q=0.5")),
            ("en-US;q=1.000, fr ; Q=0.50", Some("en-us,fr;q=0.5")),
            ("da, en-gb;q=0.8, en;q=0.7", Some("da,en-gb;q=0.8,en;q=0.7")),
            ("en;q=0.7, en-gb;q=0.8, da", Some("da,en-gb;q=0.8,en;q=0.7")),
            ("*;q=0, en", Some("en,*;q=0")),
            ("x;q=0.125", Some("x;q=0.125")),
            // Media ranges: type and parameter names fold, parameter values keep their case.
            (
                "Application/JSON; Profile=\"https://x/A,B\", text/*;q=0.1",
                Some("application/json;profile=\"https://x/A,B\",text/*;q=0.1"),
            ),
            ("text/html;level=1;q=0.4", Some("text/html;level=1;q=0.4")),
            ("text/html;q=0.4;level=1", None),
            // Unparseable: compared as written.
            ("en;q=2", None),
            ("en;q=0.1234", None),
            ("en;q=abc", None),
            ("en;q", None),
            ("en;q=0.5;q=0.4", None),
            ("en;q = 0.5", None),
            ("text/html;level = 1", None),
            ("text/html;a b=1", None),
            ("text/html;a=\"x\"y", None),
            ("a/b;p=\"open", None),
            (";q=0.5", None),
            ("\"Quoted\", a", None),
            ("", Some("")),
        ];
        for (value, want) in rows {
            let got = normalize_list(value.as_bytes()).map(|v| String::from_utf8(v).unwrap());
            assert_eq!(got.as_deref(), *want, "{value:?}");
        }
        let many = vec!["a"; MAX_LIST_MEMBERS + 1].join(",");
        assert_eq!(normalize_list(many.as_bytes()), None, "too many members");
        let enough = vec!["a"; MAX_LIST_MEMBERS].join(",");
        assert!(normalize_list(enough.as_bytes()).is_some());
    }

    #[test]
    fn normalized_variant_matching_table() {
        let resp = headers(&[("vary", "Accept-Language, Accept, X-Flags, X-Tenant")]);
        let lists = ListFields::with([HeaderName::from_static("x-flags")]);
        let stored_req = [
            ("accept-language", "en-US, fr;q=0.5"),
            ("accept", "application/json"),
            ("x-flags", "A, b"),
            ("x-tenant", "Acme"),
        ];
        let stored = Vary::of(&resp, &headers(&stored_req), &lists);
        // (changed field, its value, selects the stored variant)
        let rows: &[(&str, &str, bool)] = &[
            ("accept-language", "en-US, fr;q=0.5", true),
            ("accept-language", "fr;q=0.50 , EN-us", true),
            ("accept-language", "en-us,fr;q=0.5,", true),
            ("accept-language", "fr;q=0.5, en-US;q=0.9", false),
            ("accept-language", "fr, en-US", false),
            ("accept", "Application/Json", true),
            ("accept", "application/json;q=1", true),
            ("accept", "application/json;v=2", false),
            ("x-flags", "a,B", true),
            ("x-flags", "b, a", false),
            // Not a list field: compared as written, whitespace aside.
            ("x-tenant", "acme", false),
            ("x-tenant", "Acme ", true),
        ];
        for (field, value, want) in rows {
            let mut req = headers(&stored_req);
            req.insert(
                HeaderName::from_bytes(field.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
            assert_eq!(stored.matches(&req), *want, "{field}: {value}");
            let same_flight =
                stored.flight_key("k", &req) == stored.flight_key("k", &headers(&stored_req));
            assert_eq!(same_flight, *want, "flight key of {field}: {value}");
        }
        // Without normalization configured, X-Flags is compared as written.
        let plain = Vary::of(&resp, &headers(&stored_req), &ListFields::default());
        let mut req = headers(&stored_req);
        req.insert("x-flags", HeaderValue::from_static("a,B"));
        assert!(!plain.matches(&req));
    }

    #[test]
    fn vary_merge() {
        let mut h = HeaderMap::new();
        merge_vary(&mut h, "Accept-Encoding");
        merge_vary(&mut h, "Accept-Encoding");
        assert_eq!(h.get_all(header::VARY).iter().count(), 1);
        let mut h = HeaderMap::new();
        h.insert(
            header::VARY,
            HeaderValue::from_static("accept-encoding, x-a"),
        );
        merge_vary(&mut h, "Accept-Encoding");
        assert_eq!(h.get_all(header::VARY).iter().count(), 1);
    }
}
