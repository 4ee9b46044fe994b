//! A dataset's rows across all its roots (its `root_url` and, with data residency, one root
//! per region): where its subjects are, and the rows of one subject.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::table::{TableError, open_table};
use crate::config::Settings;
use crate::keyring::Keyring;
use crate::lake::{self, LakeError, LakeRoot, Locate, LocatorHint};
use crate::store::{Dataset, Store, StoreError};

/// Why a dataset's rows could not be read across its roots.
#[derive(Debug, thiserror::Error)]
pub enum RowsError {
    /// A root could not be listed or read.
    #[error("dataset {dataset}: {source}")]
    Lake {
        /// Dataset name.
        dataset: String,
        /// What the lake engine said.
        source: LakeError,
    },
    /// Files that could not be read; each was left untouched.
    #[error(
        "dataset {dataset}: {} file(s) could not be read and were left untouched: {}",
        files.len(),
        files.join("; ")
    )]
    Unreadable {
        /// Dataset name.
        dataset: String,
        /// `<file>: <error>`, one per file.
        files: Vec<String>,
    },
    /// Two roots of the dataset hold files of different schemas.
    #[error(
        "dataset {dataset}: the files of root {root} have another schema than those of the other roots"
    )]
    MixedSchemas {
        /// Dataset name.
        dataset: String,
        /// The root whose files differ.
        root: String,
    },
    /// A table dataset's table could not be opened (unknown catalog, address not allowed).
    #[error("dataset {dataset}: {detail}")]
    Table {
        /// Dataset name.
        dataset: String,
        /// Why.
        detail: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RowsError {
    fn lake(dataset: &Dataset) -> impl Fn(LakeError) -> Self + '_ {
        |source| Self::Lake {
            dataset: dataset.name.clone(),
            source,
        }
    }

    fn table(dataset: &Dataset) -> impl Fn(TableError) -> Self + '_ {
        |e| match e {
            TableError::Lake(source) => Self::Lake {
                dataset: dataset.name.clone(),
                source,
            },
            other => Self::Table {
                dataset: dataset.name.clone(),
                detail: other.to_string(),
            },
        }
    }
}

/// The data files of a table dataset's current snapshot (`with_deletes`: see
/// [`lake::table::Table::live_files`]).
async fn table_files(
    settings: &Settings,
    dataset: &Dataset,
    with_deletes: bool,
) -> Result<lake::table::LiveFiles, RowsError> {
    let table = open_table(settings, dataset)
        .await
        .map_err(RowsError::table(dataset))?;
    table
        .live_files(with_deletes)
        .await
        .map_err(RowsError::lake(dataset))
}

/// What the locator index knows of `subjects` in `dataset`: `None` for datasets without a
/// schema (written by others), without a keyring, or with nothing indexed.
///
/// # Errors
/// [`StoreError`] when the database fails.
pub async fn locator_hint(
    store: &Arc<Store>,
    keyring: Option<&Keyring>,
    dataset: &Dataset,
    subjects: &[&str],
) -> Result<Option<LocatorHint>, StoreError> {
    let (Some(_), Some(keyring)) = (&dataset.schema, keyring) else {
        return Ok(None);
    };
    let known: HashMap<String, u64> = store
        .indexed_files(&dataset.id)
        .await?
        .into_iter()
        .collect();
    if known.is_empty() {
        return Ok(None);
    }
    let by_ref: HashMap<String, &str> = subjects
        .iter()
        .map(|s| (keyring.subject_ref_str(s), *s))
        .collect();
    let refs: Vec<String> = by_ref.keys().cloned().collect();
    let mut hits: HashMap<String, BTreeMap<String, u64>> = HashMap::new();
    for (subject_ref, path, rows) in store.index_lookup(&dataset.id, &refs).await? {
        if let Some(subject) = by_ref.get(&subject_ref) {
            *hits
                .entry(path)
                .or_default()
                .entry((*subject).to_string())
                .or_default() += rows;
        }
    }
    Ok(Some(LocatorHint { known, hits }))
}

