//! UTC timestamps in ISO 8601, without a calendar dependency.

/// Formats microseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn iso8601_utc(unix_us: u64) -> String {
    let seconds = unix_us / 1_000_000;
    let micros = unix_us % 1_000_000;
    let days = seconds / 86_400;
    let second_of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month,
/// day), by Howard Hinnant's `civil_from_days` algorithm.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::iso8601_utc;

    #[test]
    fn epoch_formats() {
        assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn leap_day_formats() {
        // 2024-02-29T12:34:56.789012Z
        assert_eq!(iso8601_utc(1_709_210_096_789_012), "2024-02-29T12:34:56.789012Z");
    }

    #[test]
    fn end_of_year_formats() {
        assert_eq!(iso8601_utc(1_704_067_199_000_000), "2023-12-31T23:59:59.000000Z");
    }
}
