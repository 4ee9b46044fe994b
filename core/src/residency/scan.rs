//! The residency scan: per dataset, root and file, the rows stored outside the regions their
//! subjects' jurisdictions allow (GDPR Chapter V).
//!
//! Each file of each root is read for its subject columns (and its region column when the
//! region is stored in the files) only. Subjects are looked up by keyed reference, once per
//! scan. The findings of a dataset replace its previous scan's in one transaction
//! ([`Store::record_residency_scan`]), audited as `residency.scanned` (counts only: no subject,
//! no file content).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow_array::Array;
use serde::Serialize;
use serde_json::json;

use super::ResidencyError;
use super::rule::{RegionSource, Rule};
use crate::audit::NewAuditEntry;
use crate::domain::DatasetSchema;
use crate::keyring::Keyring;
use crate::lake::columns::read_columns;
use crate::lake::{DataFile, LakeRoot, subject_values};
use crate::store::{Dataset, DatasetRoot, ResidencyScan, ResidencyViolation, ScanStatus, Store};
use crate::store::{Jurisdictions, PolicyBook};

/// What the scan of one dataset found (and recorded).
#[derive(Debug, Clone, Serialize)]
pub struct DatasetScan {
    /// The dataset's scan record.
    pub scan: ResidencyScan,
    /// Its violations: one per file and region.
    pub violations: Vec<ResidencyViolation>,
}

/// Misplaced rows of one file that are stored in one region.
#[derive(Debug, Clone, Default)]
pub(crate) struct RegionFinding {
    /// Misplaced rows.
    pub rows: u64,
    /// Of which rows no region of the dataset can take.
    pub unmovable_rows: u64,
    /// Subjects (ids) whose jurisdiction the rows break.
    pub subjects: BTreeSet<String>,
    /// Of which subjects of rows no region of the dataset can take.
    pub unmovable_subjects: BTreeSet<String>,
    /// Their jurisdictions.
    pub jurisdictions: BTreeSet<String>,
    /// Regions their jurisdictions allow.
    pub allowed: BTreeSet<String>,
}

/// One file holding misplaced rows.
#[derive(Debug, Clone)]
pub(crate) struct FileFinding {
    /// The root the file is under.
    pub root: DatasetRoot,
    /// The file as listed.
    pub file: DataFile,
    /// The rule for its rows (restricted subjects of the file only).
    pub rule: Rule,
    /// Misplaced rows by the region they are stored in.
    pub by_region: BTreeMap<String, RegionFinding>,
}

impl FileFinding {
    /// Misplaced rows that can move.
    pub fn movable_rows(&self) -> u64 {
        self.by_region
            .values()
            .map(|r| r.rows - r.unmovable_rows)
            .sum()
    }
}

/// Everything the scan of one dataset saw.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    /// Why the dataset cannot be scanned, if it cannot.
    pub not_scannable: Option<String>,
    /// Files read.
    pub files_scanned: u64,
    /// Rows read.
    pub rows_scanned: u64,
    /// Files holding misplaced rows.
    pub files: Vec<FileFinding>,
    /// Files that could not be read: `(root url, file, error)`.
    pub failures: Vec<(String, String, String)>,
}

/// Where the rows of `file`, under `root`, are stored (see the module docs of
/// [`crate::residency`]); `None` when the dataset does not say.
pub(crate) fn region_of(
    schema: &DatasetSchema,
    root: &DatasetRoot,
    file: &DataFile,
) -> Option<RegionSource> {
    if let Some(region) = &root.region {
        return Some(RegionSource::Fixed(region.clone()));
    }
    let column = schema.region_column.as_ref()?;
    if let Some(key) = schema.region_partition()
        && let Some((_, value)) = file.partition.iter().find(|(k, _)| k == key)
    {
        return Some(RegionSource::Fixed(value.clone()));
    }
    (!schema.in_path_only(column)).then(|| RegionSource::Column(column.clone()))
}

