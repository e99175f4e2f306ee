//! Accept-Encoding negotiation on arbitrary header values: the pick is always one the client
//! accepts (or identity when nothing is), and independent of header order and line splitting.

#![no_main]

mod common;

use apicache::rfc::coding::{accepts, negotiate, Coding};
use http::{header, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, &[u8])| {
    let (avail_bits, data) = input;
    let values = common::header_values(data);
    let available: Vec<Coding> = [Coding::Gzip, Coding::Br, Coding::Identity]
        .into_iter()
        .enumerate()
        .filter(|(i, _)| avail_bits & (1 << i) != 0)
        .map(|(_, c)| c)
        .collect();
    let chosen = negotiate(values.iter(), &available);
    assert!(chosen == Coding::Identity || available.contains(&chosen));

    let lines: Vec<&str> = values.iter().filter_map(|v| v.to_str().ok()).collect();
    let q = |c: Coding| oracle_q(&lines, c);
    let best = available
        .iter()
        .copied()
        .chain([Coding::Identity])
        .map(q)
        .max()
        .unwrap_or(0);
    if best > 0 {
        assert_eq!(q(chosen), best, "{lines:?} {available:?} -> {chosen:?}");
    } else {
        assert_eq!(
            chosen,
            Coding::Identity,
            "nothing acceptable falls back to identity"
        );
    }

    let mut req = HeaderMap::new();
    for v in &values {
        req.append(header::ACCEPT_ENCODING, v.clone());
    }
    // `accepts` means "would be picked over identity", so a client preferring identity says no.
    for c in [Coding::Gzip, Coding::Br] {
        let want = q(c) > 0 && q(c) >= q(Coding::Identity);
        assert_eq!(accepts(&req, c), want, "{lines:?} accepts {c:?}");
    }

    // A list header may be split over lines or combined with commas (RFC 9110 §5.3).
    let reversed: Vec<HeaderValue> = values.iter().rev().cloned().collect();
    assert_eq!(negotiate(reversed.iter(), &available), chosen);
    if lines.len() == values.len() {
        if let Ok(joined) = HeaderValue::from_str(&lines.join(", ")) {
            assert_eq!(negotiate(std::iter::once(&joined), &available), chosen);
        }
    }
});

/// The client's weight for `c` in thousandths, read straight from RFC 9110 §12.5.3: the highest
/// explicit entry, else `*`, else identity is implicitly acceptable (ranked below any explicit
/// weight) and other codings are not.
fn oracle_q(lines: &[&str], c: Coding) -> u16 {
    let names: &[&str] = match c {
        Coding::Identity => &["identity"],
        Coding::Gzip => &["gzip", "x-gzip"],
        Coding::Br => &["br"],
    };
    let mut explicit: Option<u16> = None;
    let mut star: Option<u16> = None;
    for entry in lines.iter().flat_map(|l| l.split(',')) {
        let mut parts = entry.split(';');
        let token = parts.next().unwrap_or("").trim();
        let weight = parts
            .filter_map(|p| p.split_once('='))
            .rfind(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(1000, |(_, v)| qvalue(v.trim()).unwrap_or(0));
        let slot = if token == "*" {
            &mut star
        } else if names.iter().any(|n| n.eq_ignore_ascii_case(token)) {
            &mut explicit
        } else {
            continue;
        };
        *slot = Some(slot.map_or(weight, |w| w.max(weight)));
    }
    match (explicit, star) {
        (Some(q), _) | (None, Some(q)) => q,
        (None, None) if c == Coding::Identity => 1,
        (None, None) => 0,
    }
}

/// qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), in thousandths.
fn qvalue(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac: u16 = format!("{frac:0<3}").parse().ok()?;
    match int {
        "0" => Some(frac),
        "1" if frac == 0 => Some(1000),
        _ => None,
    }
}
