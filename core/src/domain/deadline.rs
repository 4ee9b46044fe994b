//! Extending the deadline of a privacy request (GDPR Art. 12(3)).
//!
//! A request must be answered within one month of receipt ([`super::due_date`]). "That period
//! may be extended by two further months where necessary, taking into account the complexity
//! and number of the requests"; the subject must be told of the extension, with the reasons,
//! within one month of receipt. Lethe therefore allows one extension, of one or two months,
//! with a mandatory reason the subject sees, decided before the original due date.

use chrono::Months;

use super::{ParseError, RequestStatus, Timestamp};

/// How many further months a deadline is extended by: 1 or 2 (GDPR Art. 12(3)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionMonths(u32);

impl ExtensionMonths {
    /// The most further months Art. 12(3) allows.
    pub const MAX: u32 = 2;

    /// Validates a number of months.
    ///
    /// # Errors
    /// [`ParseError`] (field `months`) outside `1..=2`.
    pub fn parse(months: i64) -> Result<Self, ParseError> {
        match u32::try_from(months) {
            Ok(m) if (1..=Self::MAX).contains(&m) => Ok(Self(m)),
            _ => Err(ParseError {
                field: "months",
                reason: format!(
                    "a deadline is extended by 1 or 2 further months (GDPR Art. 12(3)), not {months}"
                ),
            }),
        }
    }

    /// The number of months, 1 or 2.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// The reason given for an extension: shown to the subject (GDPR Art. 12(3)) and kept in the
/// register of requests. 1–2000 characters after trimming surrounding whitespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionReason(String);

impl ExtensionReason {
    /// The longest reason accepted, in characters.
    pub const MAX_CHARS: usize = 2000;

    /// Validates a reason, trimming surrounding whitespace.
    ///
    /// # Errors
    /// [`ParseError`] (field `reason`) when blank or longer than [`Self::MAX_CHARS`].
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        let value = value.trim();
        if value.is_empty() {
            return Err(ParseError {
                field: "reason",
                reason: "an extension needs a reason; the subject is told it (GDPR Art. 12(3))"
                    .into(),
            });
        }
        if value.chars().count() > Self::MAX_CHARS {
            return Err(ParseError {
                field: "reason",
                reason: format!("must be at most {} characters", Self::MAX_CHARS),
            });
        }
        Ok(Self(value.to_string()))
    }

    /// The reason.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The due date of a request received at `received` once its deadline is extended by
/// `months`: received + (1 + `months`) calendar months, at the same time of day.
///
/// Counting from receipt rather than from the original due date keeps month ends right: a
/// request received on 31 January is first due on 28 February, and extended by two months on
/// 30 April (not 28 April); by one month on 31 March.
pub fn extended_due_date(received: Timestamp, months: ExtensionMonths) -> Timestamp {
    received
        .checked_add_months(Months::new(1 + months.get()))
        .expect("three months after a real date is representable")
}

/// Why a deadline cannot be extended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionRefusal {
    /// The request is completed, rejected or failed: there is no deadline left to extend.
    #[error("the request is {0}; the deadline of a finished request cannot be extended")]
    Final(RequestStatus),
    /// The deadline was extended before; Art. 12(3) allows one extension.
    #[error(
        "the deadline was already extended at {at}; GDPR Art. 12(3) allows one extension of at most two months"
    )]
    AlreadyExtended {
        /// When it was extended.
        at: Timestamp,
    },
    /// The first month after receipt is over: the subject had to be told of an extension
    /// within it (Art. 12(3)).
    #[error(
        "the first month after receipt ended at {due_at}; an extension must be decided and the subject told within it (GDPR Art. 12(3))"
    )]
    TooLate {
        /// The original due date, now past.
        due_at: Timestamp,
    },
}

