//! Residency remediation: move rows stored outside their allowed regions into the root of an
//! allowed region, copy first, then rewrite the source without them (GDPR Chapter V).
//!
//! Per violating file, with a manifest object `_lethe/residency-<tag>.json` under the source's
//! root (hidden from listings):
//!
//! 1. the source is read; its movable misplaced rows (those with a target region the dataset
//!    has: the first region of the subject's policy that every restricted subject of the row
//!    allows) are grouped by target, their region column (when stored) set to the target, and
//!    encoded like ingest writes them (sorted by subject, zstd, bloom filters);
//! 2. the manifest is written (`copying`: the source, the planned outputs, and the rule — by
//!    subject reference, never id — that selects the rows);
//! 3. the outputs are uploaded under the targets' roots, in the source's partition with its
//!    `region=` value replaced by the target, and indexed; the manifest becomes `copied`;
//! 4. the source is rewritten without exactly those rows by the copy-on-write engine (verify,
//!    atomic swap; a file is always the old one or the complete new one) and re-indexed;
//! 5. `residency.remediated` is audited (counts and regions, no subject), the manifest deleted.
//!
//! Every remediation of a dataset first finishes what an interrupted one left: a `copying`
//! manifest's outputs are deleted and un-indexed (back: the rows are still only in the source,
//! and this run moves them again); a `copied` one's source is rewritten by the manifest's rule
//! (forward: the rows are not copied a second time). Between steps 3 and 4 the moved rows exist
//! twice, once in each region, until the next remediation; compaction leaves the files named by
//! a pending manifest (source and outputs) alone, so the window cannot turn into lasting
//! duplicates.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, RecordBatch, StringArray, UInt32Array};
use arrow_select::take::take_record_batch;
use serde::Serialize;
use serde_json::json;

use super::ResidencyError;
use super::manifest::{
    Manifest, StoredRule, finish, manifest_path, manifests, recover, roll_back, write_manifest,
};
pub use super::manifest::{MovedFile, held_files};
use super::scan::{DatasetScan, FileFinding, find, records};
use crate::audit::NewAuditEntry;
use crate::domain::DatasetSchema;
use crate::ingest::index_entry;
use crate::ingest::write::{WrittenFile, encode_files, sort_by_subject, upload};
use crate::keyring::Keyring;
use crate::lake::export::read_whole_file;
use crate::lake::rewrite::failpoint::{Failpoint, hit};
use crate::lake::{AllGuards, CommitGuard, LakeError, LakeRoot};
use crate::store::{
    Dataset, IndexedFile, LeaseMode, Store, process_lease_holder, with_dataset_lease,
};
use crate::store::{Jurisdictions, PolicyBook};

/// One source file remediation could not fix (it is untouched, or — when its rewrite failed
/// after the copy — finished by the next remediation).
#[derive(Debug, Clone, Serialize)]
pub struct FailedFile {
    /// The source's root.
    pub root_url: String,
    /// The source, relative to its root.
    pub file: String,
    /// Why.
    pub error: String,
}

/// What [`remediate_dataset`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RemediationReport {
    /// Dataset name.
    pub dataset: String,
    /// Interrupted remediations finished first (rolled back or forward).
    pub recovered: u64,
    /// Files holding misplaced rows, as found.
    pub violating_files: u64,
    /// Source files rewritten without their misplaced rows.
    pub files_remediated: u64,
    /// Rows moved into an allowed region.
    pub rows_moved: u64,
    /// Misplaced rows left where they are because no region of the dataset is allowed for
    /// them (add a region root, or change the policy).
    pub rows_unmovable: u64,
    /// Files written into allowed regions.
    pub files_written: Vec<MovedFile>,
    /// Files that failed.
    pub files_failed: Vec<FailedFile>,
    /// Why the dataset cannot be remediated (no schema, no region column), if so.
    pub note: Option<String>,
    /// Wall-clock seconds.
    pub elapsed_s: f64,
}

