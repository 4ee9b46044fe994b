//! Compaction: merge a partition's small files into files of the target size, sorted by
//! subject with bloom filters, applying pending erasures (rows of subjects whose key was
//! destroyed) in the same pass, and keeping the locator index in step.
//!
//! Crash safety, per partition, with a manifest object `_lethe/compaction-<tag>.json` (hidden
//! from listings):
//!
//! 1. the manifest is written (`writing`: inputs and planned outputs);
//! 2. the outputs are written (each appears whole, or not at all);
//! 3. the index swaps inputs for outputs in one transaction; the manifest becomes `committed`;
//! 4. the inputs are deleted, then the manifest.
//!
//! Every compaction first finishes what an interrupted one left: a `writing` manifest's outputs
//! are deleted (back to the old files), a `committed` one's inputs are deleted (forward to the
//! new files). Between steps 2 and 4 a reader listing the folder can see the rows twice; Lethe's
//! own readers never run on a dataset being compacted by the same worker, and the window closes
//! at the next compaction at the latest. (A table format with a commit log would close it; see
//! `docs/erasure.md`.)
//!
//! A dataset with one root per region (data residency) is compacted root by root; files named
//! by a pending residency remediation manifest (its source and its outputs) are left alone
//! until remediation finishes them (see [`crate::residency::remediate`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::NewAuditEntry;
use crate::datasets::shield_held_subjects;
use crate::domain::DatasetSchema;
use crate::ingest::write::{WrittenFile, encode_files, sort_by_subject, upload};
use crate::ingest::{IngestError, index_entry, remove_written};
use crate::keyring::Keyring;
use crate::lake::export::read_whole_file;
use crate::lake::rewrite::{ErasePolicy, erase_rows, subject_values};
use crate::lake::{DataFile, LakeRoot};
use crate::store::{
    Dataset, HeldDatasetLease, IndexedFile, LeaseMode, Store, process_lease_holder,
    with_dataset_lease,
};

/// Folder (under the dataset root) of compaction manifests; hidden from listings.
const MANIFEST_DIR: &str = "_lethe";

/// A file is "small", and worth merging, below this fraction of the target size.
const SMALL_FRACTION: f64 = 0.75;

/// What [`compact`] did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct CompactReport {
    /// Dataset name.
    pub dataset: String,
    /// Partitions whose files were merged.
    pub partitions_compacted: u64,
    /// Files merged away.
    pub files_in: u64,
    /// Files written.
    pub files_out: u64,
    /// Rows read.
    pub rows_in: u64,
    /// Rows written.
    pub rows_out: u64,
    /// Rows removed because their subject was erased (pending erasures applied).
    pub rows_erased: u64,
    /// A legal hold (GDPR Art. 17(3)) is on the dataset: files were merged, but no row of an
    /// erased subject was removed (the hold keeps the data as it is).
    pub erasures_held: bool,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Interrupted compactions finished first (rolled back or forward).
    pub recovered: u64,
    /// Wall-clock seconds.
    pub elapsed_s: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    state: String,
    partition: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

fn manifest_path(tag: &str) -> String {
    format!("{MANIFEST_DIR}/compaction-{tag}.json")
}

/// Finishes interrupted compactions of `root`; returns how many.
async fn recover(root: &LakeRoot) -> Result<u64, IngestError> {
    let mut recovered = 0;
    for (path, bytes) in root.read_objects(MANIFEST_DIR, "compaction-").await? {
        let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) else {
            tracing::warn!(manifest = %path, "unreadable compaction manifest left alone");
            continue;
        };
        let undo = if m.state == "committed" {
            &m.inputs
        } else {
            &m.outputs
        };
        for f in undo {
            root.delete_if_exists(f).await?;
        }
        root.delete_if_exists(&path).await?;
        tracing::warn!(partition = %m.partition, state = %m.state, "interrupted compaction finished");
        recovered += 1;
    }
    Ok(recovered)
}

