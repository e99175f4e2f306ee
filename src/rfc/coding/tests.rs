//! Table tests of negotiation, tie order, fill Accept-Encoding, media types and stored codings.

use super::*;

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("test header")
}

const ALL: &[Coding] = &[Coding::Gzip, Coding::Br, Coding::Zstd];
const GZ_BR: &[Coding] = &[Coding::Gzip, Coding::Br];

fn neg_with(lines: &[&str], available: &[Coding], prefer: &Preference) -> Coding {
    let values: Vec<HeaderValue> = lines.iter().map(|s| hv(s)).collect();
    negotiate(values.iter(), available, prefer)
}

fn neg(lines: &[&str], available: &[Coding]) -> Coding {
    neg_with(lines, available, &Preference::default())
}

#[test]
fn coding_strings() {
    assert_eq!(Coding::Identity.as_str(), "identity");
    assert_eq!(Coding::Gzip.as_str(), "gzip");
    assert_eq!(Coding::Br.as_str(), "br");
    assert_eq!(Coding::Zstd.as_str(), "zstd");
    assert_eq!(Coding::Identity.etag_suffix(), "");
    assert_eq!(Coding::Gzip.etag_suffix(), "-gz");
    assert_eq!(Coding::Br.etag_suffix(), "-br");
    assert_eq!(Coding::Zstd.etag_suffix(), "-zst");
    assert_eq!(Coding::Br.to_string(), "br");
    for (i, c) in Coding::ALL.into_iter().enumerate() {
        assert_eq!(c as usize, i, "ALL is in discriminant order");
        assert_eq!(c.as_str().parse::<Coding>(), Ok(c));
    }
    assert_eq!("ZSTD".parse::<Coding>(), Ok(Coding::Zstd));
    assert_eq!("x-gzip".parse::<Coding>(), Ok(Coding::Gzip));
    for bad in ["deflate", "", "zstd ", "*", "compress"] {
        let e = bad.parse::<Coding>().unwrap_err();
        assert!(e.contains("unknown content coding"), "{bad:?}: {e}");
    }
}

#[test]
fn preference_ranks() {
    use Coding::*;
    // (configured order, codings from most to least preferred in a tie)
    let rows: &[(&[Coding], [Coding; 4])] = &[
        (&[Br, Zstd, Gzip], [Br, Zstd, Gzip, Identity]),
        (&[], [Br, Zstd, Gzip, Identity]),
        (&[Gzip, Zstd, Br], [Gzip, Zstd, Br, Identity]),
        (&[Zstd], [Zstd, Br, Gzip, Identity]),
        (&[Gzip], [Gzip, Br, Zstd, Identity]),
        // Identity and repeats are ignored (validation refuses them anyway).
        (&[Identity, Zstd, Zstd], [Zstd, Br, Gzip, Identity]),
    ];
    for (order, want) in rows {
        let p = Preference::new(order);
        let mut got = Coding::ALL;
        got.sort_by_key(|c| std::cmp::Reverse(p.rank(*c)));
        assert_eq!(got, *want, "{order:?}");
        assert_eq!(p.rank(Identity), 0, "{order:?}");
    }
    assert_eq!(Preference::default(), Preference::new(&[Br, Zstd, Gzip]));
}