/// Finishes interrupted remediations, moves the misplaced rows of every file of `dataset`
/// into an allowed region, and records what is left as the dataset's scan; as `actor`, each
/// file audited as `residency.remediated`. `guard` (a job's lease) is asked before each
/// source is swapped.
///
/// # Errors
/// [`ResidencyError`] when a root cannot be listed, a transient failure (storage or database)
/// stops the run (the next run finishes what it left), or a manifest is unreadable. A file that
/// fails for good is reported in [`RemediationReport::files_failed`] and the others go on.
/// Holds the dataset exclusively meanwhile (it writes into other roots and deletes rows from
/// the sources): a busy dataset is
/// [`StoreError::DatasetBusy`](crate::store::StoreError::DatasetBusy) inside
/// [`ResidencyError::Store`].
#[tracing::instrument(skip_all, fields(dataset = %dataset.name))]
pub async fn remediate_dataset(
    store: &Arc<Store>,
    keyring: &Keyring,
    policies: &PolicyBook,
    dataset: &Dataset,
    actor: &str,
    guard: Option<Arc<dyn CommitGuard>>,
) -> Result<RemediationReport, ResidencyError> {
    with_dataset_lease(
        store,
        &dataset.id,
        &process_lease_holder(actor),
        LeaseMode::Exclusive,
        "residency remediation",
        |lease| {
            // The source of each file is swapped only while the dataset is still ours.
            let mut guards: Vec<Arc<dyn CommitGuard>> = vec![lease];
            guards.extend(guard);
            let guard: Option<Arc<dyn CommitGuard>> = Some(Arc::new(AllGuards(guards)));
            remediate_leased(store, keyring, policies, dataset, actor, guard)
        },
    )
    .await
}

/// [`remediate_dataset`] once the dataset lease is held.
async fn remediate_leased(
    store: &Arc<Store>,
    keyring: &Keyring,
    policies: &PolicyBook,
    dataset: &Dataset,
    actor: &str,
    guard: Option<Arc<dyn CommitGuard>>,
) -> Result<RemediationReport, ResidencyError> {
    let started = Instant::now();
    let mut report = RemediationReport {
        dataset: dataset.name.clone(),
        ..RemediationReport::default()
    };
    if let Some(schema) = &dataset.schema {
        for root in dataset.roots() {
            let lake = LakeRoot::parse(&root.url)?;
            for (path, manifest) in manifests(&lake).await? {
                recover(
                    store, keyring, dataset, schema, &lake, &path, manifest, actor, &guard,
                )
                .await?;
                report.recovered += 1;
            }
        }
    }
    let mut jurisdictions = Jurisdictions::new(store.as_ref(), keyring);
    let mut findings = find(policies, dataset, &mut jurisdictions).await?;
    report.note.clone_from(&findings.not_scannable);
    report.violating_files = findings.files.len() as u64;
    let mut left: Vec<FileFinding> = Vec::new();
    for finding in std::mem::take(&mut findings.files) {
        let movable = finding.movable_rows();
        let unmovable: u64 = finding.by_region.values().map(|r| r.unmovable_rows).sum();
        report.rows_unmovable += unmovable;
        let schema = dataset.schema.as_ref().expect("findings need a schema");
        if movable == 0 {
            left.push(finding);
            continue;
        }
        match remediate_file(store, keyring, dataset, schema, &finding, actor, &guard).await {
            Ok(moved) => {
                report.files_remediated += 1;
                report.rows_moved += moved.iter().map(|f| f.rows).sum::<u64>();
                report.files_written.extend(moved);
                if unmovable > 0 {
                    left.push(only_unmovable(finding));
                }
            }
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                tracing::warn!(file = %finding.file.relative, error = %e, "file not remediated");
                report.files_failed.push(FailedFile {
                    root_url: finding.root.url.clone(),
                    file: finding.file.relative.clone(),
                    error: e.to_string(),
                });
                left.push(finding);
            }
        }
    }
    findings.files = left;
    let scanned: DatasetScan = records(dataset, &findings);
    let audit = NewAuditEntry::new(actor, "residency.remediation_finished").details(json!({
        "dataset_id": dataset.id,
        "dataset": dataset.name,
        "recovered": report.recovered,
        "files_remediated": report.files_remediated,
        "rows_moved": report.rows_moved,
        "rows_unmovable": report.rows_unmovable,
        "files_failed": report.files_failed.len(),
        "violating_files_left": scanned.scan.violating_files,
    }));
    store
        .record_residency_scan(&scanned.scan, &scanned.violations, Some(audit))
        .await?;
    report.elapsed_s = started.elapsed().as_secs_f64();
    tracing::info!(
        files = report.files_remediated,
        rows_moved = report.rows_moved,
        rows_unmovable = report.rows_unmovable,
        failed = report.files_failed.len(),
        "residency remediation finished"
    );
    Ok(report)
}