/// Locates `subjects` in the subject `columns` of every root of `dataset` (its `root_url` and,
/// with data residency, one root per region; for a table, the files of its current snapshot),
/// with the locator index's hint, reading up to
/// `concurrency` files at once; returns each root's URL and report. Erasure looks in every
/// subject column, rectification in the columns owning the changed values.
///
/// # Errors
/// [`RowsError::Unreadable`] when a file cannot be read (naming every such file);
/// [`RowsError::Lake`], [`RowsError::Store`].
pub async fn locate_in_roots(
    store: &Arc<Store>,
    settings: &Settings,
    keyring: Option<&Keyring>,
    concurrency: usize,
    dataset: &Dataset,
    columns: &[String],
    subjects: &[&str],
) -> Result<Vec<(String, lake::LocateReport)>, RowsError> {
    let hint = locator_hint(store, keyring, dataset, subjects).await?;
    let mut roots: Vec<(String, LakeRoot, Option<Vec<lake::DataFile>>)> = Vec::new();
    if dataset.format.is_table() {
        // A table's files are those of its current snapshot, not those of its folder.
        let live = table_files(settings, dataset, false).await?;
        roots.push((live.root.url().to_string(), live.root, Some(live.files)));
    } else {
        for dataset_root in dataset.roots() {
            let root = LakeRoot::parse(&dataset_root.url).map_err(RowsError::lake(dataset))?;
            roots.push((dataset_root.url, root, None));
        }
    }
    let mut reports = Vec::new();
    for (url, root, files) in roots {
        let mut locate = Locate::new(root, dataset.subject_column.clone())
            .also_columns(columns.iter().cloned())
            .subjects(subjects.iter().copied())
            .concurrency(concurrency.max(1));
        if let Some(hint) = &hint {
            locate = locate.index(hint.clone());
        }
        if let Some(files) = files {
            locate = locate.files(files);
        }
        let report = locate.execute().await.map_err(RowsError::lake(dataset))?;
        if !report.failures.is_empty() {
            return Err(RowsError::Unreadable {
                dataset: dataset.name.clone(),
                files: report
                    .failures
                    .iter()
                    .map(|f| format!("{}: {}", f.relative, f.error))
                    .collect(),
            });
        }
        reports.push((url, report));
    }
    Ok(reports)
}

/// The rows of `subject` in every root of `dataset`, in root order; for a table, in the files
/// of its current snapshot.
///
/// # Errors
/// [`RowsError::Lake`], [`RowsError::Store`]; [`RowsError::MixedSchemas`] when two roots of
/// the dataset hold files of different schemas.
pub async fn collect_in_roots(
    store: &Arc<Store>,
    settings: &Settings,
    keyring: Option<&Keyring>,
    dataset: &Dataset,
    subject: &str,
) -> Result<lake::SubjectRows, RowsError> {
    if dataset.format.is_table() {
        // The current snapshot, without the rows its deletion vectors or position delete
        // files delete (an export must not return deleted rows).
        let live = table_files(settings, dataset, true).await?;
        return lake::collect_subject_rows_in(
            &live.root,
            live.files,
            &dataset.subject_columns(),
            subject,
            None,
            &live.deleted,
        )
        .await
        .map_err(RowsError::lake(dataset));
    }
    let hint = locator_hint(store, keyring, dataset, &[subject]).await?;
    let mut all: Option<lake::SubjectRows> = None;
    for dataset_root in dataset.roots() {
        let root = LakeRoot::parse(&dataset_root.url).map_err(RowsError::lake(dataset))?;
        let rows =
            lake::collect_subject_rows(&root, &dataset.subject_columns(), subject, hint.as_ref())
                .await
                .map_err(RowsError::lake(dataset))?;
        all = Some(match all {
            None => rows,
            Some(mut acc) if rows.rows == 0 => {
                acc.files.extend(rows.files);
                acc
            }
            Some(acc) if acc.rows == 0 => lake::SubjectRows {
                files: acc.files.into_iter().chain(rows.files).collect(),
                ..rows
            },
            Some(mut acc) if acc.schema == rows.schema => {
                acc.batches.extend(rows.batches);
                acc.files.extend(rows.files);
                acc.rows += rows.rows;
                acc
            }
            Some(_) => {
                return Err(RowsError::MixedSchemas {
                    dataset: dataset.name.clone(),
                    root: dataset_root.url,
                });
            }
        });
    }
    Ok(all.expect("a dataset has at least one root"))
}
