//! Legal holds (GDPR Art. 17(3)) as the jobs see them: read when a job runs, not when it was
//! planned or filed, so a hold placed in between is honoured.
//!
//! A subject hold keeps everything of that subject (rows and data key). A dataset hold keeps
//! the dataset's rows; it keeps a subject's data key only when the subject has rows in that
//! dataset (the key is what makes them readable), never the keys of everyone else.

use std::collections::HashMap;

use crate::store::{LegalHold, Store, StoreResult};

/// The holds in force, by what they hold.
#[derive(Debug, Default)]
pub(crate) struct ActiveHolds {
    datasets: HashMap<String, LegalHold>,
    subjects: HashMap<String, LegalHold>,
    /// Subject holds by the keyring's keyed reference (holds placed with one).
    by_ref: HashMap<String, LegalHold>,
}

impl ActiveHolds {
    /// The holds in force now (one query).
    ///
    /// # Errors
    /// The store's error.
    pub(crate) async fn load(store: &Store) -> StoreResult<Self> {
        let mut holds = Self::default();
        for hold in store.list_legal_holds(true).await? {
            if let Some(dataset) = &hold.dataset_id {
                holds.datasets.entry(dataset.clone()).or_insert(hold);
            } else if let Some(pseudonym) = &hold.subject_pseudonym {
                if let Some(subject_ref) = &hold.subject_ref {
                    holds
                        .by_ref
                        .entry(subject_ref.clone())
                        .or_insert_with(|| hold.clone());
                }
                holds.subjects.entry(pseudonym.clone()).or_insert(hold);
            }
        }
        Ok(holds)
    }

    /// The hold on dataset `id`, if any.
    pub(crate) fn on_dataset(&self, id: &str) -> Option<&LegalHold> {
        self.datasets.get(id)
    }

    /// Whether any dataset is held.
    pub(crate) fn on_any_dataset(&self) -> bool {
        !self.datasets.is_empty()
    }

    /// The hold on the subject with this audit pseudonym, if any.
    pub(crate) fn on_subject(&self, pseudonym: &str) -> Option<&LegalHold> {
        self.subjects.get(pseudonym)
    }

    /// The hold on the subject with this keyed reference, if any (holds placed with one).
    pub(crate) fn on_subject_ref(&self, subject_ref: &str) -> Option<&LegalHold> {
        self.by_ref.get(subject_ref)
    }

    /// The subject holds in force that name their subject by keyed reference.
    pub(crate) fn subject_holds(&self) -> impl Iterator<Item = &LegalHold> {
        self.by_ref.values()
    }

    /// Whether any hold is in force on the dataset or on one of the subjects.
    pub(crate) fn any_on<'a>(
        &self,
        dataset_id: &str,
        pseudonyms: impl IntoIterator<Item = &'a str>,
    ) -> Option<&LegalHold> {
        self.on_dataset(dataset_id)
            .or_else(|| pseudonyms.into_iter().find_map(|p| self.on_subject(p)))
    }
}