#[test]
fn negotiate_table() {
    use Coding::*;
    let cases: &[(&[&str], &[Coding], Coding)] = &[
        (&[], ALL, Identity),
        (&[""], ALL, Identity),
        (&["gzip"], ALL, Gzip),
        (&["br"], ALL, Br),
        (&["zstd"], ALL, Zstd),
        (&["ZSTD"], ALL, Zstd),
        (&["gzip, br"], ALL, Br),
        (&["br, gzip"], ALL, Br),
        // Default tie order: br, then zstd, then gzip, whatever the listed order.
        (&["gzip, deflate, br, zstd"], ALL, Br),
        (&["gzip, zstd"], ALL, Zstd),
        (&["zstd, gzip"], ALL, Zstd),
        (&["zstd, br"], ALL, Br),
        (&["gzip, deflate, br, zstd"], GZ_BR, Br),
        (&["zstd"], GZ_BR, Identity),
        (&["gzip, zstd"], &[Gzip], Gzip),
        // q-values decide before the tie order does.
        (&["zstd;q=0.9, br;q=0.8"], ALL, Zstd),
        (&["gzip, zstd;q=0.5, br;q=0.5"], ALL, Gzip),
        (&["zstd;q=0.5, br;q=0.5, gzip;q=0.5"], ALL, Br),
        (&["zstd;q=0.5, gzip;q=0.5"], ALL, Zstd),
        // q=0 forbids a coding, even the preferred one.
        (&["zstd;q=0"], ALL, Identity),
        (&["zstd;q=0, gzip"], ALL, Gzip),
        (&["*, zstd;q=0"], ALL, Br),
        (&["*, br;q=0"], ALL, Zstd),
        (&["*, br;q=0, zstd;q=0"], ALL, Gzip),
        (&["zstd;q=0, zstd;q=0.5"], ALL, Zstd),
        (&["gzip;q=0.5, br;q=0.4"], ALL, Gzip),
        (&["gzip;q=0.5, br;q=0.5"], ALL, Br),
        (&["gzip;q=1.0, br;q=0.999"], ALL, Gzip),
        (&["br;q=0, gzip"], ALL, Gzip),
        (&["br;q=0"], ALL, Identity),
        (&["GZIP"], ALL, Gzip),
        (&["Br;Q=1"], ALL, Br),
        (&["x-gzip"], ALL, Gzip),
        (&["X-GZIP;q=0.8, identity;q=0.5"], ALL, Gzip),
        (&["*"], ALL, Br),
        (&["*"], GZ_BR, Br),
        (&["*"], &[Gzip], Gzip),
        (&["*"], &[Gzip, Zstd], Zstd),
        (&["*"], &[], Identity),
        (&["*;q=0"], ALL, Identity),
        (&["*;q=0, gzip"], ALL, Gzip),
        (&["*;q=0.5, identity"], ALL, Identity),
        (&["*;q=0.5, br;q=0"], GZ_BR, Gzip),
        (&["*;q=0.5, zstd"], ALL, Zstd),
        (&["identity;q=0"], ALL, Identity),
        (&["identity;q=0, *;q=0"], ALL, Identity),
        (&["identity"], ALL, Identity),
        (&["identity;q=0.5, gzip;q=0.5"], ALL, Gzip),
        (&["identity;q=0.5, zstd;q=0.5"], ALL, Zstd),
        (&["identity, gzip;q=0.9"], ALL, Identity),
        (&["br"], &[Gzip], Identity),
        (&["gzip, br"], &[Gzip], Gzip),
        (&["gzip"], &[], Identity),
        (&["gzip;q=2"], ALL, Identity),
        (&["gzip;q=abc, br;q=0.1"], ALL, Br),
        (&["gzip;q=0.1234"], ALL, Identity),
        (&["gzip;q=1.001"], ALL, Identity),
        (&["gzip;q=", "br;q=-1"], ALL, Identity),
        (&["zstd;q=x"], ALL, Identity),
        (&["gzip ; q=0.3 , br ; q=0.2"], ALL, Gzip),
        (&["gzip;level=9;q=0.7, br;q=0.6"], ALL, Gzip),
        (&["gzip", "br"], ALL, Br),
        (&["gzip", "zstd"], ALL, Zstd),
        (&["br;q=0.1", "gzip;q=0.9"], ALL, Gzip),
        (&["gzip;q=0, gzip;q=0.5, br;q=0.4"], ALL, Gzip),
        (&[",,, ;;; ==="], ALL, Identity),
        (&["garbage!!, \"quoted\""], ALL, Identity),
        // Unknown codings are skipped, never matched by a prefix.
        (&["compress, deflate"], ALL, Identity),
        (&["zstdx, zst, x-zstd, zstd2"], ALL, Identity),
        (&["deflate, zstd;q=0.1"], ALL, Zstd),
    ];
    for (lines, avail, want) in cases {
        assert_eq!(
            neg(lines, avail),
            *want,
            "Accept-Encoding {lines:?} with {avail:?}"
        );
    }
}

