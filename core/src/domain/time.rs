//! Time in the database and the one-month deadline of GDPR Art. 12(3).

use chrono::{DateTime, Months, SecondsFormat, Utc};

/// A UTC instant with microsecond precision, stored as fixed-width RFC 3339 text
/// (`2025-01-07T10:00:00.000000Z`) so that text order equals time order in every database.
pub type Timestamp = DateTime<Utc>;

/// Formats an instant the way the store keeps it.
pub fn to_db(ts: Timestamp) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses an instant written by [`to_db`] (any RFC 3339 text is accepted).
///
/// # Errors
/// The chrono parse error when the text is not RFC 3339.
pub fn from_db(text: &str) -> Result<Timestamp, chrono::ParseError> {
    Ok(DateTime::parse_from_rfc3339(text)?.with_timezone(&Utc))
}

/// The date by which a request received at `received` must be answered: one calendar month
/// later (GDPR Art. 12(3)).
///
/// When the next month is shorter, the deadline is that month's last day at the same time of
/// day: a request received on 31 January is due on 28 (or 29) February; 31 March → 30 April.
pub fn due_date(received: Timestamp) -> Timestamp {
    received
        .checked_add_months(Months::new(1))
        .expect("one month after a real date is representable")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32) -> Timestamp {
        Utc.with_ymd_and_hms(y, m, d, 9, 30, 0).unwrap()
    }

    #[test]
    fn due_date_is_one_calendar_month_later() {
        assert_eq!(due_date(at(2025, 1, 7)), at(2025, 2, 7));
        assert_eq!(due_date(at(2025, 12, 15)), at(2026, 1, 15));
    }

    #[test]
    fn month_end_clamps_to_the_last_day_of_the_shorter_month() {
        assert_eq!(due_date(at(2025, 1, 31)), at(2025, 2, 28));
        assert_eq!(due_date(at(2024, 1, 31)), at(2024, 2, 29), "leap year");
        assert_eq!(due_date(at(2025, 3, 31)), at(2025, 4, 30));
        assert_eq!(due_date(at(2025, 1, 28)), at(2025, 2, 28));
    }

    #[test]
    fn db_format_round_trips_and_sorts_as_text() {
        let a = Utc.with_ymd_and_hms(2025, 1, 7, 10, 0, 0).unwrap();
        let b = a + chrono::Duration::microseconds(1);
        assert_eq!(from_db(&to_db(a)).unwrap(), a);
        assert_eq!(to_db(a), "2025-01-07T10:00:00.000000Z");
        assert!(to_db(a) < to_db(b));
    }
}