/// Scans every root of `dataset` (see [`find`]), records the findings in place of the
/// previous scan's, audited as `residency.scanned` by `actor`, and returns them.
///
/// # Errors
/// [`ResidencyError`] when a root cannot be listed or the database fails; unreadable files
/// are named in the scan's `note` instead.
#[tracing::instrument(skip_all, fields(dataset = %dataset.name))]
pub async fn scan_dataset(
    store: &Arc<Store>,
    keyring: &Keyring,
    policies: &PolicyBook,
    dataset: &Dataset,
    actor: &str,
) -> Result<DatasetScan, ResidencyError> {
    let mut jurisdictions = Jurisdictions::new(store.as_ref(), keyring);
    let findings = find(policies, dataset, &mut jurisdictions).await?;
    let scanned = records(dataset, &findings);
    record(store, &scanned, actor).await?;
    tracing::info!(
        status = scanned.scan.status.as_str(),
        files = scanned.scan.files_scanned,
        violating_files = scanned.scan.violating_files,
        violating_rows = scanned.scan.violating_rows,
        "residency scan finished"
    );
    Ok(scanned)
}

/// Records `scanned` in place of the dataset's previous scan, audited as `residency.scanned`.
pub(crate) async fn record(
    store: &Arc<Store>,
    scanned: &DatasetScan,
    actor: &str,
) -> Result<(), ResidencyError> {
    let s = &scanned.scan;
    let audit = NewAuditEntry::new(actor, "residency.scanned").details(json!({
        "dataset_id": s.dataset_id,
        "dataset": s.dataset,
        "status": s.status,
        "files_scanned": s.files_scanned,
        "violating_files": s.violating_files,
        "violating_rows": s.violating_rows,
    }));
    store
        .record_residency_scan(s, &scanned.violations, Some(audit))
        .await?;
    Ok(())
}

/// Reads every file of every root of `dataset` and collects the files holding misplaced rows.
///
/// # Errors
/// [`ResidencyError`] when a root cannot be parsed or listed, or the database fails.
pub(crate) async fn find(
    policies: &PolicyBook,
    dataset: &Dataset,
    jurisdictions: &mut Jurisdictions<'_>,
) -> Result<Findings, ResidencyError> {
    let mut findings = Findings::default();
    let Some(schema) = &dataset.schema else {
        findings.not_scannable = Some(
            "the dataset has no declared schema (written by others): Lethe scans the datasets it writes"
                .into(),
        );
        return Ok(findings);
    };
    if schema.region_column.is_none() {
        findings.not_scannable =
            Some("the dataset's schema has no region_column: its rows have no region".into());
        return Ok(findings);
    }
    let dataset_regions = schema.dataset_regions();
    for root in dataset.roots() {
        let lake = LakeRoot::parse(&root.url)?;
        for file in lake.list_files().await? {
            let Some(region) = region_of(schema, &root, &file) else {
                continue;
            };
            let mut columns = schema.subject_columns.clone();
            if let RegionSource::Column(c) = &region {
                columns.push(c.clone());
            }
            let batches = match read_columns(&lake, &file, &columns).await {
                Ok((batches, _)) => batches,
                Err(e) => {
                    tracing::warn!(file = %file.relative, error = %e, "file not scanned");
                    findings.failures.push((
                        root.url.clone(),
                        file.relative.clone(),
                        e.to_string(),
                    ));
                    continue;
                }
            };
            findings.files_scanned += 1;
            let mut subjects: BTreeSet<String> = BTreeSet::new();
            for b in &batches {
                findings.rows_scanned += b.num_rows() as u64;
                for c in &schema.subject_columns {
                    if let Some(values) = subject_values(b, c)
                        .map_err(|e| crate::lake::LakeError::arrow(&file.relative, e))?
                    {
                        subjects.extend(values.iter().flatten().map(String::from));
                    }
                }
            }
            if policies.is_empty() {
                continue;
            }
            jurisdictions
                .resolve(subjects.iter().map(String::as_str))
                .await?;
            let allowed: HashMap<String, Vec<String>> = subjects
                .iter()
                .filter_map(|s| {
                    let regions = policies.allowed(jurisdictions.get(s)?)?;
                    Some((s.clone(), regions.to_vec()))
                })
                .collect();
            if allowed.is_empty() {
                continue;
            }
            let rule = Rule {
                subject_columns: schema.subject_columns.clone(),
                region,
                allowed,
                dataset_regions: dataset_regions.clone(),
            };
            let by_region = classify_file(&rule, &batches, jurisdictions)
                .map_err(|e| crate::lake::LakeError::arrow(&file.relative, e))?;
            if !by_region.is_empty() {
                findings.files.push(FileFinding {
                    root: root.clone(),
                    file,
                    rule,
                    by_region,
                });
            }
        }
    }
    Ok(findings)
}