/// Whether a request in `status`, extended at `extended_at` (if ever) and due at `due_at`, may
/// have its deadline extended at `now`.
///
/// # Errors
/// The first rule broken, checked in this order: [`ExtensionRefusal::Final`],
/// [`ExtensionRefusal::AlreadyExtended`], [`ExtensionRefusal::TooLate`] (at or after `due_at`).
pub fn check_extension(
    status: RequestStatus,
    extended_at: Option<Timestamp>,
    due_at: Timestamp,
    now: Timestamp,
) -> Result<(), ExtensionRefusal> {
    if status.is_final() {
        return Err(ExtensionRefusal::Final(status));
    }
    if let Some(at) = extended_at {
        return Err(ExtensionRefusal::AlreadyExtended { at });
    }
    if now >= due_at {
        return Err(ExtensionRefusal::TooLate { due_at });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::due_date;
    use chrono::{TimeZone, Utc};

    fn at(y: i32, m: u32, d: u32) -> Timestamp {
        Utc.with_ymd_and_hms(y, m, d, 9, 30, 0).unwrap()
    }

    fn months(n: i64) -> ExtensionMonths {
        ExtensionMonths::parse(n).unwrap()
    }

    #[test]
    fn only_one_or_two_further_months_are_allowed() {
        assert_eq!(months(1).get(), 1);
        assert_eq!(months(2).get(), 2);
        for bad in [0, 3, -1, 12, i64::MAX, i64::MIN] {
            let err = ExtensionMonths::parse(bad).unwrap_err();
            assert_eq!(err.field, "months");
        }
    }

    #[test]
    fn a_reason_is_required_and_trimmed() {
        assert_eq!(
            ExtensionReason::parse("  many datasets to search  ")
                .unwrap()
                .as_str(),
            "many datasets to search"
        );
        assert!(ExtensionReason::parse("").is_err());
        assert!(ExtensionReason::parse(" \n\t ").is_err());
        assert!(ExtensionReason::parse(&"x".repeat(ExtensionReason::MAX_CHARS)).is_ok());
        assert!(ExtensionReason::parse(&"x".repeat(ExtensionReason::MAX_CHARS + 1)).is_err());
    }

    #[test]
    fn an_extension_counts_calendar_months_from_receipt() {
        assert_eq!(extended_due_date(at(2025, 1, 7), months(1)), at(2025, 3, 7));
        assert_eq!(extended_due_date(at(2025, 1, 7), months(2)), at(2025, 4, 7));
        assert_eq!(
            extended_due_date(at(2025, 11, 15), months(2)),
            at(2026, 2, 15),
            "across the year end"
        );
    }

    #[test]
    fn month_ends_are_counted_from_receipt_not_from_the_clamped_due_date() {
        // 31 January: due 28 February; the extension keeps the 31st where the month has one.
        let received = at(2025, 1, 31);
        assert_eq!(due_date(received), at(2025, 2, 28));
        assert_eq!(extended_due_date(received, months(1)), at(2025, 3, 31));
        assert_eq!(extended_due_date(received, months(2)), at(2025, 4, 30));
        // In a leap year.
        let received = at(2024, 1, 31);
        assert_eq!(due_date(received), at(2024, 2, 29));
        assert_eq!(extended_due_date(received, months(1)), at(2024, 3, 31));
        assert_eq!(extended_due_date(received, months(2)), at(2024, 4, 30));
    }

    #[test]
    fn received_on_a_leap_day() {
        let received = at(2024, 2, 29);
        assert_eq!(due_date(received), at(2024, 3, 29));
        assert_eq!(extended_due_date(received, months(1)), at(2024, 4, 29));
        assert_eq!(extended_due_date(received, months(2)), at(2024, 5, 29));
        // Received on 29 December 2023: due 29 January, extended into the leap February.
        let received = at(2023, 12, 29);
        assert_eq!(extended_due_date(received, months(1)), at(2024, 2, 29));
        assert_eq!(extended_due_date(received, months(2)), at(2024, 3, 29));
        // The same day a year later: February has 28 days.
        let received = at(2024, 12, 29);
        assert_eq!(extended_due_date(received, months(1)), at(2025, 2, 28));
    }

    #[test]
    fn received_on_30_november() {
        let received = at(2025, 11, 30);
        assert_eq!(due_date(received), at(2025, 12, 30));
        assert_eq!(extended_due_date(received, months(1)), at(2026, 1, 30));
        assert_eq!(
            extended_due_date(received, months(2)),
            at(2026, 2, 28),
            "February clamps"
        );
        assert_eq!(
            extended_due_date(at(2023, 11, 30), months(2)),
            at(2024, 2, 29)
        );
    }

    #[test]
    fn an_extension_is_allowed_once_within_the_first_month_of_an_open_request() {
        let received = at(2025, 1, 31);
        let due = due_date(received);
        let day_before = at(2025, 2, 27);
        assert_eq!(
            check_extension(RequestStatus::Received, None, due, day_before),
            Ok(())
        );
        assert_eq!(
            check_extension(RequestStatus::Running, None, due, day_before),
            Ok(())
        );
        assert_eq!(
            check_extension(RequestStatus::Received, None, due, due),
            Err(ExtensionRefusal::TooLate { due_at: due }),
            "the due date itself is too late"
        );
        assert_eq!(
            check_extension(
                RequestStatus::Approved,
                Some(day_before),
                at(2025, 4, 30),
                at(2025, 2, 28)
            ),
            Err(ExtensionRefusal::AlreadyExtended { at: day_before })
        );
        for done in [
            RequestStatus::Completed,
            RequestStatus::Rejected,
            RequestStatus::Failed,
        ] {
            assert_eq!(
                check_extension(done, None, due, day_before),
                Err(ExtensionRefusal::Final(done))
            );
        }
    }
}