/// Compacts every partition of `dataset` holding at least two small files (below 75 % of the
/// layout's target size), as `actor` (audited as `dataset.compacted`).
///
/// # Errors
/// [`IngestError::NotManaged`] for a dataset without schema; lake, store and keyring errors
/// (each partition is all-or-nothing; partitions done before an error stay done).
///
/// Holds the dataset exclusively meanwhile ([`LeaseMode::Exclusive`]): it deletes the files it
/// merges, so no erasure or rectification may rewrite one of them at the same time. A busy
/// dataset is [`StoreError::DatasetBusy`](crate::store::StoreError::DatasetBusy) inside
/// [`IngestError::Store`].
#[tracing::instrument(skip_all, fields(dataset = %dataset.name))]
pub async fn compact(
    store: &Arc<Store>,
    keyring: &Arc<Keyring>,
    dataset: &Dataset,
    actor: &str,
) -> Result<CompactReport, IngestError> {
    with_dataset_lease(
        store,
        &dataset.id,
        &process_lease_holder(actor),
        LeaseMode::Exclusive,
        "compaction",
        |lease| compact_leased(store, keyring, dataset, actor, lease),
    )
    .await
}

/// [`compact`] once the dataset lease is held.
async fn compact_leased(
    store: &Arc<Store>,
    keyring: &Arc<Keyring>,
    dataset: &Dataset,
    actor: &str,
    lease: Arc<HeldDatasetLease>,
) -> Result<CompactReport, IngestError> {
    let started = Instant::now();
    let schema = Arc::new(
        dataset
            .schema
            .clone()
            .ok_or_else(|| IngestError::NotManaged {
                dataset: dataset.name.clone(),
            })?,
    );
    let holds = store.list_legal_holds(true).await?;
    let mut report = CompactReport {
        dataset: dataset.name.clone(),
        erasures_held: holds
            .iter()
            .any(|h| h.dataset_id.as_deref() == Some(dataset.id.as_str())),
        ..CompactReport::default()
    };
    let small = (schema.layout.target_file_bytes as f64 * SMALL_FRACTION) as u64;
    let mut policy = ErasePolicy::from_schema(&schema);
    // Rows an erased subject shares with a held one stay whole, as in an erasure task.
    if let Some(shielded) = shield_held_subjects(&holds, keyring.hasher(), &policy) {
        policy = policy.shielding(shielded);
    }
    let held = crate::residency::remediate::held_files(dataset).await?;
    for dataset_root in dataset.roots() {
        let root = LakeRoot::parse(&dataset_root.url)?;
        report.recovered += recover(&root).await?;
        let mut partitions: BTreeMap<String, Vec<DataFile>> = BTreeMap::new();
        for file in root.list_files().await? {
            let key = (dataset_root.url.clone(), file.relative.clone());
            if file.size < small && !held.contains(&key) {
                let dir = file
                    .relative
                    .rsplit_once('/')
                    .map(|(d, _)| d.to_string())
                    .unwrap_or_default();
                partitions.entry(dir).or_default().push(file);
            }
        }
        for (partition, files) in partitions {
            if files.len() < 2 {
                continue;
            }
            compact_partition(
                store,
                keyring,
                &lease,
                dataset,
                &schema,
                &policy,
                (&root, dataset_root.region.as_deref()),
                &partition,
                files,
                &mut report,
            )
            .await?;
        }
    }
    report.elapsed_s = started.elapsed().as_secs_f64();
    let audit = NewAuditEntry::new(actor, "dataset.compacted").details(json!({
        "dataset_id": dataset.id,
        "dataset": dataset.name,
        "partitions": report.partitions_compacted,
        "files_in": report.files_in,
        "files_out": report.files_out,
        "rows_erased": report.rows_erased,
        "erasures_held": report.erasures_held,
        "recovered": report.recovered,
    }));
    store.append_audit(audit).await?;
    tracing::info!(
        partitions = report.partitions_compacted,
        files_in = report.files_in,
        files_out = report.files_out,
        rows_erased = report.rows_erased,
        "compaction finished"
    );
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn compact_partition(
    store: &Arc<Store>,
    keyring: &Arc<Keyring>,
    lease: &HeldDatasetLease,
    dataset: &Dataset,
    schema: &Arc<DatasetSchema>,
    policy: &ErasePolicy,
    (root, region): (&LakeRoot, Option<&str>),
    partition: &str,
    files: Vec<DataFile>,
    report: &mut CompactReport,
) -> Result<(), IngestError> {
    let file_schema = schema.file_schema();
    let mut batches = Vec::new();
    let mut inputs = Vec::new();
    let mut bytes_in = 0;
    for file in &files {
        let (found, mut rows) = read_whole_file(root, file).await?;
        if found.fields() != file_schema.fields() {
            tracing::warn!(file = %file.relative, "not in the dataset's schema; left out of compaction");
            continue;
        }
        for b in &mut rows {
            *b = b
                .clone()
                .with_schema(Arc::clone(&file_schema))
                .map_err(|e| IngestError::Write(e.to_string()))?;
        }
        batches.extend(rows);
        inputs.push(file.relative.clone());
        bytes_in += file.size;
    }
    if inputs.len() < 2 {
        return Ok(());
    }
    let merged = arrow_select::concat::concat_batches(&file_schema, &batches)
        .map_err(|e| IngestError::Write(e.to_string()))?;
    drop(batches);
    let rows_in = merged.num_rows() as u64;

    // Pending erasures: rows of subjects whose key is destroyed go now.
    let mut subjects = HashSet::new();
    for c in &schema.subject_columns {
        if let Some(v) =
            subject_values(&merged, c).map_err(|e| IngestError::Write(e.to_string()))?
        {
            subjects.extend(v.iter().flatten().map(String::from));
        }
    }
    // Under a dataset hold, pending erasures wait for its release.
    let erased = if report.erasures_held {
        HashSet::new()
    } else {
        keyring
            .shredded_among(subjects.iter().map(String::as_str))
            .await?
    };
    let kept = erase_rows(&merged, policy, &|s| erased.contains(s))
        .map_err(|e| IngestError::Write(e.to_string()))?;

    let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let encoded = {
        let (schema, batch, name) = (Arc::clone(schema), kept.batch, dataset.name.clone());
        crate::lake::run_blocking(move || {
            let sorted = sort_by_subject(&schema, &batch)?;
            encode_files(&name, &schema, &sorted)
        })
        .await??
    };
    let outputs: Vec<String> = (0..encoded.len())
        .map(|i| {
            if partition.is_empty() {
                format!("part-{tag}-c{i:04}.parquet")
            } else {
                format!("{partition}/part-{tag}-c{i:04}.parquet")
            }
        })
        .collect();
    let mut manifest = Manifest {
        state: "writing".into(),
        partition: partition.to_string(),
        inputs: inputs.clone(),
        outputs: outputs.clone(),
    };
    root.put_json(&manifest_path(&tag), &manifest).await?;
    let mut written: Vec<WrittenFile> = Vec::new();
    for ((bytes, rows, subjects), path) in encoded.into_iter().zip(&outputs) {
        match upload(root, path, bytes).await {
            Ok(size) => written.push(WrittenFile {
                path: path.clone(),
                region: region.map(String::from),
                rows,
                bytes: size,
                subjects,
            }),
            Err(e) => {
                remove_written(root, &written).await;
                return Err(e);
            }
        }
    }
    // The commit point: from here the inputs are deleted. Only while the dataset is still ours
    // without a gap; otherwise a rewrite may have swapped an input meanwhile, and deleting it
    // would undo that rewrite.
    if let Err(e) = lease.confirm().await {
        remove_written(root, &written).await;
        root.delete_if_exists(&manifest_path(&tag)).await?;
        return Err(e.into());
    }
    let indexed: Vec<IndexedFile> = written.iter().map(|f| index_entry(keyring, f)).collect();
    store.index_files(&dataset.id, &indexed, &inputs).await?;
    manifest.state = "committed".into();
    root.put_json(&manifest_path(&tag), &manifest).await?;
    for input in &inputs {
        root.delete_if_exists(input).await?;
    }
    root.delete_if_exists(&manifest_path(&tag)).await?;

    report.partitions_compacted += 1;
    report.files_in += inputs.len() as u64;
    report.files_out += written.len() as u64;
    report.rows_in += rows_in;
    report.rows_out += written.iter().map(|f| f.rows).sum::<u64>();
    report.rows_erased += kept.rows_removed;
    report.bytes_in += bytes_in;
    report.bytes_out += written.iter().map(|f| f.bytes).sum::<u64>();
    tracing::info!(
        partition,
        files_in = inputs.len(),
        files_out = written.len(),
        "partition compacted"
    );
    Ok(())
}
