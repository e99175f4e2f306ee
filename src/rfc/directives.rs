//! Cache-Control, Surrogate-Control and CDN-Cache-Control directives (RFC 9111 §5.2, RFC 9213).

use http::{header, HeaderMap};

/// Parsed Cache-Control-style directives (request or response).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    /// `max-age` (a malformed value counts as 0: stale).
    pub max_age: Option<u64>,
    /// `s-maxage`.
    pub s_maxage: Option<u64>,
    /// `no-store`.
    pub no_store: bool,
    /// Unqualified `no-cache`.
    pub no_cache: bool,
    /// Fields named by a qualified `no-cache="…"` (lowercase): stored without them (§5.2.2.4).
    pub no_cache_fields: Vec<String>,
    /// Unqualified `private`.
    pub private: bool,
    /// Fields named by a qualified `private="…"` (lowercase): stored without them (§5.2.2.7).
    pub private_fields: Vec<String>,
    /// `must-understand` (§5.2.2.3).
    pub must_understand: bool,
    /// `public`.
    pub public: bool,
    /// `must-revalidate`.
    pub must_revalidate: bool,
    /// `proxy-revalidate`.
    pub proxy_revalidate: bool,
    /// `no-transform`.
    pub no_transform: bool,
    /// `stale-while-revalidate` (RFC 5861).
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error` (RFC 5861).
    pub stale_if_error: Option<u64>,
    /// Request `max-stale`; `Some(u64::MAX)` when given without a value.
    pub max_stale: Option<u64>,
    /// Request `min-fresh`.
    pub min_fresh: Option<u64>,
    /// Request `only-if-cached`.
    pub only_if_cached: bool,
}

impl Directives {
    /// Parse every `name` header line of `headers`.
    pub fn from_headers(headers: &HeaderMap, name: &header::HeaderName) -> Directives {
        let mut d = Directives::default();
        for v in headers.get_all(name) {
            // A line with obs-text (Latin-1 bytes in a quoted value) still carries its ASCII
            // directives: skipping it would lose a `private` or `no-store` next to the odd byte.
            d.parse_into(&String::from_utf8_lossy(v.as_bytes()));
        }
        d
    }

    /// Parse one header value, adding to what is already set (first occurrence wins).
    pub fn parse_into(&mut self, s: &str) {
        for d in split_directives(s) {
            let name = d.name.to_ascii_lowercase();
            // `max-age =5` is not a directive with a value (RFC 9111 §5.2 has no whitespace around
            // `=`): freshness from it is invalid, which §4.2.1 asks to treat as stale.
            let value = if d.malformed { Some("") } else { d.value };
            self.set(&name, value.map(Value::Text));
        }
    }

    /// Set one directive from its name and (unquoted) value.
    fn set(&mut self, name: &str, value: Option<Value<'_>>) {
        let secs = || value.as_ref().map_or(Some(0), Value::delta);
        match name {
            "max-age" => {
                self.max_age.get_or_insert(secs().unwrap_or(0));
            }
            "s-maxage" => {
                self.s_maxage.get_or_insert(secs().unwrap_or(0));
            }
            "no-store" => self.no_store = true,
            // Several qualified lists add up; too many names in all is read as unqualified.
            "no-cache" => {
                let fields = value.as_ref().and_then(Value::fields);
                if !fields.is_some_and(|f| extend_fields(&mut self.no_cache_fields, f)) {
                    self.no_cache = true;
                }
            }
            "private" => {
                let fields = value.as_ref().and_then(Value::fields);
                if !fields.is_some_and(|f| extend_fields(&mut self.private_fields, f)) {
                    self.private = true;
                }
            }
            "public" => self.public = true,
            "must-revalidate" => self.must_revalidate = true,
            "proxy-revalidate" => self.proxy_revalidate = true,
            "must-understand" => self.must_understand = true,
            "no-transform" => self.no_transform = true,
            "only-if-cached" => self.only_if_cached = true,
            "stale-while-revalidate" => {
                if let Some(v) = secs() {
                    self.stale_while_revalidate.get_or_insert(v);
                }
            }
            "stale-if-error" => {
                if let Some(v) = secs() {
                    self.stale_if_error.get_or_insert(v);
                }
            }
            "max-stale" => {
                let v = match &value {
                    None => u64::MAX,
                    Some(v) => v.delta().unwrap_or(0),
                };
                self.max_stale.get_or_insert(v);
            }
            "min-fresh" => {
                self.min_fresh.get_or_insert(secs().unwrap_or(0));
            }
            _ => {}
        }
    }

    /// A targeted field (RFC 9213 §2.1: `CDN-Cache-Control`) parsed as a Structured Field
    /// Dictionary over all its lines; `None` when absent or invalid, so it is ignored whole.
    pub fn from_structured(headers: &HeaderMap, name: &str) -> Option<Directives> {
        let mut joined = Vec::new();
        for v in headers.get_all(name) {
            if !joined.is_empty() {
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(v.as_bytes());
        }
        if joined.is_empty() {
            return None;
        }
        let dict: sfv::Dictionary = sfv::Parser::new(&joined).parse().ok()?;
        let mut d = Directives::default();
        for (key, member) in &dict {
            let value = match member {
                sfv::ListEntry::Item(i) => match &i.bare_item {
                    sfv::BareItem::Boolean(true) => None,
                    // `no-store=?0` says the directive is absent.
                    sfv::BareItem::Boolean(false) => continue,
                    sfv::BareItem::Integer(n) => Some(Value::Integer(i64::from(*n))),
                    // Any other type is not one a cache directive takes (RFC 9213 §2.1: such a
                    // value is not consumed): a lifetime from it is stale, a field list unqualified.
                    _ => Some(Value::Invalid),
                },
                sfv::ListEntry::InnerList(l) => {
                    let names: Option<Vec<&str>> = l
                        .items
                        .iter()
                        .map(|i| i.bare_item.as_string().map(|s| s.as_str()))
                        .collect();
                    Some(names.map_or(Value::Invalid, Value::Strings))
                }
            };
            d.set(key.as_str(), value);
        }
        Some(d)
    }
}

/// A directive's argument, from Cache-Control text or a Structured Field.
enum Value<'a> {
    Text(&'a str),
    Integer(i64),
    Strings(Vec<&'a str>),
    Invalid,
}

impl Value<'_> {
    /// Delta-seconds, or `None` when the argument is not one.
    fn delta(&self) -> Option<u64> {
        match self {
            Value::Text(s) => parse_delta(s),
            Value::Integer(n) => u64::try_from(*n).ok().map(|n| n.min(1 << 31)),
            _ => None,
        }
    }

    /// The field names of a qualified `no-cache` / `private`; `None` for an empty or invalid list
    /// (which then counts as the unqualified directive: the stricter reading).
    fn fields(&self) -> Option<Vec<String>> {
        let names: Vec<String> = match self {
            Value::Text(s) => s
                .split(',')
                .map(|f| f.trim().to_ascii_lowercase())
                .collect(),
            Value::Strings(v) => v.iter().map(|f| f.trim().to_ascii_lowercase()).collect(),
            _ => return None,
        };
        let valid = |f: &String| {
            !f.is_empty()
                && http::HeaderName::from_bytes(f.as_bytes()).is_ok()
                && !REPRESENTATION_FIELDS.contains(&f.as_str())
        };
        let ok =
            !names.is_empty() && names.len() <= MAX_QUALIFIED_FIELDS && names.iter().all(valid);
        ok.then_some(names)
    }
}

/// A qualified list longer than this is read as the unqualified directive, so no named field is
/// ever dropped from the list and shared.
pub const MAX_QUALIFIED_FIELDS: usize = 32;

/// Fields that frame or select the stored representation: a response cannot be stored without
/// them, so a qualified directive naming one is read as unqualified.
const REPRESENTATION_FIELDS: &[&str] = &[
    "content-length",
    "content-encoding",
    "content-type",
    "content-range",
    "transfer-encoding",
    "etag",
    "last-modified",
    "vary",
    "date",
    "cache-control",
    "cdn-cache-control",
    "surrogate-control",
    "expires",
    "age",
];

/// Add a qualified list's names; false once the names in all exceed the bound.
fn extend_fields(into: &mut Vec<String>, fields: Vec<String>) -> bool {
    for f in fields {
        if into.len() > MAX_QUALIFIED_FIELDS {
            break;
        }
        if !into.contains(&f) {
            into.push(f);
        }
    }
    into.len() <= MAX_QUALIFIED_FIELDS
}

/// Delta-seconds; values beyond 2^31 are capped as RFC 9111 §1.2.2 asks.
pub(crate) fn parse_delta(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u64>().unwrap_or(u64::MAX).min(1 << 31))
}

/// One directive of a Cache-Control list.
struct Split<'a> {
    name: &'a str,
    /// The argument, without quotes.
    value: Option<&'a str>,
    /// Whitespace around `=`: not the directive's syntax.
    malformed: bool,
}

/// Split a directive list on commas outside quoted strings; values lose their quotes.
fn split_directives(s: &str) -> Vec<Split<'_>> {
    let mut start = 0;
    let mut in_quote = false;
    let bytes = s.as_bytes();
    let mut items = Vec::new();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => in_quote = !in_quote,
            b',' if !in_quote => {
                items.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&s[start..]);
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let item = item.trim_matches([' ', '\t']);
        if item.is_empty() {
            continue;
        }
        out.push(match item.split_once('=') {
            Some((n, v)) => Split {
                name: n.trim_end_matches([' ', '\t']),
                malformed: n.ends_with([' ', '\t']) || v.starts_with([' ', '\t']),
                value: Some(unquote(v)),
            },
            None => Split {
                name: item,
                value: None,
                malformed: false,
            },
        });
    }
    out
}

/// A quoted-string's content (escapes are not expanded: no directive value needs them).
fn unquote(v: &str) -> &str {
    let v = v.trim_matches([' ', '\t']);
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

/// The Surrogate-Control directives that speak about caching (Edge Architecture 1.0, Fastly).
const SURROGATE_DIRECTIVES: &[&str] = &[
    "max-age",
    "no-store",
    "no-cache",
    "must-revalidate",
    "proxy-revalidate",
    "stale-while-revalidate",
    "stale-if-error",
    "s-maxage",
    "public",
];

/// Surrogate-Control directives addressed to this proxy (untargeted or `;apicache`); `max-age=N+M` keeps N.
pub fn surrogate_control(headers: &HeaderMap) -> Option<Directives> {
    let mut found = false;
    let mut d = Directives::default();
    for v in headers.get_all("surrogate-control") {
        let Ok(s) = v.to_str() else { continue };
        for item in s.split(',') {
            let mut parts = item.splitn(2, ';');
            let directive = parts.next().unwrap_or("").trim();
            if let Some(target) = parts.next() {
                if !target.trim().eq_ignore_ascii_case("apicache") {
                    continue;
                }
            }
            let directive = match directive.find('+') {
                Some(i) => &directive[..i],
                None => directive,
            };
            // Only caching directives make it a field for this proxy: an empty line or ESI's
            // `content="ESI/1.0"` says nothing about storing.
            let name = directive.split('=').next().unwrap_or("").trim();
            if SURROGATE_DIRECTIVES
                .iter()
                .any(|d| name.eq_ignore_ascii_case(d))
            {
                found = true;
                d.parse_into(directive);
            }
        }
    }
    found.then_some(d)
}

impl Directives {
    /// A request's Cache-Control, with `Pragma: no-cache` honoured when there is no Cache-Control (RFC 9111 §5.4).
    pub fn from_request(h: &HeaderMap) -> Directives {
        let mut d = Directives::from_headers(h, &header::CACHE_CONTROL);
        if !h.contains_key(header::CACHE_CONTROL)
            && h.get_all(header::PRAGMA).iter().any(|v| {
                v.to_str()
                    .is_ok_and(|s| s.to_ascii_lowercase().contains("no-cache"))
            })
        {
            d.no_cache = true;
        }
        // A request has no qualified no-cache; `no-cache="x"` still asks for revalidation.
        if !d.no_cache_fields.is_empty() {
            d.no_cache = true;
        }
        d
    }
}

/// Whether the message's Cache-Control forbids transformations (RFC 9111 §5.2.2.6): never re-encoded here.
pub fn no_transform(h: &HeaderMap) -> bool {
    Directives::from_headers(h, &header::CACHE_CONTROL).no_transform
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn parses_directives() {
        let mut d = Directives::default();
        d.parse_into("Max-Age=60, private=\"a, B\", no-cache, s-maxage=x, max-stale");
        assert_eq!(d.max_age, Some(60));
        assert!(!d.private && d.no_cache);
        assert_eq!(d.private_fields, ["a", "b"]);
        assert_eq!(d.s_maxage, Some(0));
        assert_eq!(d.max_stale, Some(u64::MAX));
        d.parse_into("max-age=5");
        assert_eq!(d.max_age, Some(60), "first occurrence wins");
    }

    fn strs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    fn cc(s: &str) -> Directives {
        let mut d = Directives::default();
        d.parse_into(s);
        d
    }

    #[test]
    fn directive_syntax_table() {
        // (Cache-Control, max-age, s-maxage, stale-while-revalidate)
        type Row<'a> = (&'a str, Option<u64>, Option<u64>, Option<u64>);
        let rows: &[Row] = &[
            ("max-age=3600", Some(3600), None, None),
            ("max-age=\"3600\"", Some(3600), None, None),
            ("  max-age=3600  ,", Some(3600), None, None),
            // Whitespace around `=` is not the syntax: invalid freshness is stale, not absent.
            ("max-age =3600", Some(0), None, None),
            ("max-age= 3600", Some(0), None, None),
            ("max-age = 3600", Some(0), None, None),
            ("s-maxage =60, max-age=5", Some(5), Some(0), None),
            ("max-age=-1", Some(0), None, None),
            ("max-age=1.5", Some(0), None, None),
            ("max-age", Some(0), None, None),
            ("max-age=99999999999", Some(1 << 31), None, None),
            // A malformed stale window grants nothing.
            ("max-age=5, stale-while-revalidate =30", Some(5), None, None),
            (
                "max-age=5, stale-while-revalidate=30",
                Some(5),
                None,
                Some(30),
            ),
            ("no-cache=\"a,b\", max-age=7", Some(7), None, None),
        ];
        for (s, max_age, s_maxage, swr) in rows {
            let d = cc(s);
            assert_eq!(
                (d.max_age, d.s_maxage, d.stale_while_revalidate),
                (*max_age, *s_maxage, *swr),
                "{s:?}"
            );
        }
    }

    #[test]
    fn qualified_directives_table() {
        // (Cache-Control, no-cache, no-cache fields, private, private fields)
        type Row<'a> = (&'a str, bool, &'a [&'a str], bool, &'a [&'a str]);
        let rows: &[Row] = &[
            ("no-cache", true, &[], false, &[]),
            (
                "no-cache=\"Set-Cookie\"",
                false,
                &["set-cookie"],
                false,
                &[],
            ),
            ("no-cache=\"a, b\", private", false, &["a", "b"], true, &[]),
            ("private=\"X-User\"", false, &[], false, &["x-user"]),
            ("private=X-User", false, &[], false, &["x-user"]),
            // An empty or invalid field list is read as the unqualified directive.
            ("private=\"\"", false, &[], true, &[]),
            ("no-cache=\"bad field\"", true, &[], false, &[]),
            ("private=\"a\", private", false, &[], true, &["a"]),
            // Fields that frame or select the representation cannot be withheld: unqualified.
            ("no-cache=\"Vary\"", true, &[], false, &[]),
            ("private=\"x-a, Content-Length\"", false, &[], true, &[]),
        ];
        for (s, nc, ncf, p, pf) in rows {
            let d = cc(s);
            assert_eq!(
                (
                    d.no_cache,
                    strs(&d.no_cache_fields),
                    d.private,
                    strs(&d.private_fields)
                ),
                (*nc, ncf.to_vec(), *p, pf.to_vec()),
                "{s:?}"
            );
        }
        // A list too long to keep whole is read as unqualified: no named field is ever shared.
        let names = |n: usize| {
            (0..n)
                .map(|i| format!("f{i}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let d = cc(&format!("private=\"{}\"", names(MAX_QUALIFIED_FIELDS)));
        assert!(!d.private && d.private_fields.len() == MAX_QUALIFIED_FIELDS);
        let d = cc(&format!("private=\"{}\"", names(MAX_QUALIFIED_FIELDS + 1)));
        assert!(d.private);
        let d = cc(&format!(
            "private=\"{}\", private=\"x-last\"",
            names(MAX_QUALIFIED_FIELDS)
        ));
        assert!(d.private, "lists add up");
        // A request's no-cache has no qualified form: any no-cache revalidates.
        let mut h = HeaderMap::new();
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache=\"x\""),
        );
        assert!(Directives::from_request(&h).no_cache);
        // A line with obs-text keeps its ASCII directives.
        let mut h = HeaderMap::new();
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_bytes(b"private, x=\"caf\xe9\"").unwrap(),
        );
        assert!(Directives::from_headers(&h, &header::CACHE_CONTROL).private);
    }

    #[test]
    fn structured_targeted_field_table() {
        // (CDN-Cache-Control lines, valid, max-age, no-store, private, private fields)
        type Row<'a> = (&'a [&'a str], bool, Option<u64>, bool, bool, &'a [&'a str]);
        let rows: &[Row] = &[
            (&["max-age=60"], true, Some(60), false, false, &[]),
            (&["max-age=60, no-store"], true, Some(60), true, false, &[]),
            (&["max-age=60", "private"], true, Some(60), false, true, &[]),
            (
                &["no-store=?0, max-age=5"],
                true,
                Some(5),
                false,
                false,
                &[],
            ),
            (
                &["private=(\"set-cookie\")"],
                true,
                None,
                false,
                false,
                &["set-cookie"],
            ),
            (&["max-age=-5"], true, Some(0), false, false, &[]),
            (&["max-age=1.5"], true, Some(0), false, false, &[]),
            // Values of the wrong type are not consumed: no lifetime, an unqualified private.
            (&["max-age=\"60\""], true, Some(0), false, false, &[]),
            (&["private=(\"x-a\" x-b)"], true, None, false, true, &[]),
            (&["private=\"x-a\""], true, None, false, true, &[]),
            // Not Structured Field Dictionaries: ignored whole.
            (&["max-age=60,"], false, None, false, false, &[]),
            (&["Max-Age=60"], false, None, false, false, &[]),
            (&["max-age = 60"], false, None, false, false, &[]),
            (&["max-age=60", ""], false, None, false, false, &[]),
            (&[], false, None, false, false, &[]),
        ];
        for (lines, valid, max_age, no_store, private, pf) in rows {
            let mut h = HeaderMap::new();
            for l in *lines {
                h.append("cdn-cache-control", HeaderValue::from_str(l).unwrap());
            }
            let d = Directives::from_structured(&h, "cdn-cache-control");
            assert_eq!(d.is_some(), *valid, "{lines:?}");
            let d = d.unwrap_or_default();
            assert_eq!(
                (d.max_age, d.no_store, d.private, strs(&d.private_fields)),
                (*max_age, *no_store, *private, pf.to_vec()),
                "{lines:?}"
            );
        }
    }

    #[test]
    fn pragma_no_cache() {
        let mut h = HeaderMap::new();
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        assert!(Directives::from_request(&h).no_cache);
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=5"));
        assert!(!Directives::from_request(&h).no_cache);
    }

    #[test]
    fn no_transform_is_read_from_cache_control() {
        let mut h = HeaderMap::new();
        assert!(!no_transform(&h));
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=5, No-Transform"),
        );
        assert!(no_transform(&h));
    }
}