#[test]
fn negotiate_breaks_ties_by_the_configured_order() {
    use Coding::*;
    let gzip_first = Preference::new(&[Gzip, Zstd, Br]);
    let zstd_first = Preference::new(&[Zstd]);
    // (Accept-Encoding, preference, chosen)
    let rows: &[(&[&str], &Preference, Coding)] = &[
        (&["gzip, br, zstd"], &gzip_first, Gzip),
        (&["br, zstd"], &gzip_first, Zstd),
        (&["*"], &gzip_first, Gzip),
        (&["gzip, br, zstd"], &zstd_first, Zstd),
        (&["gzip, br"], &zstd_first, Br),
        // The order only breaks ties: q-values and q=0 still rule.
        (&["gzip;q=0.5, br"], &gzip_first, Br),
        (&["zstd;q=0, gzip, br"], &zstd_first, Br),
        (&["gzip;q=0, *"], &gzip_first, Zstd),
        (&["identity;q=0.5, gzip;q=0.5"], &gzip_first, Gzip),
        (&["identity"], &zstd_first, Identity),
    ];
    for (lines, prefer, want) in rows {
        assert_eq!(neg_with(lines, ALL, prefer), *want, "{lines:?} {prefer:?}");
    }
}

#[test]
fn fill_asks_only_for_what_the_client_accepts() {
    // (client's Accept-Encoding, preference, what the fill asks the origin for)
    let gzip_first = Preference::new(&[Coding::Gzip]);
    let default = Preference::default();
    let rows: &[(Option<&str>, &Preference, &str)] = &[
        (None, &default, "identity"),
        (Some("identity"), &default, "identity"),
        (Some("br"), &default, "identity"),
        (Some("gzip"), &default, "gzip"),
        (Some("zstd"), &default, "zstd"),
        (
            Some("gzip, deflate, br, zstd"),
            &default,
            "zstd, gzip;q=0.9",
        ),
        (
            Some("gzip, deflate, br, zstd"),
            &gzip_first,
            "gzip, zstd;q=0.9",
        ),
        (Some("*"), &default, "zstd, gzip;q=0.9"),
        (Some("zstd;q=0.5, gzip"), &default, "gzip, zstd;q=0.9"),
        (Some("zstd;q=0, gzip"), &default, "gzip"),
        (Some("*, gzip;q=0"), &default, "zstd"),
        (Some("identity, zstd;q=0.5"), &default, "identity"),
        (Some("zstd;q=abc"), &default, "identity"),
    ];
    for (ae, prefer, want) in rows {
        let mut h = HeaderMap::new();
        if let Some(ae) = ae {
            h.insert(header::ACCEPT_ENCODING, hv(ae));
        }
        assert_eq!(fill_accept_encoding(&h, prefer), *want, "{ae:?}");
    }
}

#[test]
fn negotiate_skips_non_ascii_lines() {
    let bad = HeaderValue::from_bytes(b"br\xff").expect("obs-text allowed");
    let good = hv("gzip");
    let p = Preference::default();
    assert_eq!(negotiate([&bad, &good].into_iter(), ALL, &p), Coding::Gzip);
    assert_eq!(negotiate([&bad].into_iter(), ALL, &p), Coding::Identity);
}

