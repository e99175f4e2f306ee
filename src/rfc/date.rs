//! HTTP-date parsing (RFC 9110 §5.6.7): IMF-fixdate, rfc850-date and asctime-date.
//!
//! Hand-written because recipients MUST accept all three formats and the usual crates reject what
//! the RFC asks us to accept: lowercase month names, or a weekday that does not match the date.
//! Names are matched case-insensitively and the weekday is not checked against the date.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const LONG_DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// Parse an HTTP-date in any of the three formats; `None` when it is none of them.
pub fn parse(s: &str) -> Option<SystemTime> {
    parse_with_now(s, SystemTime::now())
}

/// [`parse`], with rfc850's two-digit years resolved against `now` (RFC 9110 §5.6.7: a year more
/// than 50 years in the future is the most recent past year with those digits).
pub fn parse_with_now(s: &str, now: SystemTime) -> Option<SystemTime> {
    let s = s.trim();
    if s.len() > 64 || !s.is_ascii() {
        return None;
    }
    let fields = if let Some((day, rest)) = s.split_once(',') {
        let day = day.to_ascii_lowercase();
        if DAYS.contains(&day.as_str()) {
            imf_fixdate(rest)?
        } else if LONG_DAYS.contains(&day.as_str()) {
            rfc850(rest, year_of(now))?
        } else {
            return None;
        }
    } else {
        asctime(s)?
    };
    to_time(fields)
}

/// Year, month (1–12), day, hour, minute, second.
type Fields = (i64, u32, u32, u32, u32, u32);

/// `" 06 Nov 1994 08:49:37 GMT"` (after the day name and comma).
fn imf_fixdate(rest: &str) -> Option<Fields> {
    let rest = rest.strip_prefix(' ')?;
    let mut p = rest.split(' ');
    let day = two_digits(p.next()?)?;
    let month = month(p.next()?)?;
    let year = digits(p.next()?, 4)?;
    let (h, m, s) = time_of_day(p.next()?)?;
    gmt(p.next()?)?;
    p.next()
        .is_none()
        .then_some((year as i64, month, day, h, m, s))
}

/// `" 06-Nov-94 08:49:37 GMT"` (after the long day name and comma).
fn rfc850(rest: &str, this_year: i64) -> Option<Fields> {
    let rest = rest.strip_prefix(' ')?;
    let mut p = rest.split(' ');
    let mut date = p.next()?.split('-');
    let day = two_digits(date.next()?)?;
    let month = month(date.next()?)?;
    let yy = digits(date.next()?, 2)? as i64;
    if date.next().is_some() {
        return None;
    }
    let (h, m, s) = time_of_day(p.next()?)?;
    gmt(p.next()?)?;
    if p.next().is_some() {
        return None;
    }
    let century = this_year - this_year.rem_euclid(100);
    let mut year = century + yy;
    if year > this_year + 50 {
        year -= 100;
    }
    Some((year, month, day, h, m, s))
}

/// `"Sun Nov  6 08:49:37 1994"`: the day of month is space-padded to two characters.
fn asctime(s: &str) -> Option<Fields> {
    let (day_name, rest) = s.split_at_checked(3)?;
    if !DAYS.contains(&day_name.to_ascii_lowercase().as_str()) {
        return None;
    }
    let rest = rest.strip_prefix(' ')?;
    let (mon, rest) = rest.split_at_checked(3)?;
    let month = month(mon)?;
    let rest = rest.strip_prefix(' ')?;
    let (dd, rest) = rest.split_at_checked(2)?;
    let day = match dd.as_bytes() {
        [b' ', d] if d.is_ascii_digit() => u32::from(d - b'0'),
        _ => two_digits(dd)?,
    };
    let mut p = rest.strip_prefix(' ')?.split(' ');
    let (h, m, sec) = time_of_day(p.next()?)?;
    let year = digits(p.next()?, 4)?;
    p.next()
        .is_none()
        .then_some((year as i64, month, day, h, m, sec))
}

fn month(s: &str) -> Option<u32> {
    let s = s.to_ascii_lowercase();
    MONTHS.iter().position(|m| *m == s).map(|i| i as u32 + 1)
}

fn gmt(s: &str) -> Option<()> {
    s.eq_ignore_ascii_case("GMT").then_some(())
}

