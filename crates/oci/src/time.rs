//! Wharf's one calendar: Unix seconds to a UTC civil date and time, formatted as RFC 3339
//! (`2026-12-07T12:40:59Z`), and the Gregorian month lengths that date checks use. No date
//! library and no time zones: everything Wharf writes (token `issued_at`, SBOM timestamps,
//! listings, ignore rule expiry) is UTC with whole seconds.
//!
//! The conversion is Howard Hinnant's `civil_from_days` over the proleptic Gregorian calendar,
//! exact for any `u64` of seconds (the year grows past four digits after 9999).

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC date and time with whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct UtcDateTime {
    /// The year (1970 or later).
    pub year: i64,
    /// The month, 1 to 12.
    pub month: u8,
    /// The day of the month, 1 to 31.
    pub day: u8,
    /// The hour, 0 to 23.
    pub hour: u8,
    /// The minute, 0 to 59.
    pub minute: u8,
    /// The second, 0 to 59 (Unix time has no leap seconds).
    pub second: u8,
}

impl UtcDateTime {
    /// The date and time `secs` seconds after 1970-01-01T00:00:00Z.
    pub fn from_unix(secs: u64) -> Self {
        let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
        // civil_from_days: shift to eras of 400 years starting on 0000-03-01, so that the
        // leap day is the last day of a year.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097); // day of era, 0..146_096
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year
        let mp = (5 * doy + 2) / 153; // March-based month, 0..11
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        UtcDateTime {
            year: yoe + era * 400 + i64::from(month <= 2),
            month: month as u8,
            day: day as u8,
            hour: (rem / 3600) as u8,
            minute: (rem % 3600 / 60) as u8,
            second: (rem % 60) as u8,
        }
    }

    /// The date and time of `t`, rounded down to the second; a time before 1970 is the epoch.
    pub fn from_system(t: SystemTime) -> Self {
        Self::from_unix(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
    }

    /// RFC 3339 in UTC with seconds: `2026-12-07T12:40:59Z`.
    pub fn rfc3339(&self) -> String {
        format!("{}T{}Z", self.date(), self.clock())
    }

    /// The date, `YYYY-MM-DD`.
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// The time of day, `HH:MM:SS`.
    pub fn clock(&self) -> String {
        format!("{:02}:{:02}:{:02}", self.hour, self.minute, self.second)
    }
}

/// Unix seconds as RFC 3339 in UTC (`2026-12-07T12:40:59Z`).
pub fn rfc3339(secs: u64) -> String {
    UtcDateTime::from_unix(secs).rfc3339()
}

/// The number of days of `month` (1 to 12) in `year` of the Gregorian calendar, or `None` for
/// a month out of range.
pub fn days_in_month(year: i64, month: u8) -> Option<u8> {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    Some(match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Known instants (checked against Python's `datetime.fromtimestamp(s, timezone.utc)`).
    #[test]
    fn known_instants() {
        for (secs, want) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"), // a leap day of a year divisible by 400
            (951_868_799, "2000-02-29T23:59:59Z"),
            (1_709_164_800, "2024-02-29T00:00:00Z"),
            (1_796_647_259, "2026-12-07T12:40:59Z"),
            (2_147_483_648, "2038-01-19T03:14:08Z"), // one past i32's last second
            (4_294_967_296, "2106-02-07T06:28:16Z"), // one past u32's last second
            (4_107_542_399, "2100-02-28T23:59:59Z"), // 2100 is not a leap year
            (4_107_542_400, "2100-03-01T00:00:00Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
        ] {
            assert_eq!(rfc3339(secs), want, "{secs}");
        }
        let t = UtcDateTime::from_unix(1_796_647_259);
        assert_eq!(
            (t.date(), t.clock()),
            ("2026-12-07".into(), "12:40:59".into())
        );
        assert_eq!(
            UtcDateTime::from_system(UNIX_EPOCH + Duration::from_millis(951_782_400_999)),
            UtcDateTime::from_unix(951_782_400)
        );
        assert_eq!(
            UtcDateTime::from_system(UNIX_EPOCH - Duration::from_secs(5)),
            UtcDateTime::from_unix(0)
        );
        // The largest input does not overflow.
        assert!(rfc3339(u64::MAX).ends_with('Z'));
    }

    #[test]
    fn month_lengths() {
        assert_eq!(days_in_month(2000, 2), Some(29));
        assert_eq!(days_in_month(2100, 2), Some(28));
        assert_eq!(days_in_month(2024, 2), Some(29));
        assert_eq!(days_in_month(2023, 2), Some(28));
        assert_eq!(days_in_month(2023, 4), Some(30));
        assert_eq!(days_in_month(2023, 12), Some(31));
        assert_eq!(days_in_month(2023, 0), None);
        assert_eq!(days_in_month(2023, 13), None);
    }

    proptest::proptest! {
        /// Across every midnight of two 400-year eras, the second before is 23:59:59 of the
        /// previous day and the day advances by one, never past its month's length.
        #[test]
        fn days_follow_each_other(day in 1u64..2 * 146_097) {
            let (a, b) = (UtcDateTime::from_unix(day * 86_400 - 1), UtcDateTime::from_unix(day * 86_400));
            proptest::prop_assert_eq!((a.clock(), b.clock()), ("23:59:59".into(), "00:00:00".into()));
            proptest::prop_assert!(a < b);
            proptest::prop_assert!(b.day <= days_in_month(b.year, b.month).unwrap());
            if a.day == days_in_month(a.year, a.month).unwrap() {
                let want = if a.month == 12 { (a.year + 1, 1) } else { (a.year, a.month + 1) };
                proptest::prop_assert_eq!((b.year, b.month, b.day), (want.0, want.1, 1));
            } else {
                proptest::prop_assert_eq!((b.year, b.month, b.day), (a.year, a.month, a.day + 1));
            }
        }
    }
}
