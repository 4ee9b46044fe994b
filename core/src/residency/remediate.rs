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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, RecordBatch, StringArray, UInt32Array};
use arrow_select::take::take_record_batch;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::ResidencyError;
use super::rule::{RegionSource, RemoveMoved, Rule};
use super::scan::{DatasetScan, FileFinding, find, records};
use crate::audit::NewAuditEntry;
use crate::domain::DatasetSchema;
use crate::ingest::index_entry;
use crate::ingest::write::{WrittenFile, encode_files, sort_by_subject, upload};
use crate::keyring::Keyring;
use crate::lake::columns::read_columns;
use crate::lake::export::read_whole_file;
use crate::lake::rewrite::failpoint::{Failpoint, hit};
use crate::lake::{
    AllGuards, CommitGuard, DataFile, Erase, FileStatus, LakeError, LakeRoot, subject_values,
};
use crate::store::{
    Dataset, IndexedFile, LeaseMode, Store, process_lease_holder, with_dataset_lease,
};
use crate::store::{Jurisdictions, PolicyBook};

/// Folder (under a root) of remediation manifests; hidden from listings.
const MANIFEST_DIR: &str = "_lethe";
/// Name prefix of remediation manifests in [`MANIFEST_DIR`].
const MANIFEST_PREFIX: &str = "residency-";

/// One file remediation wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedFile {
    /// The region it is in.
    pub region: String,
    /// Its root.
    pub root_url: String,
    /// Path relative to that root.
    pub path: String,
    /// Rows.
    pub rows: u64,
}

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

/// The rule of a manifest: [`Rule`] with subjects by keyed reference.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredRule {
    subject_columns: Vec<String>,
    region: RegionSource,
    /// Subject reference → allowed regions.
    allowed: BTreeMap<String, Vec<String>>,
    dataset_regions: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    /// `copying` or `copied`.
    state: String,
    dataset_id: String,
    /// The source, relative to the root holding the manifest.
    source: String,
    /// Rows copied.
    rows: u64,
    outputs: Vec<MovedFile>,
    rule: StoredRule,
}

fn manifest_path(tag: &str) -> String {
    format!("{MANIFEST_DIR}/{MANIFEST_PREFIX}{tag}.json")
}

async fn write_manifest(root: &LakeRoot, path: &str, m: &Manifest) -> Result<(), ResidencyError> {
    Ok(root.put_json(path, m).await?)
}

async fn delete_quietly(root: &LakeRoot, relative: &str) -> Result<(), ResidencyError> {
    Ok(root.delete_if_exists(relative).await?)
}

/// The remediation manifest objects under `root`, as `(path relative to the root, bytes)`.
async fn manifest_objects(root: &LakeRoot) -> Result<Vec<(String, bytes::Bytes)>, LakeError> {
    Ok(root
        .read_objects(MANIFEST_DIR, MANIFEST_PREFIX)
        .await?
        .into_iter()
        .filter(|(path, _)| path.ends_with(".json"))
        .collect())
}

/// The remediation manifests under `root`, as `(path relative to the root, manifest)`.
async fn manifests(root: &LakeRoot) -> Result<Vec<(String, Manifest)>, ResidencyError> {
    let mut out = Vec::new();
    for (path, bytes) in manifest_objects(root).await? {
        let manifest = serde_json::from_slice(&bytes).map_err(|e| ResidencyError::Manifest {
            manifest: path.clone(),
            reason: e.to_string(),
        })?;
        out.push((path, manifest));
    }
    Ok(out)
}