fn digits(s: &str, n: usize) -> Option<u32> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn two_digits(s: &str) -> Option<u32> {
    digits(s, 2)
}

fn time_of_day(s: &str) -> Option<(u32, u32, u32)> {
    let mut p = s.split(':');
    let t = (
        two_digits(p.next()?)?,
        two_digits(p.next()?)?,
        two_digits(p.next()?)?,
    );
    // 60 is a leap second (RFC 9110 allows it); read as the last second of the minute.
    (p.next().is_none() && t.0 < 24 && t.1 < 60 && t.2 <= 60).then_some((t.0, t.1, t.2.min(59)))
}

fn to_time((year, month, day, h, m, s): Fields) -> Option<SystemTime> {
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400
        + i64::from(h) * 3600
        + i64::from(m) * 60
        + i64::from(s);
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs as u64))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    }
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn year_of(t: SystemTime) -> i64 {
    let days = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| (d.as_secs() / 86_400) as i64);
    // Close enough for the 50-year rule: off by at most a day at New Year.
    1970 + (days * 400) / 146_097
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1994-11-06 08:49:37 UTC, the RFC's example.
    const EXAMPLE: u64 = 784_111_777;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn three_formats_and_leniency() {
        let now = at(1_790_000_000); // 2026
        let rows: &[(&str, Option<u64>)] = &[
            ("Sun, 06 Nov 1994 08:49:37 GMT", Some(EXAMPLE)),
            ("Sunday, 06-Nov-94 08:49:37 GMT", Some(EXAMPLE)),
            ("Sun Nov  6 08:49:37 1994", Some(EXAMPLE)),
            ("Sun Nov 06 08:49:37 1994", Some(EXAMPLE)),
            // Names in any case; the weekday is not checked against the date.
            ("sun, 06 nov 1994 08:49:37 gmt", Some(EXAMPLE)),
            ("Mon, 06 NOV 1994 08:49:37 GMT", Some(EXAMPLE)),
            ("WEDNESDAY, 06-nov-94 08:49:37 GMT", Some(EXAMPLE)),
            ("Thu Nov  6 08:49:37 1994", Some(EXAMPLE)),
            ("  Sun, 06 Nov 1994 08:49:37 GMT ", Some(EXAMPLE)),
            ("Thu, 01 Jan 1970 00:00:00 GMT", Some(0)),
            ("Fri, 29 Feb 2008 00:00:00 GMT", Some(1_204_243_200)),
            ("Sun, 06 Nov 1994 08:49:60 GMT", Some(EXAMPLE + 22)),
            // rfc850 two-digit years: more than 50 years ahead means the past century.
            ("Saturday, 01-Jan-77 00:00:00 GMT", Some(220_924_800)),
            ("Sunday, 01-Jan-70 00:00:00 GMT", Some(3_155_760_000)),
            // Not dates.
            ("0", None),
            ("", None),
            ("-1", None),
            ("Sun, 6 Nov 1994 08:49:37 GMT", None),
            ("Sun, 06 Nov 94 08:49:37 GMT", None),
            ("Sun, 06 Nov 1994 08:49:37 UTC", None),
            ("Sun, 06 Nov 1994 8:49:37 GMT", None),
            ("Sun, 06 Foo 1994 08:49:37 GMT", None),
            ("Sun, 30 Feb 1994 08:49:37 GMT", None),
            ("Sun, 06 Nov 1994 24:00:00 GMT", None),
            ("Sun, 06 Nov 1994 08:49:37 GMT x", None),
            ("Sunday, 06 Nov 1994 08:49:37 GMT", None),
            ("Sun, 06-Nov-94 08:49:37 GMT", None),
            ("Xyz, 06 Nov 1994 08:49:37 GMT", None),
            ("Sun Nov  6 08:49:37 94", None),
            ("Sün, 06 Nov 1994 08:49:37 GMT", None),
        ];
        for (s, want) in rows {
            assert_eq!(parse_with_now(s, now), want.map(at), "{s:?}");
        }
    }

    #[test]
    fn agrees_with_httpdate_on_imf_fixdate() {
        for secs in [0u64, 86_399, 951_782_400, 1_700_000_000, 4_102_444_799] {
            let s = httpdate::fmt_http_date(at(secs));
            assert_eq!(parse(&s), Some(at(secs)), "{s}");
        }
    }
}