/// `finding` with only its unmovable rows (what is left after its movable rows moved).
fn only_unmovable(mut finding: FileFinding) -> FileFinding {
    finding.by_region.retain(|_, r| r.unmovable_rows > 0);
    for r in finding.by_region.values_mut() {
        r.rows = r.unmovable_rows;
        r.subjects = std::mem::take(&mut r.unmovable_subjects);
    }
    finding
}

/// Moves the movable misplaced rows of one file (steps 1–5 of the module docs); returns the
/// files written.
async fn remediate_file(
    store: &Arc<Store>,
    keyring: &Keyring,
    dataset: &Dataset,
    schema: &DatasetSchema,
    finding: &FileFinding,
    actor: &str,
    guard: &Option<Arc<dyn CommitGuard>>,
) -> Result<Vec<MovedFile>, ResidencyError> {
    let source_root = LakeRoot::parse(&finding.root.url)?;
    let relative = finding.file.relative.clone();
    let file_schema = schema.file_schema();
    let (found, batches) = read_whole_file(&source_root, &finding.file).await?;
    if found.fields() != file_schema.fields() {
        return Err(ResidencyError::File {
            file: relative,
            reason: "not in the dataset's schema (written by someone else?); left as it is".into(),
        });
    }
    let batches = batches
        .into_iter()
        .map(|b| b.with_schema(Arc::clone(&file_schema)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LakeError::arrow(&relative, e))?;
    let whole = arrow_select::concat::concat_batches(&file_schema, &batches)
        .map_err(|e| LakeError::arrow(&relative, e))?;
    drop(batches);
    let placed = finding
        .rule
        .classify(&whole)
        .map_err(|e| LakeError::arrow(&relative, e))?;
    let mut by_target: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (row, p) in placed.iter().enumerate() {
        if let Some(target) = p.as_ref().and_then(|m| m.target.clone()) {
            by_target
                .entry(target)
                .or_default()
                .push(u32::try_from(row).expect("files hold fewer than 2^32 rows"));
        }
    }
    let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let dir = relative
        .rsplit_once('/')
        .map(|(d, _)| d.to_string())
        .unwrap_or_default();
    // Step 1: encode the outputs.
    let mut planned: Vec<Planned> = Vec::new();
    for (target, rows) in by_target {
        let taken = take_record_batch(&whole, &UInt32Array::from(rows))
            .map_err(|e| LakeError::arrow(&relative, e))?;
        let relabelled =
            relabel(schema, &taken, &target).map_err(|e| LakeError::arrow(&relative, e))?;
        let encoded = {
            let (schema, name) = (Arc::new(schema.clone()), dataset.name.clone());
            crate::lake::run_blocking(move || {
                let sorted = sort_by_subject(&schema, &relabelled)?;
                encode_files(&name, &schema, &sorted)
            })
            .await??
        };
        let to = dataset.root_for(Some(&target));
        let to_root = LakeRoot::parse(&to.url)?;
        let to_dir = target_dir(schema, &dir, &target);
        for (bytes, rows, subjects) in encoded {
            let name = format!("part-{tag}-m{:04}.parquet", planned.len());
            let path = if to_dir.is_empty() {
                name
            } else {
                format!("{to_dir}/{name}")
            };
            planned.push(Planned {
                root: to_root.clone(),
                moved: MovedFile {
                    region: target.clone(),
                    root_url: to.url.clone(),
                    path,
                    rows,
                },
                bytes,
                subjects,
            });
        }
    }
    let mut allowed = BTreeMap::new();
    for (subject, regions) in &finding.rule.allowed {
        allowed.insert(keyring.subject_ref_str(subject), regions.clone());
    }
    let mut manifest = Manifest {
        state: "copying".into(),
        dataset_id: dataset.id.clone(),
        source: relative.clone(),
        rows: planned.iter().map(|p| p.moved.rows).sum(),
        outputs: planned.iter().map(|p| p.moved.clone()).collect(),
        rule: StoredRule {
            subject_columns: finding.rule.subject_columns.clone(),
            region: finding.rule.region.clone(),
            allowed,
            dataset_regions: finding.rule.dataset_regions.clone(),
        },
    };
    // Step 2: the manifest, before anything is written.
    let manifest_at = manifest_path(&tag);
    write_manifest(&source_root, &manifest_at, &manifest).await?;
    // Step 3: copy, index.
    let mut indexed: Vec<IndexedFile> = Vec::new();
    for Planned {
        root,
        moved,
        bytes,
        subjects,
    } in planned
    {
        let size = match upload(&root, &moved.path, bytes).await {
            Ok(size) => size,
            Err(e) => {
                roll_back(store, dataset, &source_root, &manifest_at, &manifest).await;
                return Err(e.into());
            }
        };
        indexed.push(index_entry(
            keyring,
            &WrittenFile {
                path: moved.path.clone(),
                region: None,
                rows: moved.rows,
                bytes: size,
                subjects,
            },
        ));
    }
    if let Err(e) = store.index_files(&dataset.id, &indexed, &[]).await {
        roll_back(store, dataset, &source_root, &manifest_at, &manifest).await;
        return Err(e.into());
    }
    manifest.state = "copied".into();
    write_manifest(&source_root, &manifest_at, &manifest).await?;
    hit(Failpoint::ResidencyAfterCopy).await;
    // Steps 4 and 5.
    finish(
        store,
        keyring,
        dataset,
        &source_root,
        &manifest_at,
        &manifest,
        finding.rule.clone(),
        actor,
        guard,
        false,
    )
    .await?;
    Ok(manifest.outputs)
}

/// One output of a remediation, encoded and not yet uploaded.
struct Planned {
    root: LakeRoot,
    moved: MovedFile,
    bytes: Vec<u8>,
    /// Subject id → rows in the file.
    subjects: HashMap<String, u64>,
}

/// `batch` (file schema) with its stored region column, if any, set to `target`.
fn relabel(
    schema: &DatasetSchema,
    batch: &RecordBatch,
    target: &str,
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let Some(column) = schema.region_column.as_ref() else {
        return Ok(batch.clone());
    };
    let Ok(i) = batch.schema().index_of(column) else {
        return Ok(batch.clone());
    };
    let values: ArrayRef = Arc::new(StringArray::from(vec![target; batch.num_rows()]));
    let mut columns = batch.columns().to_vec();
    columns[i] = arrow_cast::cast(&values, batch.schema().field(i).data_type())?;
    RecordBatch::try_new(batch.schema(), columns)
}

/// The folder of the moved rows: the source's partition folder `dir` with the value of the
/// region partition key, if any, replaced by `target`.
fn target_dir(schema: &DatasetSchema, dir: &str, target: &str) -> String {
    let Some(key) = schema.region_partition() else {
        return dir.to_string();
    };
    dir.split('/')
        .filter(|s| !s.is_empty())
        .map(|segment| match segment.split_once('=') {
            Some((k, _)) if k == key => format!("{key}={target}"),
            _ => segment.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
#[path = "remediate_tests.rs"]
mod tests;
