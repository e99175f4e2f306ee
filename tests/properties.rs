//! Property tests for the pure parsing code: normalization, moved API keys, ETag lists,
//! Accept-Encoding negotiation, and the origin URLs rewritten in response fields. The libFuzzer
//! targets in `fuzz/` cover the same code (but the rewriting) with unstructured input; these run
//! in every `cargo test` and stay fast (a few hundred cases each).

use apicache::config::NormalizeConfig;
use apicache::normalize::{cache_key, credential_hash, NormalizeError, Normalizer};
use apicache::rfc::coding::{accepts, negotiate, Coding, Preference};
use apicache::rfc::conditional::{evaluate_range, none_match, weaken, RangeOutcome};
use http::{header, HeaderMap, HeaderValue};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(512)
}

// ---- request targets ----------------------------------------------------------------------

/// One path segment. Nothing here can produce a `K`, which only API key values contain.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-j0-9]{1,4}",
        1 => Just(".".to_string()),
        1 => Just("..".to_string()),
        1 => Just(String::new()),
        2 => prop::sample::select(vec![
            "%41", "%61", "%2e", "%2E", "%2e%2E", "%7e", "%7E", "%2f", "%2F", "%20", "%5f", "%c3%a9",
            "%3F", "%26", "%25", "%2541", "\u{e9}", "a%2eb",
        ])
        .prop_map(String::from),
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 0..6).prop_map(|segs| {
        segs.iter().fold(String::new(), |mut p, s| {
            p.push('/');
            p.push_str(s);
            p
        })
    })
}

