//! Time as Hookline stores and shows it: Unix milliseconds in the database, RFC 3339 with
//! milliseconds and `Z` in every API answer and event.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    let now = OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}

/// `2026-03-21T14:30:00.000Z` for a stored millisecond timestamp.
/// Microseconds since the Unix epoch (rate-limit slots are finer than a millisecond).
pub fn now_us() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000) as i64
}

pub fn rfc3339_ms(ms: i64) -> String {
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    at.format(&format).expect("a UTC timestamp always formats")
}

/// Parses an RFC 3339 timestamp (any offset) into Unix milliseconds.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    Some((at.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_milliseconds_and_z() {
        assert_eq!(rfc3339_ms(1_774_103_400_000), "2026-03-21T14:30:00.000Z");
        assert_eq!(rfc3339_ms(1_774_103_400_007), "2026-03-21T14:30:00.007Z");
    }

    #[test]
    fn parses_offsets_to_utc_millis() {
        assert_eq!(
            parse_rfc3339_ms("2026-03-21T14:30:00.000Z"),
            Some(1_774_103_400_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-03-21T16:30:00+02:00"),
            Some(1_774_103_400_000)
        );
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }
}
