//! Data residency: jurisdictions of data subjects and storage regions of rows (GDPR Chapter V,
//! transfers of personal data to third countries).
//!
//! A subject has a [`Jurisdiction`] (e.g. `EU`, `US`, `BR`); a residency policy maps a
//! jurisdiction to the [`Region`]s where its subjects' rows may be stored; a dataset stores each
//! row in one region (see `DatasetSchema::region_roots`).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ParseError;

/// The legal jurisdiction of a data subject, e.g. `EU`, `US`, `BR`, `UK`.
///
/// 2–16 characters: upper-case ASCII letters, digits, `-` and `_`, starting with a letter.
/// Lower-case input is upper-cased (`eu` → `EU`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Jurisdiction(String);

impl Jurisdiction {
    /// Validates (and upper-cases) a jurisdiction code.
    ///
    /// # Errors
    /// [`ParseError`] (`jurisdiction`) when shorter than 2 or longer than 16 characters, not
    /// starting with a letter, or holding a character other than letters, digits, `-`, `_`.
    pub fn parse(value: impl AsRef<str>) -> Result<Self, ParseError> {
        let value = value.as_ref().trim().to_ascii_uppercase();
        let err = |reason: &str| ParseError {
            field: "jurisdiction",
            reason: reason.to_string(),
        };
        if !(2..=16).contains(&value.len()) {
            return Err(err("must be 2 to 16 characters, e.g. EU, US, BR"));
        }
        if !value.starts_with(|c: char| c.is_ascii_uppercase()) {
            return Err(err("must start with a letter"));
        }
        if !value
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(err("may hold only letters, digits, - and _"));
        }
        Ok(Self(value))
    }

    /// The code, upper-case.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Jurisdiction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Jurisdiction {
    type Error = ParseError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<Jurisdiction> for String {
    fn from(value: Jurisdiction) -> Self {
        value.0
    }
}

/// A storage region, e.g. `EU`, `US`, `APAC`: the value of a dataset's region column, the
/// `region=` partition folder, and the key of its per-region roots.
///
/// 1–32 characters: ASCII letters, digits, `-` and `_`, not starting with `_` (so that it is a
/// visible Hive folder name). Case is kept: `EU` and `eu` are different regions.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Region(String);

impl Region {
    /// Validates a region name.
    ///
    /// # Errors
    /// [`ParseError`] (`region`) when empty, longer than 32 characters, starting with `_`, or
    /// holding a character other than letters, digits, `-`, `_`.
    pub fn parse(value: impl AsRef<str>) -> Result<Self, ParseError> {
        let value = value.as_ref();
        let err = |reason: &str| ParseError {
            field: "region",
            reason: reason.to_string(),
        };
        if value.is_empty() || value.len() > 32 {
            return Err(err("must be 1 to 32 characters"));
        }
        if value.starts_with('_') {
            return Err(err("must not start with _ (a hidden folder)"));
        }
        if !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(err("may hold only letters, digits, - and _"));
        }
        Ok(Self(value.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Region {
    type Error = ParseError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<Region> for String {
    fn from(value: Region) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jurisdictions_are_upper_cased_codes() {
        assert_eq!(Jurisdiction::parse("eu").unwrap().as_str(), "EU");
        assert_eq!(Jurisdiction::parse(" US ").unwrap().as_str(), "US");
        assert_eq!(Jurisdiction::parse("US-CA").unwrap().as_str(), "US-CA");
        for bad in ["", "E", "1EU", "E U", "EU/1", "ABCDEFGHIJKLMNOPQ"] {
            assert!(Jurisdiction::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn regions_are_visible_folder_names() {
        assert_eq!(Region::parse("eu-west-1").unwrap().as_str(), "eu-west-1");
        for bad in ["", "_EU", "EU/US", "E=U", ".EU", "E U", &"x".repeat(33)] {
            assert!(Region::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