/// The misplaced rows of one file's batches, by the region they are stored in.
fn classify_file(
    rule: &Rule,
    batches: &[arrow_array::RecordBatch],
    jurisdictions: &Jurisdictions<'_>,
) -> Result<BTreeMap<String, RegionFinding>, arrow_schema::ArrowError> {
    let mut by_region: BTreeMap<String, RegionFinding> = BTreeMap::new();
    for batch in batches {
        let placed = rule.classify(batch)?;
        if placed.iter().all(Option::is_none) {
            continue;
        }
        let columns: Vec<arrow_array::StringArray> = rule
            .subject_columns
            .iter()
            .filter_map(|c| subject_values(batch, c).transpose())
            .collect::<Result<_, _>>()?;
        for (row, misplaced) in placed.iter().enumerate() {
            let Some(m) = misplaced else { continue };
            let found = by_region.entry(m.region.clone()).or_default();
            found.rows += 1;
            if m.target.is_none() {
                found.unmovable_rows += 1;
            }
            for col in &columns {
                if !col.is_valid(row) {
                    continue;
                }
                let subject = col.value(row);
                let Some(allowed) = rule.allowed.get(subject) else {
                    continue;
                };
                if allowed.contains(&m.region) {
                    continue;
                }
                found.subjects.insert(subject.to_string());
                if m.target.is_none() {
                    found.unmovable_subjects.insert(subject.to_string());
                }
                if let Some(j) = jurisdictions.get(subject) {
                    found.jurisdictions.insert(j.to_string());
                }
                found.allowed.extend(allowed.iter().cloned());
            }
        }
    }
    Ok(by_region)
}

/// The scan record and violations of `findings`.
pub(crate) fn records(dataset: &Dataset, findings: &Findings) -> DatasetScan {
    let scanned_at = chrono::Utc::now();
    let mut violations = Vec::new();
    for f in &findings.files {
        let partition = f
            .file
            .relative
            .rsplit_once('/')
            .map(|(dir, _)| dir.to_string())
            .unwrap_or_default();
        for (region, found) in &f.by_region {
            violations.push(ResidencyViolation {
                dataset_id: dataset.id.clone(),
                dataset: dataset.name.clone(),
                region: region.clone(),
                root_url: f.root.url.clone(),
                partition: partition.clone(),
                file: f.file.relative.clone(),
                rows: found.rows,
                subjects: found.subjects.len() as u64,
                jurisdictions: found.jurisdictions.iter().cloned().collect(),
                allowed_regions: found.allowed.iter().cloned().collect(),
                scanned_at,
            });
        }
    }
    let violating_rows = violations.iter().map(|v| v.rows).sum();
    let status = if findings.not_scannable.is_some() {
        ScanStatus::NotScannable
    } else if violations.is_empty() {
        ScanStatus::Clean
    } else {
        ScanStatus::Violations
    };
    let note = findings.not_scannable.clone().or_else(|| {
        (!findings.failures.is_empty()).then(|| {
            let named: Vec<String> = findings
                .failures
                .iter()
                .map(|(root, file, error)| format!("{root}: {file}: {error}"))
                .collect();
            format!(
                "{} file(s) could not be read and were not scanned: {}",
                named.len(),
                named.join("; ")
            )
        })
    });
    DatasetScan {
        scan: ResidencyScan {
            dataset_id: dataset.id.clone(),
            dataset: dataset.name.clone(),
            status,
            scanned_at,
            files_scanned: findings.files_scanned,
            rows_scanned: findings.rows_scanned,
            violating_files: findings.files.len() as u64,
            violating_rows,
            note,
        },
        violations,
    }
}
