//! The residency policies in force, and subjects' jurisdictions looked up by keyed reference.

use std::collections::HashMap;

use super::{Store, StoreResult};
use crate::keyring::Keyring;

/// The residency policies in force: jurisdiction → regions where its subjects' rows may be
/// stored, in order of preference (GDPR Chapter V).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyBook {
    regions: HashMap<String, Vec<String>>,
}

impl PolicyBook {
    /// A book of `(jurisdiction, regions)` policies.
    pub fn new(policies: impl IntoIterator<Item = (String, Vec<String>)>) -> Self {
        Self {
            regions: policies.into_iter().collect(),
        }
    }

    /// The policies stored in `store`.
    ///
    /// # Errors
    /// Store errors.
    pub async fn load(store: &Store) -> StoreResult<Self> {
        Ok(Self::new(
            store
                .residency_policies()
                .await?
                .into_iter()
                .map(|p| (p.jurisdiction, p.regions)),
        ))
    }

    /// The regions allowed for `jurisdiction`; `None` when it has no policy (unrestricted).
    pub fn allowed(&self, jurisdiction: &str) -> Option<&[String]> {
        self.regions.get(jurisdiction).map(Vec::as_slice)
    }

    /// True when no jurisdiction is restricted.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }
}

/// Subjects' recorded jurisdictions, looked up in the store by the keyring's subject reference
/// (the store never sees subject ids) and kept for the life of this value, so that a scan over
/// many files asks for each subject once.
pub struct Jurisdictions<'a> {
    store: &'a Store,
    keyring: &'a Keyring,
    known: HashMap<String, Option<String>>,
}

impl<'a> Jurisdictions<'a> {
    /// An empty cache over `store`.
    pub fn new(store: &'a Store, keyring: &'a Keyring) -> Self {
        Self {
            store,
            keyring,
            known: HashMap::new(),
        }
    }

    /// Looks up the subjects (ids as read from the lake) not asked for yet.
    ///
    /// # Errors
    /// Store errors.
    pub async fn resolve<'s>(
        &mut self,
        subjects: impl IntoIterator<Item = &'s str>,
    ) -> StoreResult<()> {
        let mut by_ref: HashMap<String, String> = HashMap::new();
        for s in subjects {
            if !self.known.contains_key(s) {
                by_ref.insert(self.keyring.subject_ref_str(s), s.to_string());
            }
        }
        if by_ref.is_empty() {
            return Ok(());
        }
        let refs: Vec<String> = by_ref.keys().cloned().collect();
        for subject in by_ref.values() {
            self.known.insert(subject.clone(), None);
        }
        for (subject_ref, jurisdiction) in self.store.subject_jurisdictions(&refs).await? {
            if let Some(subject) = by_ref.get(&subject_ref) {
                self.known.insert(subject.clone(), Some(jurisdiction));
            }
        }
        Ok(())
    }

    /// The recorded jurisdiction of `subject` (resolved before), if any.
    pub fn get(&self, subject: &str) -> Option<&str> {
        self.known.get(subject).and_then(|j| j.as_deref())
    }

    /// The keyed reference of `subject`.
    pub fn subject_ref(&self, subject: &str) -> String {
        self.keyring.subject_ref_str(subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jurisdiction_without_a_policy_is_unrestricted() {
        let book = PolicyBook::new([("EU".to_string(), vec!["EU".to_string()])]);
        assert_eq!(book.allowed("EU"), Some(&["EU".to_string()][..]));
        assert_eq!(book.allowed("US"), None);
        assert!(!book.is_empty());
        assert!(PolicyBook::default().is_empty());
    }
}
