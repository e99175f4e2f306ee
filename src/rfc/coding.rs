//! Content codings (RFC 9110 §8.4, §12.5.3): negotiation from Accept-Encoding, which media types
//! are worth compressing, and which codings an origin's body may arrive in to be stored.

use std::fmt;

use http::{header, HeaderMap, HeaderValue};

use super::storable::NoStore;

/// A content coding the cache can produce or store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Coding {
    /// No transformation.
    Identity,
    /// gzip (RFC 1952).
    Gzip,
    /// Brotli (RFC 7932).
    Br,
}

impl Coding {
    /// The token used in Content-Encoding / Accept-Encoding.
    pub fn as_str(self) -> &'static str {
        match self {
            Coding::Identity => "identity",
            Coding::Gzip => "gzip",
            Coding::Br => "br",
        }
    }

    /// The suffix appended to an ETag's opaque part for this coding's variant.
    pub fn etag_suffix(self) -> &'static str {
        match self {
            Coding::Identity => "",
            Coding::Gzip => "-gz",
            Coding::Br => "-br",
        }
    }

    /// Tie-break rank: higher wins when q-values are equal (br compresses JSON best).
    fn preference(self) -> u8 {
        match self {
            Coding::Identity => 0,
            Coding::Gzip => 1,
            Coding::Br => 2,
        }
    }
}