/// A query parameter: ordinary, one the default config drops or rewrites, or an API key.
#[derive(Debug, Clone)]
enum Param {
    Plain(String, Option<String>),
    Key(&'static str, String),
}

fn param() -> impl Strategy<Value = Param> {
    let name = prop_oneof![
        4 => "[a-d]{1,2}",
        1 => Just("page".to_string()),
        1 => "utm_[a-c]{1,2}",
        1 => Just("fields".to_string()),
        1 => Just("%61".to_string()),
        1 => Just("pa%67e".to_string()),
        1 => Just(String::new()),
    ];
    let value = prop::option::weighted(
        0.85,
        prop_oneof![
            3 => "[a-j0-9]{0,3}",
            2 => Just("1".to_string()),
            1 => Just("%31".to_string()),
            1 => Just("b,a,,b".to_string()),
            1 => Just("x%2Cy".to_string()),
            1 => Just("%7e%2f=%3d".to_string()),
            1 => Just("100%25".to_string()),
        ],
    );
    let key_name =
        prop::sample::select(vec!["apiKey", "api_key", "APIKEY", "Api_Key", "api%5Fkey"]);
    prop_oneof![
        5 => (name, value).prop_map(|(n, v)| Param::Plain(n, v)),
        1 => (key_name, "K[L-Z]{7,12}").prop_map(|(n, s)| Param::Key(n, s)),
    ]
}

fn render(path: &str, params: &[Param], keep_keys: bool) -> String {
    let mut t = path.to_string();
    let mut first = true;
    for p in params {
        let piece = match p {
            Param::Plain(n, None) => n.clone(),
            Param::Plain(n, Some(v)) => format!("{n}={v}"),
            Param::Key(n, s) if keep_keys => format!("{n}={s}"),
            Param::Key(..) => continue,
        };
        t.push(if first { '?' } else { '&' });
        t.push_str(&piece);
        first = false;
    }
    t
}

fn normalizers() -> [(NormalizeConfig, Normalizer); 3] {
    let with_lists = NormalizeConfig {
        list_params: vec!["fields".into()],
        ..NormalizeConfig::default()
    };
    let with_pages = NormalizeConfig {
        page_param: "page".into(),
        list_params: vec!["fields".into()],
        ..NormalizeConfig::default()
    };
    [NormalizeConfig::default(), with_lists, with_pages].map(|c| {
        let n = Normalizer::new(&c);
        (c, n)
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn normalization_is_idempotent(path in path(), params in prop::collection::vec(param(), 0..8)) {
        let target = render(&path, &params, true);
        let keys = params.iter().filter(|p| matches!(p, Param::Key(..))).count();
        for (_, n) in normalizers() {
            let once = match n.normalize(&target) {
                // Two API keys: refused, never keyed by one and forwarded with the other.
                Err(NormalizeError::DuplicateCredential) if keys >= 2 => continue,
                r => r.expect("generated targets are well-formed"),
            };
            let twice = n.normalize(&once.path_and_query).expect("normalized output is well-formed");
            prop_assert_eq!(&twice.path_and_query, &once.path_and_query, "target {}", target);
            prop_assert_eq!(twice.path(), once.path());
            prop_assert!(twice.credential.is_none());
            prop_assert!(once.path_and_query.starts_with('/'));
        }
    }

    /// With page dedupe on, a target without the page parameter and the same target with
    /// `page=1` anywhere (any spelling) are one canonical form, which names the page.
    #[test]
    fn page_spellings_share_one_canonical_form(
        path in path(),
        params in prop::collection::vec(param(), 0..8),
        spelling in prop::sample::select(vec!["page=1", "pa%67e=1", "page=%31"]),
        at in any::<prop::sample::Index>(),
    ) {
        let params: Vec<Param> = params
            .into_iter()
            .filter(|p| !matches!(p, Param::Plain(n, _) if n == "page" || n == "pa%67e"))
            .collect();
        let keys = params.iter().filter(|p| matches!(p, Param::Key(..))).count();
        prop_assume!(keys < 2);
        let without = render(&path, &params, true);
        let mut with_page = params.clone();
        with_page.insert(at.index(params.len() + 1), Param::Plain(spelling.to_string(), None));
        let with_page = render(&path, &with_page, true);
        let (_, n) = &normalizers()[2];
        let a = n.normalize(&without).expect("well-formed");
        let b = n.normalize(&with_page).expect("well-formed");
        prop_assert_eq!(&a.path_and_query, &b.path_and_query, "{} vs {}", without, with_page);
        let query = a.path_and_query.split_once('?').map_or("", |(_, q)| q);
        prop_assert_eq!(query.split('&').filter(|p| *p == "page=1").count(), 1, "{}", a.path_and_query);
    }

    #[test]
    fn moved_api_key_never_reaches_key_or_origin(
        path in path(),
        params in prop::collection::vec(param(), 0..8),
        secret in "K[L-Z]{7,12}",
        at in any::<prop::sample::Index>(),
    ) {
        // At least one key, somewhere among the other parameters.
        let mut params = params;
        let at = at.index(params.len() + 1);
        params.insert(at, Param::Key("apiKey", secret));
        let first_secret = params.iter().find_map(|p| match p {
            Param::Key(_, s) => Some(s.clone()),
            Param::Plain(..) => None,
        }).expect("one key was inserted");
        let target = render(&path, &params, true);
        let keyless = render(&path, &params, false);
        let keys = params.iter().filter(|p| matches!(p, Param::Key(..))).count();
        for (cfg, n) in normalizers() {
            let with = match n.normalize(&target) {
                Err(e) if keys >= 2 => {
                    prop_assert_eq!(e, NormalizeError::DuplicateCredential);
                    continue;
                }
                r => r.expect("well-formed"),
            };
            let without = n.normalize(&keyless).expect("well-formed");
            let cred = with.credential.as_ref().expect("a moved key is the credential");
            let want = format!("{} {first_secret}", cfg.auth_scheme);
            prop_assert_eq!(cred.as_bytes(), want.as_bytes());
            prop_assert_eq!(&with.path_and_query, &without.path_and_query, "target {}", target);
            let key = cache_key("http://api.example", &with.path_and_query, Some(cred));
            let want = format!("GET http://api.example{} #cred={}", with.path_and_query, credential_hash(cred));
            prop_assert_eq!(&key, &want);
            for p in &params {
                if let Param::Key(_, s) = p {
                    prop_assert!(!with.path_and_query.contains(s.as_str()), "{} in {}", s, with.path_and_query);
                    prop_assert!(!key.contains(s.as_str()), "{} in {}", s, key);
                }
            }
        }
    }
}

// ---- ETag lists ---------------------------------------------------------------------------

/// Bytes a header value may hold, biased towards the characters ETag lists are made of.
fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => r#"[W/"*, \ta-c!#~-]{0,24}"#,
        1 => "[ -~\t]{0,24}",
        1 => "[ -~\u{80}-\u{ff}]{0,12}",
    ]
}

fn hv(s: &str) -> HeaderValue {
    // Header values are bytes; chars U+0080..=U+00FF stand for one obs-text byte each.
    let bytes: Vec<u8> = s.chars().map(|c| c as u32 as u8).collect();
    HeaderValue::from_bytes(&bytes).expect("generated text is header-safe")
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn etag_lists_never_panic_and_match_their_own_tags(
        lines in prop::collection::vec(header_text(), 0..4),
        current in header_text(),
        opaque in "[!#-~]{0,10}",
        weak in any::<bool>(),
        at in any::<prop::sample::Index>(),
        len in any::<u64>(),
    ) {
        let mut values: Vec<HeaderValue> = lines.iter().map(|l| hv(l)).collect();
        // The current ETag as the bytes it stands for (obs-text included).
        let current = hv(&current);
        let current = current.as_bytes();
        let matched = none_match(values.iter(), &[current]);
        prop_assert!(!none_match(values.iter(), &[]), "nothing to match, nothing matches");

        // A well-formed tag added to the list (as its own line) always matches, weakly too.
        let tag = format!("{}\"{opaque}\"", if weak { "W/" } else { "" });
        let at = at.index(values.len() + 1);
        values.insert(at, hv(&tag));
        prop_assert!(none_match(values.iter(), &[tag.as_bytes()]));
        prop_assert!(none_match(values.iter(), &[weaken(&hv(&tag)).as_bytes()]));
        prop_assert!(none_match(values.iter(), &[current, tag.as_bytes()]));
        if matched {
            prop_assert!(none_match(values.iter(), &[current]), "adding a line never unmatches");
        }

        // The same text as Range / If-Range: an answer is always inside the representation.
        let range = hv(lines.first().map_or("bytes=0-", |s| s.as_str()));
        if let RangeOutcome::Partial { start, end } =
            evaluate_range(&range, values.get(1), len, Some(tag.as_bytes()), None)
        {
            prop_assert!(start <= end && end < len, "{}-{} of {}", start, end, len);
        }
    }
}

// ---- Accept-Encoding ----------------------------------------------------------------------

/// How an entry spells its weight; `Some(q)` is the thousandths it means, `None` a bad qvalue.
fn weight() -> impl Strategy<Value = (String, Option<u16>)> {
    prop_oneof![
        3 => Just((String::new(), Some(1000))),
        3 => (0u16..=1000).prop_map(|t| {
            let text = if t == 1000 { "1".to_string() } else { format!("0.{t:03}") };
            (format!(";q={text}"), Some(t))
        }),
        1 => Just((";q=0".to_string(), Some(0))),
        1 => Just((" ; Q=1.000".to_string(), Some(1000))),
        1 => Just((";q=0.5".to_string(), Some(500))),
        1 => Just((";level=1;q=0.25".to_string(), Some(250))),
        1 => prop::sample::select(vec![";q=2", ";q=1.5", ";q=abc", ";q=", ";q=0.1234", ";q=.5"])
            .prop_map(|s| (s.to_string(), None)),
    ]
}

fn entry() -> impl Strategy<Value = (&'static str, String, Option<u16>)> {
    let token = prop::sample::select(vec![
        "gzip", "GZIP", "x-gzip", "br", "Br", "identity", "*", "deflate", "zstd", "ZStd",
        "compress", "zstdx",
    ]);
    (token, weight()).prop_map(|(t, (w, q))| (t, w, q))
}

fn names(token: &str) -> Option<Coding> {
    match token.to_ascii_lowercase().as_str() {
        "gzip" | "x-gzip" => Some(Coding::Gzip),
        "br" => Some(Coding::Br),
        "zstd" => Some(Coding::Zstd),
        "identity" => Some(Coding::Identity),
        _ => None,
    }
}

/// RFC 9110 §12.5.3 from the generated structure: the best explicit weight, else `*`'s, else
/// identity is implicitly acceptable (below any explicit weight) and the rest are not.
fn expected_q(entries: &[(&str, String, Option<u16>)], c: Coding) -> u16 {
    let best = |pick: &dyn Fn(&str) -> bool| {
        entries
            .iter()
            .filter(|(t, ..)| pick(t))
            .map(|(_, _, q)| q.unwrap_or(0))
            .max()
    };
    match (best(&|t| names(t) == Some(c)), best(&|t| t == "*")) {
        (Some(q), _) | (None, Some(q)) => q,
        (None, None) if c == Coding::Identity => 1,
        (None, None) => 0,
    }
}

/// Tie rank under a configured order: listed codings first, then the rest in the default order
/// (br, zstd, gzip), identity last.
fn rank(order: &[Coding], c: Coding) -> usize {
    let mut full: Vec<Coding> = Vec::new();
    for x in order
        .iter()
        .chain(&[Coding::Br, Coding::Zstd, Coding::Gzip])
    {
        if *x != Coding::Identity && !full.contains(x) {
            full.push(*x);
        }
    }
    full.iter().position(|x| *x == c).map_or(0, |i| 3 - i)
}

fn order() -> impl Strategy<Value = Vec<Coding>> {
    prop::collection::vec(
        prop::sample::select(vec![Coding::Gzip, Coding::Br, Coding::Zstd]),
        0..4,
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn negotiate_picks_an_acceptable_coding(
        entries in prop::collection::vec(entry(), 0..6),
        lines in 1usize..4,
        gzip in any::<bool>(),
        br in any::<bool>(),
        zstd in any::<bool>(),
        prefer in order(),
    ) {
        let available: Vec<Coding> = [(gzip, Coding::Gzip), (br, Coding::Br), (zstd, Coding::Zstd)]
            .into_iter()
            .filter_map(|(on, c)| on.then_some(c))
            .collect();
        // Entries dealt round-robin over `lines` header lines: one list however it is split.
        let mut text = vec![String::new(); lines];
        for (i, (t, w, _)) in entries.iter().enumerate() {
            let line = &mut text[i % lines];
            if !line.is_empty() {
                line.push_str(", ");
            }
            line.push_str(t);
            line.push_str(w);
        }
        let values: Vec<HeaderValue> = text.iter().map(|l| hv(l)).collect();
        let chosen = negotiate(values.iter(), &available, &Preference::new(&prefer));

        let q = |c: Coding| expected_q(&entries, c);
        let want = available
            .iter()
            .copied()
            .chain([Coding::Identity])
            .filter(|&c| q(c) > 0)
            .max_by_key(|&c| (q(c), rank(&prefer, c)))
            .unwrap_or(Coding::Identity);
        prop_assert_eq!(chosen, want, "Accept-Encoding {:?} with {:?}", text, available);
        prop_assert!(chosen == Coding::Identity || (available.contains(&chosen) && q(chosen) > 0));

        let mut req = HeaderMap::new();
        for v in &values {
            req.append(header::ACCEPT_ENCODING, v.clone());
        }
        for c in [Coding::Gzip, Coding::Br, Coding::Zstd] {
            // `accepts` is "picked over identity": a client that prefers identity says no.
            let want = q(c) > 0 && q(c) >= q(Coding::Identity);
            prop_assert_eq!(accepts(&req, c), want, "{:?} accepts {:?}", text, c);
        }
    }
}

// ---- origin URLs in response fields ------------------------------------------------------

/// Pieces of URL-bearing field values: the origin's own URLs (under its base path or not),
/// other hosts, relative references and the delimiters the parsers split on.
fn url_piece() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "http://origin:3000/base",
        "HTTP://Origin:3000/base/x?y#z",
        "//origin:3000/base/",
        "http://origin:3000/basement",
        "http://origin:3000",
        "http://origin/base",
        "https://origin:3000/base/a",
        "http://other.example/base",
        "/base/x",
        "?page=2",
        "<",
        ">",
        "\"",
        "'",
        "\\",
        ",",
        ";",
        " ",
        "=",
        "url",
        "rel=next",
        "5",
        "[",
        "]",
        ":",
        "//",
        "@",
    ])
    .prop_map(String::from)
}