/// Files named by pending remediation manifests in any root of `dataset` — their sources and
/// their outputs — as `(root url, path relative to it)`: compaction leaves them alone until
/// remediation finishes or rolls them back, so rows cannot be duplicated for good. An
/// unreadable manifest names none (the next remediation reports it).
///
/// # Errors
/// [`LakeError`] when a root cannot be parsed or its manifests listed or fetched.
pub async fn held_files(dataset: &Dataset) -> Result<HashSet<(String, String)>, LakeError> {
    let mut held = HashSet::new();
    for dataset_root in dataset.roots() {
        let root = LakeRoot::parse(&dataset_root.url)?;
        for (path, bytes) in manifest_objects(&root).await? {
            match serde_json::from_slice::<Manifest>(&bytes) {
                Ok(m) => {
                    held.insert((dataset_root.url.clone(), m.source));
                    for o in m.outputs {
                        held.insert((o.root_url, o.path));
                    }
                }
                Err(e) => {
                    tracing::warn!(manifest = %path, error = %e, "unreadable remediation manifest")
                }
            }
        }
    }
    Ok(held)
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

/// Deletes the outputs of a `copying` manifest (best effort), forgets them in the index and
/// deletes the manifest: back to the state before the copy.
async fn roll_back(
    store: &Arc<Store>,
    dataset: &Dataset,
    source_root: &LakeRoot,
    manifest_at: &str,
    manifest: &Manifest,
) {
    if let Err(e) = try_roll_back(store, dataset, source_root, manifest_at, manifest).await {
        tracing::error!(error = %e, manifest = manifest_at, "rolling back a remediation failed; the next one will");
    }
}

async fn try_roll_back(
    store: &Arc<Store>,
    dataset: &Dataset,
    source_root: &LakeRoot,
    manifest_at: &str,
    manifest: &Manifest,
) -> Result<(), ResidencyError> {
    for output in &manifest.outputs {
        let root = LakeRoot::parse(&output.root_url)?;
        delete_quietly(&root, &output.path).await?;
    }
    let paths: Vec<String> = manifest.outputs.iter().map(|o| o.path.clone()).collect();
    store.index_files(&dataset.id, &[], &paths).await?;
    delete_quietly(source_root, manifest_at).await
}

/// Finishes an interrupted remediation found under `root`.
#[allow(clippy::too_many_arguments)]
async fn recover(
    store: &Arc<Store>,
    keyring: &Keyring,
    dataset: &Dataset,
    schema: &DatasetSchema,
    root: &LakeRoot,
    manifest_at: &str,
    manifest: Manifest,
    actor: &str,
    guard: &Option<Arc<dyn CommitGuard>>,
) -> Result<(), ResidencyError> {
    if manifest.state != "copied" {
        tracing::warn!(source = %manifest.source, "interrupted remediation rolled back");
        return try_roll_back(store, dataset, root, manifest_at, &manifest).await;
    }
    tracing::warn!(source = %manifest.source, "interrupted remediation finished");
    // The rule names subjects by reference: find their ids in the source.
    let stored = &manifest.rule;
    let mut allowed = HashMap::new();
    if let Some(source) = head_file(root, &manifest.source).await? {
        let (batches, _) = read_columns(root, &source, &schema.subject_columns).await?;
        for b in &batches {
            for c in &stored.subject_columns {
                let Some(values) =
                    subject_values(b, c).map_err(|e| LakeError::arrow(&source.relative, e))?
                else {
                    continue;
                };
                for s in values.iter().flatten() {
                    if allowed.contains_key(s) {
                        continue;
                    }
                    if let Some(regions) = stored.allowed.get(&keyring.subject_ref_str(s)) {
                        allowed.insert(s.to_string(), regions.clone());
                    }
                }
            }
        }
    }
    let rule = Rule {
        subject_columns: stored.subject_columns.clone(),
        region: stored.region.clone(),
        allowed,
        dataset_regions: stored.dataset_regions.clone(),
    };
    finish(
        store,
        keyring,
        dataset,
        root,
        manifest_at,
        &manifest,
        rule,
        actor,
        guard,
        true,
    )
    .await
}

/// Steps 4 and 5: rewrites the source without the rows `rule` moves, re-indexes it, audits
/// `residency.remediated`, deletes the manifest.
#[allow(clippy::too_many_arguments)]
async fn finish(
    store: &Arc<Store>,
    keyring: &Keyring,
    dataset: &Dataset,
    source_root: &LakeRoot,
    manifest_at: &str,
    manifest: &Manifest,
    rule: Rule,
    actor: &str,
    guard: &Option<Arc<dyn CommitGuard>>,
    recovered: bool,
) -> Result<(), ResidencyError> {
    let source = &manifest.source;
    let Some(file) = head_file(source_root, source).await? else {
        tracing::warn!(file = %source, "the source of a remediation is gone");
        audit_remediated(
            store,
            dataset,
            source_root,
            manifest,
            "missing",
            0,
            actor,
            recovered,
        )
        .await?;
        return delete_quietly(source_root, manifest_at).await;
    };
    // Subjects left in the source after the rewrite, to drop the others from its index entry.
    let (before, after) = subjects_before_after(source_root, &file, &rule).await?;
    let mut erase = Erase::new(source_root.clone(), rule.subject_columns[0].clone())
        .row_filter(RemoveMoved::new(rule))
        .files([source.clone()])
        .concurrency(1);
    if let Some(guard) = guard {
        erase = erase.commit_guard(Arc::clone(guard));
    }
    let outcome = erase.execute().await?;
    let (rows_removed, status) = match outcome.files.first() {
        Some(f) => match &f.status {
            FileStatus::Rewritten => {
                let gone: Vec<String> = before
                    .difference(&after)
                    .map(|s| keyring.subject_ref_str(s))
                    .collect();
                store
                    .index_rewritten(
                        &dataset.id,
                        source,
                        &gone,
                        f.rows_before - f.rows_removed,
                        f.bytes_written,
                    )
                    .await?;
                (f.rows_removed, "rewritten")
            }
            FileStatus::Unchanged => (0, "unchanged"),
            FileStatus::Failed { error } => {
                let transient = f.retryable;
                return Err(if transient {
                    ResidencyError::Lake(LakeError::Changed {
                        file: format!("{source} ({error})"),
                    })
                } else {
                    ResidencyError::File {
                        file: source.clone(),
                        reason: format!(
                            "the rows were copied but the source could not be rewritten (the next remediation retries): {error}"
                        ),
                    }
                });
            }
        },
        None => (0, "missing"),
    };
    audit_remediated(
        store,
        dataset,
        source_root,
        manifest,
        status,
        rows_removed,
        actor,
        recovered,
    )
    .await?;
    delete_quietly(source_root, manifest_at).await?;
    tracing::info!(file = %source, rows = manifest.rows, "misplaced rows moved");
    Ok(())
}

/// Audits `residency.remediated` for one source file: counts and regions, no subject.
#[allow(clippy::too_many_arguments)]
async fn audit_remediated(
    store: &Arc<Store>,
    dataset: &Dataset,
    source_root: &LakeRoot,
    manifest: &Manifest,
    status: &str,
    rows_removed: u64,
    actor: &str,
    recovered: bool,
) -> Result<(), ResidencyError> {
    let source = &manifest.source;
    let mut to: BTreeMap<&str, u64> = BTreeMap::new();
    for o in &manifest.outputs {
        *to.entry(o.region.as_str()).or_default() += o.rows;
    }
    let from = match &manifest.rule.region {
        RegionSource::Fixed(r) => json!(r),
        RegionSource::Column(_) => json!(null),
    };
    let audit = NewAuditEntry::new(actor, "residency.remediated").details(json!({
        "dataset_id": dataset.id,
        "dataset": dataset.name,
        "root_url": source_root.url(),
        "file": source,
        "source": status,
        "from_region": from,
        "rows_moved": manifest.rows,
        "rows_removed_from_source": rows_removed,
        "to_regions": to,
        "files_written": manifest.outputs.iter().map(|o| json!({"region": o.region, "root_url": o.root_url, "file": o.path, "rows": o.rows})).collect::<Vec<_>>(),
        "recovered": recovered,
    }));
    store.append_audit(audit).await?;
    Ok(())
}

/// The data file `relative` under `root`; `None` when it does not exist.
async fn head_file(root: &LakeRoot, relative: &str) -> Result<Option<DataFile>, ResidencyError> {
    match root.file_and_temps(relative).await {
        Ok((file, _)) => Ok(Some(file)),
        Err(LakeError::ObjectStore {
            source: object_store::Error::NotFound { .. },
            ..
        }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Subject ids in `source` (all subject columns) before and after removing the rows `rule`
/// moves.
async fn subjects_before_after(
    root: &LakeRoot,
    file: &DataFile,
    rule: &Rule,
) -> Result<(BTreeSet<String>, BTreeSet<String>), ResidencyError> {
    let source = file.relative.as_str();
    let (mut before, mut after) = (BTreeSet::new(), BTreeSet::new());
    let mut columns = rule.subject_columns.clone();
    if let RegionSource::Column(c) = &rule.region {
        columns.push(c.clone());
    }
    let (batches, _) = read_columns(root, file, &columns).await?;
    for b in &batches {
        let placed = rule.classify(b).map_err(|e| LakeError::arrow(source, e))?;
        for c in &rule.subject_columns {
            let Some(values) = subject_values(b, c).map_err(|e| LakeError::arrow(source, e))?
            else {
                continue;
            };
            for (row, v) in values.iter().enumerate() {
                let Some(v) = v else { continue };
                before.insert(v.to_string());
                if placed[row].as_ref().is_none_or(|m| m.target.is_none()) {
                    after.insert(v.to_string());
                }
            }
        }
    }
    Ok((before, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> DatasetSchema {
        serde_json::from_value(json!({
            "subject_columns": ["user_id"],
            "columns": [
                {"name": "user_id", "type": "string"},
                {"name": "ts", "type": "timestamp"},
                {"name": "region", "type": "string"}
            ],
            "partition_by": [{"name": "date", "source": "ts", "transform": "day"},
                             {"name": "region", "source": "region"}],
            "region_column": "region"
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_remediation_interrupted_while_copying_is_rolled_back_by_the_next() {
        use crate::keyring::{Kek, SubjectHasher};
        use crate::store::{NewDataset, Store};

        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("lethe.db").display());
        let sql = Arc::new(
            Store::connect(&secrecy::SecretString::from(url), 1)
                .await
                .unwrap(),
        );
        let store: Arc<Store> = sql.clone();
        let keyring = Keyring::new(Kek::generate(), sql, SubjectHasher::new(&[1; 32]).unwrap());
        let (home, eu) = (dir.path().join("home"), dir.path().join("eu"));
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&eu).unwrap();
        let mut schema = schema();
        schema.region_roots = [("EU".to_string(), eu.display().to_string())].into();
        let dataset = store
            .create_dataset(
                NewDataset {
                    name: "events".into(),
                    root_url: home.display().to_string(),
                    subject_column: "user_id".into(),
                    partition_columns: vec!["date".into(), "region".into()],
                    created_by: "test".into(),
                    schema: Some(schema),
                },
                NewAuditEntry::new("test", "dataset.registered"),
            )
            .await
            .unwrap();
        // A crash in step 3: one output uploaded and indexed, the manifest still `copying`.
        let output = "date=2025-01-07/region=EU/part-0123456789ab-m0000.parquet";
        let eu_root = LakeRoot::parse(&eu.display().to_string()).unwrap();
        upload(&eu_root, output, b"half a remediation".to_vec())
            .await
            .unwrap();
        store
            .index_files(
                &dataset.id,
                &[IndexedFile {
                    path: output.into(),
                    rows: 3,
                    bytes: 18,
                    subjects: vec![("ref".into(), 3)],
                }],
                &[],
            )
            .await
            .unwrap();
        let home_root = LakeRoot::parse(&home.display().to_string()).unwrap();
        let manifest = Manifest {
            state: "copying".into(),
            dataset_id: dataset.id.clone(),
            source: "date=2025-01-07/region=US/part-aaaaaaaaaaaa-00000.parquet".into(),
            rows: 3,
            outputs: vec![MovedFile {
                region: "EU".into(),
                root_url: eu.display().to_string(),
                path: output.into(),
                rows: 3,
            }],
            rule: StoredRule {
                subject_columns: vec!["user_id".into()],
                region: RegionSource::Fixed("US".into()),
                allowed: BTreeMap::new(),
                dataset_regions: vec![],
            },
        };
        let at = manifest_path("0123456789ab");
        write_manifest(&home_root, &at, &manifest).await.unwrap();
        let held = held_files(&dataset).await.unwrap();
        assert!(held.contains(&(eu.display().to_string(), output.to_string())));
        assert!(held.contains(&(home.display().to_string(), manifest.source.clone())));

        let report = remediate_dataset(
            &store,
            &keyring,
            &PolicyBook::default(),
            &dataset,
            "test",
            None,
        )
        .await
        .unwrap();
        assert_eq!(report.recovered, 1);
        assert!(!eu.join(output).exists(), "the partial copy is deleted");
        assert!(store.indexed_files(&dataset.id).await.unwrap().is_empty());
        assert!(!home.join(&at).exists(), "the manifest is deleted");
        assert!(held_files(&dataset).await.unwrap().is_empty());
    }

    #[test]
    fn moved_rows_keep_their_partition_with_the_target_region() {
        let s = schema();
        assert_eq!(
            target_dir(&s, "date=2025-01-07/region=US", "EU"),
            "date=2025-01-07/region=EU"
        );
        assert_eq!(target_dir(&s, "", "EU"), "");
        let mut flat = schema();
        flat.partition_by.pop();
        assert_eq!(
            target_dir(&flat, "date=2025-01-07", "EU"),
            "date=2025-01-07",
            "the region lives in the rows"
        );
    }

    #[test]
    fn a_stored_region_column_is_relabelled() {
        let batch = RecordBatch::try_from_iter([
            (
                "user_id",
                Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef,
            ),
            (
                "region",
                Arc::new(StringArray::from(vec!["US", "US"])) as ArrayRef,
            ),
        ])
        .unwrap();
        let out = relabel(&schema(), &batch, "EU").unwrap();
        let region = super::super::rule::text_column(&out, "region").unwrap();
        assert_eq!(region.iter().collect::<Vec<_>>(), [Some("EU"), Some("EU")]);
    }
}