impl fmt::Display for Coding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parse a qvalue (`0[.ddd]` / `1[.000]`) into thousandths; `None` if malformed.
fn parse_qvalue(s: &str) -> Option<u16> {
    let b = s.as_bytes();
    let (&first, rest) = b.split_first()?;
    let frac = match rest.split_first() {
        None => &[][..],
        Some((b'.', frac)) if frac.len() <= 3 && frac.iter().all(u8::is_ascii_digit) => frac,
        Some(_) => return None,
    };
    let mut thousandths = 0u16;
    for i in 0..3 {
        let d = frac.get(i).map_or(0, |c| u16::from(c - b'0'));
        thousandths = thousandths * 10 + d;
    }
    match first {
        b'0' => Some(thousandths),
        b'1' if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Pick the coding for a response from the request's Accept-Encoding header values.
pub fn negotiate<'a>(
    accept_encoding: impl Iterator<Item = &'a HeaderValue>,
    available: &[Coding],
) -> Coding {
    // Explicit q per coding (thousandths) and the `*` q; max wins on duplicates.
    let mut explicit: [Option<u16>; 3] = [None; 3];
    let mut star: Option<u16> = None;
    let slot = |c: Coding| c.preference() as usize;

    for value in accept_encoding {
        // Non-ASCII lines cannot name a coding we know, so skip them wholesale.
        let Ok(line) = value.to_str() else { continue };
        for entry in line.split(',') {
            let mut parts = entry.split(';');
            let token = parts.next().unwrap_or("").trim();
            if token.is_empty() {
                continue;
            }
            let mut q = 1000u16;
            for param in parts {
                let Some((k, v)) = param.split_once('=') else {
                    continue;
                };
                if k.trim().eq_ignore_ascii_case("q") {
                    // A malformed q makes the entry unacceptable rather than defaulting to 1.
                    q = parse_qvalue(v.trim()).unwrap_or(0);
                }
            }
            let target = if token == "*" {
                &mut star
            } else if token.eq_ignore_ascii_case("gzip") || token.eq_ignore_ascii_case("x-gzip") {
                &mut explicit[slot(Coding::Gzip)]
            } else if token.eq_ignore_ascii_case("br") {
                &mut explicit[slot(Coding::Br)]
            } else if token.eq_ignore_ascii_case("identity") {
                &mut explicit[slot(Coding::Identity)]
            } else {
                continue;
            };
            *target = Some(target.map_or(q, |old| old.max(q)));
        }
    }

    let mut best = Coding::Identity;
    let mut best_q = 0u16;
    let candidates = available
        .iter()
        .copied()
        .chain(std::iter::once(Coding::Identity));
    for c in candidates {
        let q = match (explicit[slot(c)], star) {
            (Some(q), _) | (None, Some(q)) => q,
            // Identity is acceptable unless excluded; other codings must be asked for.
            (None, None) if c == Coding::Identity => 1,
            (None, None) => 0,
        };
        if q > best_q || (q == best_q && q > 0 && c.preference() > best.preference()) {
            best = c;
            best_q = q;
        }
    }
    best
}

/// True if the Content-Type's media type matches one of `patterns`.
pub fn is_compressible(content_type: Option<&HeaderValue>, patterns: &[String]) -> bool {
    let Some(Ok(ct)) = content_type.map(HeaderValue::to_str) else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some((ty, sub)) = mime.split_once('/') else {
        return false;
    };
    if ty.is_empty() || sub.is_empty() {
        return false;
    }
    patterns.iter().any(|p| {
        let p = p.trim().to_ascii_lowercase();
        if p == "*/*" || p == "*" {
            true
        } else if p.starts_with('+') {
            sub.ends_with(&p)
        } else if let Some(prefix) = p.strip_suffix("/*") {
            ty == prefix
        } else {
            mime == p
        }
    })
}

/// The default list of compressible media-type patterns.
pub fn default_types() -> Vec<String> {
    [
        "application/json",
        "+json",
        "text/*",
        "application/javascript",
        "application/x-javascript",
        "text/javascript",
        "application/xml",
        "+xml",
        "image/svg+xml",
        "application/graphql-response+json",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// Whether the request accepts `coding` (q > 0, or `*`), among the codings this proxy knows.
pub fn accepts(req: &HeaderMap, coding: Coding) -> bool {
    negotiate(req.get_all(header::ACCEPT_ENCODING).iter(), &[coding]) == coding
}

/// The Content-Encoding an origin's body arrived in, if it can be stored: identity as is, gzip
/// after decoding. Anything else (or several codings) streams through unstored.
pub fn stored_encoding(h: &HeaderMap) -> Result<Coding, NoStore> {
    let mut values = h.get_all(header::CONTENT_ENCODING).iter();
    let Some(v) = values.next() else {
        return Ok(Coding::Identity);
    };
    if values.next().is_some() {
        return Err(NoStore::Encoding);
    }
    match v.as_bytes().to_ascii_lowercase().as_slice() {
        b"identity" => Ok(Coding::Identity),
        b"gzip" | b"x-gzip" => Ok(Coding::Gzip),
        _ => Err(NoStore::Encoding),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).expect("test header")
    }

    const ALL: &[Coding] = &[Coding::Gzip, Coding::Br];

    fn neg(lines: &[&str], available: &[Coding]) -> Coding {
        let values: Vec<HeaderValue> = lines.iter().map(|s| hv(s)).collect();
        negotiate(values.iter(), available)
    }

    #[test]
    fn coding_strings() {
        assert_eq!(Coding::Identity.as_str(), "identity");
        assert_eq!(Coding::Gzip.as_str(), "gzip");
        assert_eq!(Coding::Br.as_str(), "br");
        assert_eq!(Coding::Identity.etag_suffix(), "");
        assert_eq!(Coding::Gzip.etag_suffix(), "-gz");
        assert_eq!(Coding::Br.etag_suffix(), "-br");
        assert_eq!(Coding::Br.to_string(), "br");
    }

    #[test]
    fn negotiate_table() {
        use Coding::*;
        let cases: &[(&[&str], &[Coding], Coding)] = &[
            (&[], ALL, Identity),
            (&[""], ALL, Identity),
            (&["gzip"], ALL, Gzip),
            (&["br"], ALL, Br),
            (&["gzip, br"], ALL, Br),
            (&["br, gzip"], ALL, Br),
            (&["gzip, deflate, br, zstd"], ALL, Br),
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
            (&["*"], &[Gzip], Gzip),
            (&["*"], &[], Identity),
            (&["*;q=0"], ALL, Identity),
            (&["*;q=0, gzip"], ALL, Gzip),
            (&["*;q=0.5, identity"], ALL, Identity),
            (&["*;q=0.5, br;q=0"], ALL, Gzip),
            (&["identity;q=0"], ALL, Identity),
            (&["identity;q=0, *;q=0"], ALL, Identity),
            (&["identity"], ALL, Identity),
            (&["identity;q=0.5, gzip;q=0.5"], ALL, Gzip),
            (&["identity, gzip;q=0.9"], ALL, Identity),
            (&["br"], &[Gzip], Identity),
            (&["gzip, br"], &[Gzip], Gzip),
            (&["gzip"], &[], Identity),
            (&["gzip;q=2"], ALL, Identity),
            (&["gzip;q=abc, br;q=0.1"], ALL, Br),
            (&["gzip;q=0.1234"], ALL, Identity),
            (&["gzip;q=1.001"], ALL, Identity),
            (&["gzip;q=", "br;q=-1"], ALL, Identity),
            (&["gzip ; q=0.3 , br ; q=0.2"], ALL, Gzip),
            (&["gzip;level=9;q=0.7, br;q=0.6"], ALL, Gzip),
            (&["gzip", "br"], ALL, Br),
            (&["br;q=0.1", "gzip;q=0.9"], ALL, Gzip),
            (&["gzip;q=0, gzip;q=0.5, br;q=0.4"], ALL, Gzip),
            (&[",,, ;;; ==="], ALL, Identity),
            (&["garbage!!, \"quoted\""], ALL, Identity),
            (&["compress, deflate"], ALL, Identity),
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
    fn negotiate_skips_non_ascii_lines() {
        let bad = HeaderValue::from_bytes(b"br\xff").expect("obs-text allowed");
        let good = hv("gzip");
        assert_eq!(negotiate([&bad, &good].into_iter(), ALL), Coding::Gzip);
        assert_eq!(negotiate([&bad].into_iter(), ALL), Coding::Identity);
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
            (&["br"], Err(NoStore::Encoding)),
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
    }
}
