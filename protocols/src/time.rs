//! RFC 3339 timestamps (UTC, millisecond precision) without a calendar dependency.

use std::time::{SystemTime, UNIX_EPOCH};

/// Formats `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ`. Times before 1970 print as the epoch.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = civil_from_days(days as i64);
    if !(0..=9999).contains(&y) {
        return by_format(d);
    }
    // Digit by digit into a fixed buffer: every journal commit and every action writes
    // times, and a format string costs ten times as much.
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y as u64);
    put(5, 2, u64::from(m));
    put(8, 2, u64::from(dd));
    put(11, 2, rem / 3600);
    put(14, 2, (rem % 3600) / 60);
    put(17, 2, rem % 60);
    put(20, 3, u64::from(d.subsec_millis()));
    String::from_utf8(b.to_vec()).expect("digits and separators are ASCII")
}

/// [`rfc3339`]'s text for `d` since the epoch through a format string: what it writes for
/// a year beyond four digits, and what a test holds its digit-by-digit writing to.
fn by_format(d: std::time::Duration) -> String {
    let (days, rem) = (d.as_secs() / 86_400, d.as_secs() % 86_400);
    let (y, m, dd) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Reads an RFC 3339 UTC time (`YYYY-MM-DDTHH:MM:SS[.fraction]Z`) into the form
/// [`rfc3339`] writes, the fraction cut to milliseconds, so that times compare as text.
/// Other offsets than `Z` are refused rather than converted.
pub fn parse_rfc3339(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(r)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let shape = "an RFC 3339 UTC time like 2026-11-25T10:00:00Z";
    let fields = (|| {
        let y = digits(0..4)?;
        let sep = |i: usize, c: u8| (b.get(i) == Some(&c)).then_some(());
        sep(4, b'-')?;
        let mo = digits(5..7)?;
        sep(7, b'-')?;
        let d = digits(8..10)?;
        sep(10, b'T')?;
        let h = digits(11..13)?;
        sep(13, b':')?;
        let mi = digits(14..16)?;
        sep(16, b':')?;
        let sec = digits(17..19)?;
        let mut ms = 0;
        let mut at = 19;
        if b.get(19) == Some(&b'.') {
            let n = b[20..].iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 || n > 9 {
                return None;
            }
            let frac = digits(20..20 + n.min(3))?;
            ms = frac * 10u32.pow(3 - n.min(3) as u32);
            at = 20 + n;
        }
        (b.get(at..) == Some(b"Z")).then_some((y, mo, d, h, mi, sec, ms))
    })();
    let Some((y, mo, d, h, mi, sec, ms)) = fields else {
        return Err(format!("{s:?} is not {shape}"));
    };
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo) || d == 0 || d > month_days[mo as usize - 1] {
        return Err(format!("{s:?} has no such date"));
    }
    if h > 23 || mi > 59 || sec > 59 {
        return Err(format!("{s:?} has no such time of day"));
    }
    Ok(format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{sec:02}.{ms:03}Z"
    ))
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(951_782_400_123); // 2000-02-29
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.123Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_305_600 + 3_723); // 2026-11-22
        assert_eq!(rfc3339(t), "2026-11-22T01:02:03.000Z");
    }

    /// The digit-by-digit writer writes what the format string writes, at random instants
    /// over the four-digit years and a little past them.
    #[test]
    fn writes_what_the_format_string_writes() {
        let by_format = |t: SystemTime| by_format(t.duration_since(UNIX_EPOCH).unwrap());
        let mut g = quickcheck::Gen::new(100);
        for _ in 0..20_000 {
            // Up to the year 10000 and a little past it.
            let ms = <u64 as quickcheck::Arbitrary>::arbitrary(&mut g) % 253_500_000_000_000;
            let t = UNIX_EPOCH + Duration::from_millis(ms);
            assert_eq!(rfc3339(t), by_format(t), "{ms}");
        }
        let last = UNIX_EPOCH + Duration::from_millis(253_402_300_799_999);
        assert_eq!(rfc3339(last), "9999-12-31T23:59:59.999Z");
        assert_eq!(
            rfc3339(last + Duration::from_millis(1)),
            by_format(last + Duration::from_millis(1))
        );
    }

    #[test]
    fn parses_utc_times_into_the_written_form() {
        for (given, want) in [
            ("2026-11-25T10:00:00Z", "2026-11-25T10:00:00.000Z"),
            ("2026-11-25T10:00:00.5Z", "2026-11-25T10:00:00.500Z"),
            ("2026-11-25T10:00:00.123456789Z", "2026-11-25T10:00:00.123Z"),
            ("2024-02-29T23:59:59.999Z", "2024-02-29T23:59:59.999Z"),
        ] {
            assert_eq!(parse_rfc3339(given).as_deref(), Ok(want), "{given}");
        }
        for bad in [
            "",
            "2026-11-25",
            "2026-11-25T10:00:00",
            "2026-11-25T10:00:00+01:00",
            "2026-11-25 10:00:00Z",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T10:00:00.Z",
            "2026-11-25T10:00:00.1234567890Z",
            "2026-11-25T10:00:00ZZ",
            "２026-11-25T10:00:00Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad:?} accepted");
        }
        let now = rfc3339(std::time::SystemTime::now());
        assert_eq!(parse_rfc3339(&now).as_deref(), Ok(now.as_str()));
    }
}
