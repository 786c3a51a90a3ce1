//! Times as operators write them: RFC 3339 in and out, with no time-zone database
//! (a gateway in China logs in UTC+8, its records in UTC; an offset says which).
//! Calendar arithmetic only: no clock is read here (the shells read it, `cli::now_ms`),
//! so records, replay and trace share it with the core's purity intact.

/// A time of the steady clock (`steady_ms`) on the calendar, given both clocks now
/// (`now_ms` steady, `wall_ms` wall): what files and records that outlive the process
/// are written in ([`crate::decide::Context`] has the two clocks).
pub fn on_calendar(steady_ms: u64, now_ms: u64, wall_ms: u64) -> u64 {
    (steady_ms as i64 + (wall_ms as i64 - now_ms as i64)).max(0) as u64
}

/// RFC 3339 UTC time of a Unix millisecond count.
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Days from 1970-01-01 to a civil date (Hinnant's days-from-civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A time given on the command line, in Unix milliseconds: Unix seconds
/// (`1764468000`, `1764468000.9`: capture tools and records give fractions, QA 192), or `YYYY-MM-DD[T| ]HH:MM[:SS[.fff]]` followed by `Z` or an offset
/// (`+08:00`, `+0800`); without either the time is UTC, as the records are.
pub fn parse_time(s: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "time '{s}': expected Unix seconds or YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM] (e.g. 2026-11-30T10:00:00+08:00)"
        )
    };
    let t = s.trim();
    // Every form is ASCII; anything else is refused here, before any slicing by bytes.
    if !t.is_ascii() {
        return Err(bad());
    }
    let (secs, frac) = t.split_once('.').unwrap_or((t, ""));
    if !secs.is_empty()
        && secs.bytes().all(|c| c.is_ascii_digit())
        && frac.bytes().all(|c| c.is_ascii_digit())
        && !(t.contains('.') && frac.is_empty())
    {
        // Milliseconds: the first three digits of the fraction.
        let ms = frac
            .bytes()
            .chain(std::iter::repeat(b'0'))
            .take(3)
            .fold(0u64, |a, c| a * 10 + u64::from(c - b'0'));
        return secs
            .parse::<u64>()
            .ok()
            .and_then(|v| v.checked_mul(1000))
            .and_then(|v| v.checked_add(ms))
            .ok_or_else(bad);
    }
    let num = |r: &str| -> Result<i64, String> {
        if r.is_empty() || !r.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        r.parse().map_err(|_| bad())
    };
    // Date and time of day.
    let (date, rest) = t.split_at(t.find(['T', 't', ' ']).ok_or_else(bad)?);
    let rest = &rest[1..];
    let mut dp = date.split('-');
    let (y, mo, d) = match (dp.next(), dp.next(), dp.next(), dp.next()) {
        (Some(y), Some(m), Some(d), None) if y.len() == 4 => (num(y)?, num(m)?, num(d)?),
        _ => return Err(bad()),
    };
    // Zone: 'Z', '+hh:mm', '-hh:mm', '+hhmm', or nothing (UTC).
    let (clock, offset_min) = match rest.find(['Z', 'z', '+', '-']) {
        Some(i) => {
            let zone = &rest[i..];
            let off = if zone.eq_ignore_ascii_case("z") {
                0
            } else {
                let sign = if zone.starts_with('-') { -1 } else { 1 };
                let hm = zone[1..].replace(':', "");
                if hm.len() != 4 {
                    return Err(bad());
                }
                let (h, m) = (num(&hm[..2])?, num(&hm[2..])?);
                if h > 23 || m > 59 {
                    return Err(bad());
                }
                sign * (h * 60 + m)
            };
            (&rest[..i], off)
        }
        None => (rest, 0),
    };
    let mut cp = clock.split(':');
    let (h, mi, sec) = match (cp.next(), cp.next(), cp.next(), cp.next()) {
        (Some(h), Some(m), None, None) => (num(h)?, num(m)?, "0"),
        (Some(h), Some(m), Some(sec), None) => (num(h)?, num(m)?, sec),
        _ => return Err(bad()),
    };
    let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
    let sec = num(whole)?;
    let ms = if frac.is_empty() {
        0
    } else {
        let f = format!("{frac:0<3}");
        num(&f[..3])?
    };
    // The month's own length (February 30th is no day a call was made on).
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = match mo {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=12).contains(&mo) || !(1..=month_days).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    u64::try_from(secs * 1000 + ms).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_past_the_months_end_are_refused() {
        assert!(parse_time("2026-02-30T10:00:00+08:00").is_err());
        assert!(parse_time("2026-04-31T10:00:00Z").is_err());
        assert!(parse_time("2026-02-29T10:00:00Z").is_err());
        assert!(parse_time("2028-02-29T10:00:00Z").is_ok());
        assert!(parse_time("2000-02-29T10:00:00Z").is_ok());
        assert!(parse_time("2100-02-29T10:00:00Z").is_err());
        assert!(parse_time("2026-12-31T23:59:59Z").is_ok());
    }

    #[test]
    fn written_and_read_back() {
        for ms in [0, 1_764_468_000_123, 1_795_998_600_000, 951_782_400_000] {
            assert_eq!(parse_time(&rfc3339(ms)), Ok(ms), "{}", rfc3339(ms));
        }
        assert_eq!(rfc3339(1_764_468_000_000), "2025-11-30T02:00:00.000Z");
        let utc = 1_764_468_000_000;
        for s in [
            "1764468000",
            "2025-11-30T02:00:00Z",
            "2025-11-30T02:00Z",
            "2025-11-30 02:00:00",
            "2025-11-30t02:00:00.000z",
            "2025-11-30T10:00:00+08:00",
            "2025-11-30T10:00+0800",
            "2025-11-29T21:00:00-05:00",
        ] {
            assert_eq!(parse_time(s), Ok(utc), "{s}");
        }
        assert_eq!(parse_time("2025-11-30T02:00:00.5Z"), Ok(utc + 500));
        // Unix seconds with a fraction, as captures and records give them (QA 192 F10).
        let unix = utc / 1000;
        assert_eq!(parse_time(&format!("{unix}.9")), Ok(utc + 900));
        assert_eq!(parse_time(&format!("{unix}.123456")), Ok(utc + 123));
        assert_eq!(parse_time(&unix.to_string()), Ok(utc));
        for bad in [
            format!("{unix}."),
            format!(".{unix}"),
            format!("{unix}.5.5"),
            format!("{unix}.x"),
        ] {
            assert!(parse_time(&bad).is_err(), "{bad}");
        }
        // Leap day, and the first of March after it.
        assert_eq!(
            parse_time("2024-03-01T00:00:00Z").unwrap()
                - parse_time("2024-02-29T00:00:00Z").unwrap(),
            86_400_000
        );
    }

    #[test]
    fn refused_with_the_form_expected() {
        for s in [
            "",
            "yesterday",
            "2025-11-30",
            "2025-13-01T00:00Z",
            "2025-11-30T24:00Z",
            "2025-11-30T10:00+8",
            "25-11-30T10:00Z",
            "2025-11-30T10:00:00+08:00:00",
            "1969-12-31T23:59:59Z",
            "99999999999999999999",
            // Not ASCII: refused, not cut inside a character.
            "2025-11-30T10:00:00.éé",
            "2025-11-30T10:00+aé1",
            "２０２５-11-30T10:00Z",
        ] {
            let e = parse_time(s).unwrap_err();
            assert!(e.contains("expected Unix seconds"), "{s}: {e}");
        }
    }
}