fn field_value() -> impl Strategy<Value = String> {
    prop::collection::vec(url_piece(), 0..12).prop_map(|p| p.concat())
}

fn origin_addr() -> apicache::rewrite::OriginAddr {
    let authority = "origin:3000".parse().unwrap();
    apicache::rewrite::OriginAddr::new("http", &authority, "/base")
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn rewriting_is_bounded_idempotent_and_never_panics(
        values in prop::collection::vec((0usize..4, field_value()), 0..8),
        host in prop::sample::select(vec!["api.example", "", "h.example:8443"]),
    ) {
        use apicache::rewrite::Public;
        let names = ["location", "content-location", "refresh", "link"];
        let mut h = HeaderMap::new();
        for (n, v) in &values {
            h.append(names[*n], hv(v));
        }
        let public = Public { scheme: "https".into(), host: host.into() };
        let o = origin_addr();
        let mut once = h.clone();
        o.rewrite(&mut once, &public);
        let bytes = |m: &HeaderMap| m.values().map(|v| v.len()).sum::<usize>();
        prop_assert!(bytes(&once) <= bytes(&h) + 8 * 1024);
        prop_assert_eq!(once.len(), h.len());
        // What was rewritten names the public host: a second pass finds nothing to do.
        let mut twice = once.clone();
        o.rewrite(&mut twice, &public);
        prop_assert_eq!(&twice, &once, "{:?}", values);
    }

    #[test]
    fn a_well_formed_link_keeps_no_origin_target_under_its_base(
        paths in prop::collection::vec("(/[a-z0-9,;\"<]{0,4}){0,3}(\\?[a-z=,]{0,6})?", 1..6),
    ) {
        use apicache::rewrite::Public;
        // Targets cannot hold `<`, `>` or `"` unescaped in Link: drop them, keep the commas.
        let targets: Vec<String> = paths
            .iter()
            .map(|p| p.replace(['<', '"', ';'], ""))
            .collect();
        let link: Vec<String> = targets
            .iter()
            .map(|p| format!("<http://origin:3000/base{p}>; rel=\"a, b\"; title=\"<x>\""))
            .collect();
        let mut h = HeaderMap::new();
        h.insert("link", hv(&link.join(", ")));
        let public = Public { scheme: "https".into(), host: "api.example".into() };
        origin_addr().rewrite(&mut h, &public);
        let got = h["link"].to_str().unwrap().to_string();
        prop_assert!(!got.contains("origin:3000"), "{}", got);
        let want: Vec<String> = targets
            .iter()
            .map(|p| {
                let p = if p.starts_with('/') { p.clone() } else { format!("/{p}") };
                format!("<https://api.example{p}>; rel=\"a, b\"; title=\"<x>\"")
            })
            .collect();
        prop_assert_eq!(got, want.join(", "));
    }
}
