//! Validated identifiers: subject ids, e-mail addresses, dataset names and roles.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A value that failed validation at the edge; the message says which rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct ParseError {
    /// Name of the field, e.g. `subject_id`.
    pub field: &'static str,
    /// What is wrong with it, fit to show to the caller.
    pub reason: String,
}

impl ParseError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// The identifier of a data subject as it appears in the lake's subject column (e.g. `user_id`).
///
/// 1–256 characters, no control characters, no leading or trailing whitespace. The value is
/// personal data: it must never be written to a log line or the audit log (use a pseudonym).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SubjectId(String);

/// The prefix of the stand-in that replaces an erased subject's id in Lethe's own database
/// once their erasure completed (`pseudonym:<audit pseudonym>`): such a subject is erased by
/// construction.
pub const ERASED_SUBJECT_PREFIX: &str = "pseudonym:";

impl SubjectId {
    /// Whether this is the stand-in of an erased subject ([`ERASED_SUBJECT_PREFIX`]).
    pub fn is_erased_stand_in(&self) -> bool {
        self.0.starts_with(ERASED_SUBJECT_PREFIX)
    }

    /// Validates a subject id.
    ///
    /// # Errors
    /// [`ParseError`] when empty, longer than 256 characters, padded with whitespace or holding
    /// control characters.
    pub fn parse(value: impl Into<String>) -> Result<Self, ParseError> {
        let value = value.into();
        if value.is_empty() {
            return Err(ParseError::new("subject_id", "must not be empty"));
        }
        if value.chars().count() > 256 {
            return Err(ParseError::new(
                "subject_id",
                "must be at most 256 characters",
            ));
        }
        if value.trim() != value {
            return Err(ParseError::new(
                "subject_id",
                "must not start or end with whitespace",
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(ParseError::new(
                "subject_id",
                "must not contain control characters",
            ));
        }
        Ok(Self(value))
    }

    /// The raw id. Personal data: do not log it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SubjectId {
    /// Redacted: a subject id is personal data and `Debug` output ends up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectId(<redacted>)")
    }
}

impl TryFrom<String> for SubjectId {
    type Error = ParseError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<SubjectId> for String {
    fn from(value: SubjectId) -> Self {
        value.0
    }
}

/// An e-mail address used as an account login, lower-cased.
///
/// Validation is deliberately shallow (one `@`, a dot in the domain, ≤ 254 octets per RFC 5321
/// §4.5.3.1.3): the address is a login name, not a delivery target.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Validates and lower-cases an e-mail address.
    ///
    /// # Errors
    /// [`ParseError`] when the shape is not `local@domain.tld` or it is longer than 254 bytes.
    pub fn parse(value: impl Into<String>) -> Result<Self, ParseError> {
        let value = value.into().trim().to_lowercase();
        if value.len() > 254 {
            return Err(ParseError::new("email", "must be at most 254 characters"));
        }
        let Some((local, domain)) = value.split_once('@') else {
            return Err(ParseError::new("email", "must contain '@'"));
        };
        if local.is_empty()
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || value.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ParseError::new("email", "is not a valid address"));
        }
        Ok(Self(value))
    }

    /// The address, lower-cased.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Email(<redacted>)")
    }
}

impl TryFrom<String> for Email {
    type Error = ParseError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<Email> for String {
    fn from(value: Email) -> Self {
        value.0
    }
}

/// A dataset name: 1–64 characters of `[a-z0-9_-]`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DatasetName(String);

impl DatasetName {
    /// Validates a dataset name.
    ///
    /// # Errors
    /// [`ParseError`] when empty, too long, or using characters outside `[a-z0-9_-]`.
    pub fn parse(value: impl Into<String>) -> Result<Self, ParseError> {
        let value = value.into();
        let mut chars = value.chars();
        match chars.next() {
            None => return Err(ParseError::new("name", "must not be empty")),
            Some(c) if !c.is_ascii_lowercase() => {
                return Err(ParseError::new(
                    "name",
                    "must start with a lower-case letter",
                ));
            }
            _ => {}
        }
        if value.len() > 64 {
            return Err(ParseError::new("name", "must be at most 64 characters"));
        }
        if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-') {
            return Err(ParseError::new(
                "name",
                "may only contain a-z, 0-9, '_' and '-'",
            ));
        }
        Ok(Self(value))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DatasetName {
    type Error = ParseError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<DatasetName> for String {
    fn from(value: DatasetName) -> Self {
        value.0
    }
}

/// The role of a caller; every endpoint checks it. Accounts are subjects, admins or
/// auditors; [`Role::Producer`] belongs to API tokens only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A data subject: files and follows their own privacy requests.
    Subject,
    /// Privacy operations: datasets, approvals, accounts.
    Admin,
    /// Reads and exports the audit log and the register of requests.
    Auditor,
    /// A pipeline writing rows into Lethe-managed datasets (ingest). Held by API tokens only,
    /// never by an account.
    Producer,
}

impl Role {
    /// The stable lower-case name used in tokens and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Subject => "subject",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Producer => "producer",
        }
    }

    /// Whether an account may hold this role (every role but [`Role::Producer`], which API
    /// tokens hold).
    pub fn is_account_role(self) -> bool {
        !matches!(self, Role::Producer)
    }

    /// Parses `subject`, `admin`, `auditor` or `producer`.
    ///
    /// # Errors
    /// [`ParseError`] for any other value.
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        match value {
            "subject" => Ok(Role::Subject),
            "admin" => Ok(Role::Admin),
            "auditor" => Ok(Role::Auditor),
            "producer" => Ok(Role::Producer),
            other => Err(ParseError::new(
                "role",
                format!("unknown role '{other}' (expected subject, admin, auditor or producer)"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_ids_are_validated() {
        assert!(SubjectId::parse("u-123").is_ok());
        assert!(SubjectId::parse("").is_err());
        assert!(SubjectId::parse(" u-1").is_err());
        assert!(SubjectId::parse(r"a\b").is_ok(), "a backslash is fine");
        assert!(
            SubjectId::parse("a\nb").is_err(),
            "a newline is a control character"
        );
        assert!(SubjectId::parse("a\u{7}b").is_err());
        assert!(SubjectId::parse("x".repeat(257)).is_err());
        assert!(SubjectId::parse("x".repeat(256)).is_ok());
    }

    #[test]
    fn subject_id_debug_does_not_leak_the_value() {
        let id = SubjectId::parse("alice-42").unwrap();
        assert!(!format!("{id:?}").contains("alice"));
    }

    #[test]
    fn emails_are_lowercased_and_checked() {
        assert_eq!(
            Email::parse(" Ana@Example.COM ").unwrap().as_str(),
            "ana@example.com"
        );
        for bad in [
            "",
            "ana",
            "ana@",
            "@example.com",
            "ana@example",
            "a b@example.com",
            "a@b@c.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn dataset_names_are_checked() {
        assert!(DatasetName::parse("running_events").is_ok());
        assert!(DatasetName::parse("Running").is_err());
        assert!(DatasetName::parse("1abc").is_err());
        assert!(DatasetName::parse("a/b").is_err());
    }

    #[test]
    fn roles_round_trip() {
        for role in [Role::Subject, Role::Admin, Role::Auditor, Role::Producer] {
            assert_eq!(Role::parse(role.as_str()).unwrap(), role);
        }
        assert!(Role::parse("root").is_err());
        assert!(!Role::Producer.is_account_role());
        assert!(Role::Admin.is_account_role());
    }
}