#[test]
fn qvalue_parsing() {
    assert_eq!(parse_qvalue("1"), Some(1000));
    assert_eq!(parse_qvalue("1."), Some(1000));
    assert_eq!(parse_qvalue("1.000"), Some(1000));
    assert_eq!(parse_qvalue("0"), Some(0));
    assert_eq!(parse_qvalue("0.5"), Some(500));
    assert_eq!(parse_qvalue("0.05"), Some(50));
    assert_eq!(parse_qvalue("0.001"), Some(1));
    assert_eq!(parse_qvalue(""), None);
    assert_eq!(parse_qvalue("1.5"), None);
    assert_eq!(parse_qvalue("0.5x"), None);
    assert_eq!(parse_qvalue("0,5"), None);
    assert_eq!(parse_qvalue("2"), None);
    assert_eq!(parse_qvalue(".5"), None);
}

#[test]
fn compressible_types() {
    let pats = default_types();
    let yes = [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.api+json",
        "application/problem+json; charset=utf-8",
        "text/html",
        "TEXT/Plain;charset=us-ascii",
        "text/csv",
        "application/javascript",
        "application/xml",
        "application/atom+xml",
        "image/svg+xml",
        "application/graphql-response+json",
        "  application/json  ;x=y",
    ];
    for ct in yes {
        assert!(is_compressible(Some(&hv(ct)), &pats), "{ct}");
    }
    let no = [
        "image/png",
        "application/octet-stream",
        "application/jsonx",
        "application/json-seq",
        "application/x-json+jsonfoo",
        "video/mp4",
        "textual/plain",
        "json",
        "",
        "/",
        "text/",
        ";charset=utf-8",
    ];
    for ct in no {
        assert!(!is_compressible(Some(&hv(ct)), &pats), "{ct}");
    }
    assert!(!is_compressible(None, &pats));
    assert!(!is_compressible(Some(&hv("application/json")), &[]));
    let bin = HeaderValue::from_bytes(b"text/\xffplain").expect("obs-text allowed");
    assert!(!is_compressible(Some(&bin), &pats));
    let custom = vec!["Application/X-Custom".to_string(), "+YAML".to_string()];
    assert!(is_compressible(Some(&hv("application/x-custom")), &custom));
    assert!(is_compressible(Some(&hv("application/foo+yaml")), &custom));
    assert!(!is_compressible(Some(&hv("text/plain")), &custom));
}

#[test]
fn stored_encodings() {
    let rows: &[(&[&str], Result<Coding, NoStore>)] = &[
        (&[], Ok(Coding::Identity)),
        (&["identity"], Ok(Coding::Identity)),
        (&["gzip"], Ok(Coding::Gzip)),
        (&["X-Gzip"], Ok(Coding::Gzip)),
        (&["zstd"], Ok(Coding::Zstd)),
        (&["ZSTD"], Ok(Coding::Zstd)),
        (&["br"], Err(NoStore::Encoding)),
        (&["zstd, gzip"], Err(NoStore::Encoding)),
        (&["zstd", "gzip"], Err(NoStore::Encoding)),
        (&["gzip", "gzip"], Err(NoStore::Encoding)),
    ];
    for (values, want) in rows {
        let mut h = HeaderMap::new();
        for v in *values {
            h.append(header::CONTENT_ENCODING, hv(v));
        }
        assert_eq!(stored_encoding(&h), *want, "{values:?}");
    }
}

#[test]
fn accepts_gzip() {
    let mut h = HeaderMap::new();
    assert!(!accepts(&h, Coding::Gzip));
    h.insert(header::ACCEPT_ENCODING, hv("br, gzip;q=0.5"));
    assert!(accepts(&h, Coding::Gzip));
    h.insert(header::ACCEPT_ENCODING, hv("gzip;q=0"));
    assert!(!accepts(&h, Coding::Gzip));
    h.insert(header::ACCEPT_ENCODING, hv("zstd"));
    assert!(accepts(&h, Coding::Zstd) && !accepts(&h, Coding::Gzip));
}
