//! Content codings (RFC 9110 §8.4, §12.5.3): negotiation from Accept-Encoding (ties broken by a
//! configured [`Preference`]), which media types are worth compressing, which codings a fill asks
//! the origin for, and which codings an origin's body may arrive in to be stored.

use std::fmt;
use std::str::FromStr;

use http::{header, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

use super::storable::NoStore;

/// A content coding the cache can produce or store. The discriminants index per-coding arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Coding {
    /// No transformation.
    Identity,
    /// gzip (RFC 1952).
    Gzip,
    /// Brotli (RFC 7932).
    Br,
    /// Zstandard (RFC 8878, content coding per RFC 9659).
    Zstd,
}

impl Coding {
    /// Every coding, identity first, in discriminant order.
    pub const ALL: [Coding; 4] = [Coding::Identity, Coding::Gzip, Coding::Br, Coding::Zstd];

    /// The token used in Content-Encoding / Accept-Encoding.
    pub fn as_str(self) -> &'static str {
        match self {
            Coding::Identity => "identity",
            Coding::Gzip => "gzip",
            Coding::Br => "br",
            Coding::Zstd => "zstd",
        }
    }

    /// The suffix appended to an ETag's opaque part for this coding's variant.
    pub fn etag_suffix(self) -> &'static str {
        match self {
            Coding::Identity => "",
            Coding::Gzip => "-gz",
            Coding::Br => "-br",
            Coding::Zstd => "-zst",
        }
    }

    /// The coding an Accept-Encoding / Content-Encoding token names (case-insensitive, `x-gzip`
    /// included); `None` for codings this proxy does not know.
    pub fn from_token(token: &str) -> Option<Coding> {
        Coding::ALL
            .into_iter()
            .find(|c| token.eq_ignore_ascii_case(c.as_str()))
            .or_else(|| token.eq_ignore_ascii_case("x-gzip").then_some(Coding::Gzip))
    }
}

impl fmt::Display for Coding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Coding {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Coding::from_token(s).ok_or_else(|| {
            format!("unknown content coding {s:?} (known: identity, gzip, br, zstd)")
        })
    }
}

impl TryFrom<String> for Coding {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Coding> for &'static str {
    fn from(c: Coding) -> &'static str {
        c.as_str()
    }
}

/// Which coding wins when the client gives several the same q-value: the configured order
/// (`compression.prefer`), then the unlisted ones in the default order, identity always last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preference {
    /// Rank by coding discriminant; higher wins a tie.
    rank: [u8; 4],
}

impl Preference {
    /// The default order: br compresses JSON best, zstd nearly as well and decodes fastest,
    /// gzip is the one every client has.
    pub const DEFAULT_ORDER: [Coding; 3] = [Coding::Br, Coding::Zstd, Coding::Gzip];

    /// The ranking `order` gives (first wins); identity and duplicates in it are ignored.
    pub fn new(order: &[Coding]) -> Self {
        let mut rank = [0u8; 4];
        let mut next = 4u8;
        for c in order.iter().chain(&Self::DEFAULT_ORDER) {
            if *c != Coding::Identity && rank[*c as usize] == 0 {
                next -= 1;
                rank[*c as usize] = next;
            }
        }
        Self { rank }
    }

    fn rank(&self, c: Coding) -> u8 {
        self.rank[c as usize]
    }
}

impl Default for Preference {
    fn default() -> Self {
        Self::new(&Self::DEFAULT_ORDER)
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

/// Pick the coding for a response from the request's Accept-Encoding header values: the highest
/// q-value among `available` and identity, ties broken by `prefer`.
pub fn negotiate<'a>(
    accept_encoding: impl Iterator<Item = &'a HeaderValue>,
    available: &[Coding],
    prefer: &Preference,
) -> Coding {
    let (explicit, star) = weights(accept_encoding);
    let mut best = Coding::Identity;
    let mut best_q = 0u16;
    let candidates = available
        .iter()
        .copied()
        .chain(std::iter::once(Coding::Identity));
    for c in candidates {
        let q = match (explicit[c as usize], star) {
            (Some(q), _) | (None, Some(q)) => q,
            // Identity is acceptable unless excluded; other codings must be asked for.
            (None, None) if c == Coding::Identity => 1,
            (None, None) => 0,
        };
        if q > best_q || (q == best_q && q > 0 && prefer.rank(c) > prefer.rank(best)) {
            best = c;
            best_q = q;
        }
    }
    best
}

/// The q-values (thousandths) Accept-Encoding gives each known coding explicitly, and `*`'s;
/// the highest wins when a coding is listed twice.
fn weights<'a>(
    accept_encoding: impl Iterator<Item = &'a HeaderValue>,
) -> ([Option<u16>; 4], Option<u16>) {
    let mut explicit: [Option<u16>; 4] = [None; 4];
    let mut star: Option<u16> = None;

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
            } else if let Some(c) = Coding::from_token(token) {
                &mut explicit[c as usize]
            } else {
                continue;
            };
            *target = Some(target.map_or(q, |old| old.max(q)));
        }
    }
    (explicit, star)
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

/// Whether the request accepts `coding` (q > 0, or `*`) at least as much as identity.
pub fn accepts(req: &HeaderMap, coding: Coding) -> bool {
    let prefer = Preference::default();
    negotiate(
        req.get_all(header::ACCEPT_ENCODING).iter(),
        &[coding],
        &prefer,
    ) == coding
}

/// The Accept-Encoding a fill sends the origin: the codings apicache can decode for storing
/// (gzip, zstd) that this client accepts, since an unstorable answer goes to the client as it
/// came. With both, the one the client (then `prefer`) favours is listed first at full weight.
pub fn fill_accept_encoding(req: &HeaderMap, prefer: &Preference) -> HeaderValue {
    let gzip = accepts(req, Coding::Gzip);
    let zstd = accepts(req, Coding::Zstd);
    let first = negotiate(
        req.get_all(header::ACCEPT_ENCODING).iter(),
        &[Coding::Gzip, Coding::Zstd],
        prefer,
    );
    HeaderValue::from_static(match (gzip, zstd) {
        (true, true) if first == Coding::Gzip => "gzip, zstd;q=0.9",
        (true, true) => "zstd, gzip;q=0.9",
        (true, false) => "gzip",
        (false, true) => "zstd",
        (false, false) => "identity",
    })
}

/// The Content-Encoding an origin's body arrived in, if it can be stored: identity as is, gzip
/// and zstd after decoding. Anything else (or several codings) streams through unstored.
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
        b"zstd" => Ok(Coding::Zstd),
        _ => Err(NoStore::Encoding),
    }
}

#[cfg(test)]
mod tests;
