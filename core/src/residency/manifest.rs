//! The manifests that make a remediation crash-safe: written before the misplaced rows are
//! copied, then moved on as the copy and the source's rewrite complete, so the next run
//! finishes (never repeats) or rolls back what an interrupted one left; and the files they
//! name, which compaction leaves alone meanwhile.

use super::ResidencyError;
use super::rule::{RegionSource, RemoveMoved, Rule};
use crate::audit::NewAuditEntry;
use crate::domain::DatasetSchema;
use crate::keyring::Keyring;
use crate::lake::columns::read_columns;
use crate::lake::{CommitGuard, DataFile, Erase, FileStatus, LakeError, LakeRoot, subject_values};
use crate::store::{Dataset, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

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

/// Folder (under a root) of remediation manifests; hidden from listings.
pub(super) const MANIFEST_DIR: &str = "_lethe";

/// Name prefix of remediation manifests in [`MANIFEST_DIR`].
pub(super) const MANIFEST_PREFIX: &str = "residency-";

/// The rule of a manifest: [`Rule`] with subjects by keyed reference.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredRule {
    pub(super) subject_columns: Vec<String>,
    pub(super) region: RegionSource,
    /// Subject reference → allowed regions.
    pub(super) allowed: BTreeMap<String, Vec<String>>,
    pub(super) dataset_regions: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Manifest {
    /// `copying` or `copied`.
    pub(super) state: String,
    pub(super) dataset_id: String,
    /// The source, relative to the root holding the manifest.
    pub(super) source: String,
    /// Rows copied.
    pub(super) rows: u64,
    pub(super) outputs: Vec<MovedFile>,
    pub(super) rule: StoredRule,
}

pub(super) fn manifest_path(tag: &str) -> String {
    format!("{MANIFEST_DIR}/{MANIFEST_PREFIX}{tag}.json")
}

pub(super) async fn write_manifest(
    root: &LakeRoot,
    path: &str,
    m: &Manifest,
) -> Result<(), ResidencyError> {
    Ok(root.put_json(path, m).await?)
}

pub(super) async fn delete_quietly(root: &LakeRoot, relative: &str) -> Result<(), ResidencyError> {
    Ok(root.delete_if_exists(relative).await?)
}

/// The remediation manifest objects under `root`, as `(path relative to the root, bytes)`.
pub(super) async fn manifest_objects(
    root: &LakeRoot,
) -> Result<Vec<(String, bytes::Bytes)>, LakeError> {
    Ok(root
        .read_objects(MANIFEST_DIR, MANIFEST_PREFIX)
        .await?
        .into_iter()
        .filter(|(path, _)| path.ends_with(".json"))
        .collect())
}

/// The remediation manifests under `root`, as `(path relative to the root, manifest)`.
pub(super) async fn manifests(root: &LakeRoot) -> Result<Vec<(String, Manifest)>, ResidencyError> {
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

/// Deletes the outputs of a `copying` manifest (best effort), forgets them in the index and
/// deletes the manifest: back to the state before the copy.
pub(super) async fn roll_back(
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

pub(super) async fn try_roll_back(
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
pub(super) async fn recover(
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
pub(super) async fn finish(
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
pub(super) async fn audit_remediated(
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
pub(super) async fn head_file(
    root: &LakeRoot,
    relative: &str,
) -> Result<Option<DataFile>, ResidencyError> {
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
pub(super) async fn subjects_before_after(
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
