//! Data residency on the SQL store (GDPR Chapter V): residency policies, subjects'
//! jurisdictions, and the findings of the last residency scan of each dataset.
//!
//! Subjects are named by the keyring's subject reference (a keyed hash, as in the locator
//! index), never by id; audit entries name them by pseudonym. Policy and jurisdiction changes
//! are audited in the same transaction; a scan's findings replace the previous scan's of the
//! same dataset in one transaction, so readers see one scan or the other, never a mix.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

use super::audit_chain::append_audit_in;
use super::db::{Store, db, fetch_in, now};
use super::rows::{corrupt, get_os, get_s, get_ts};
use super::{StoreError, StoreResult};
use crate::audit::NewAuditEntry;
use crate::domain::to_db;

/// Parameters per `IN (…)` lookup chunk.
const LOOKUP_CHUNK: usize = 100;
/// Rows per multi-row INSERT of recorded jurisdictions (5 parameters each).
const INSERT_CHUNK: usize = 64;

/// Where the rows of one jurisdiction's data subjects may be stored (GDPR Chapter V).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"jurisdiction": "EU", "regions": ["EU"], "updated_by": "user:1b2c…",
    "updated_at": "2025-02-01T09:00:00Z"}))]
pub struct ResidencyPolicy {
    /// Jurisdiction code, e.g. `EU`.
    pub jurisdiction: String,
    /// Regions allowed, in order of preference (ingest and remediation pick the first one the
    /// dataset has).
    pub regions: Vec<String>,
    /// Who set it (`user:<uuid>`).
    pub updated_by: String,
    /// When.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// The recorded jurisdiction of one data subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"subject_pseudonym": "9f86d0…", "jurisdiction": "EU", "source": "admin",
    "updated_by": "user:1b2c…", "updated_at": "2025-02-01T09:00:00Z"}))]
pub struct SubjectJurisdiction {
    /// The subject's keyed reference (the keyring's subject reference), never the id.
    #[serde(skip)]
    pub subject_ref: String,
    /// Jurisdiction code.
    pub jurisdiction: String,
    /// `admin` (set through the API) or `ingest:<dataset>` (recorded from a dataset's
    /// jurisdiction column).
    pub source: String,
    /// Who set it.
    pub updated_by: String,
    /// When.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// Outcome of the last residency scan of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScanStatus {
    /// Every row is stored in a region its subjects' jurisdictions allow.
    Clean,
    /// Some rows are not; see the violations.
    Violations,
    /// Lethe cannot tell: the dataset has no declared schema, or no region column.
    NotScannable,
}

impl ScanStatus {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Clean => "clean",
            Self::Violations => "violations",
            Self::NotScannable => "not_scannable",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "clean" => Self::Clean,
            "violations" => Self::Violations,
            "not_scannable" => Self::NotScannable,
            _ => return None,
        })
    }
}

/// The last residency scan of one dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"dataset_id": "5f0c…", "dataset": "running_app", "status": "violations",
    "scanned_at": "2025-02-01T09:00:00Z", "files_scanned": 120, "rows_scanned": 1200000,
    "violating_files": 2, "violating_rows": 310, "note": null}))]
pub struct ResidencyScan {
    /// Dataset id.
    pub dataset_id: String,
    /// Dataset name.
    pub dataset: String,
    /// Outcome.
    pub status: ScanStatus,
    /// When the scan finished.
    pub scanned_at: chrono::DateTime<chrono::Utc>,
    /// Data files read.
    pub files_scanned: u64,
    /// Rows read.
    pub rows_scanned: u64,
    /// Files holding at least one misplaced row.
    pub violating_files: u64,
    /// Misplaced rows in all files.
    pub violating_rows: u64,
    /// Why the dataset is not scannable, or files that could not be read.
    pub note: Option<String>,
}

/// One file holding rows stored outside a region their subjects' jurisdictions allow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"dataset_id": "5f0c…", "dataset": "running_app", "region": "US",
    "root_url": "s3://lake-us/running_app", "partition": "date=2025-01-07/region=US",
    "file": "date=2025-01-07/region=US/part-3f2a9c1b-00000.parquet", "rows": 310, "subjects": 4,
    "jurisdictions": ["EU"], "allowed_regions": ["EU"], "scanned_at": "2025-02-01T09:00:00Z"}))]
pub struct ResidencyViolation {
    /// Dataset id.
    pub dataset_id: String,
    /// Dataset name.
    pub dataset: String,
    /// The region the rows are stored in.
    pub region: String,
    /// The root holding the file.
    pub root_url: String,
    /// The file's Hive partition (its folder below the root), e.g. `date=2025-01-07/region=US`.
    pub partition: String,
    /// The file, relative to the root.
    pub file: String,
    /// Misplaced rows in the file.
    pub rows: u64,
    /// Distinct data subjects whose jurisdiction the rows break.
    pub subjects: u64,
    /// Their jurisdictions.
    pub jurisdictions: Vec<String>,
    /// Regions where all of these rows may be stored (the intersection of their policies).
    pub allowed_regions: Vec<String>,
    /// When the scan finished.
    pub scanned_at: chrono::DateTime<chrono::Utc>,
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn get_u64(row: &AnyRow, table: &'static str, col: &str) -> StoreResult<u64> {
    let n: i64 = row
        .try_get(col)
        .map_err(|e| corrupt(table, format!("{col}: {e}")))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn get_list(row: &AnyRow, table: &'static str, col: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(&get_s(row, table, col)?)
        .map_err(|e| corrupt(table, format!("{col}: {e}")))
}

fn list_json(values: &[String]) -> String {
    serde_json::to_string(values).expect("strings serialise")
}

const POLICY_COLS: &str = "jurisdiction, regions, updated_by, updated_at";
const SUBJECT_COLS: &str = "subject_ref, jurisdiction, source, updated_by, updated_at";
const SCAN_COLS: &str = "dataset_id, dataset, status, scanned_at, files_scanned, rows_scanned, \
    violating_files, violating_rows, note";
const VIOLATION_COLS: &str = "dataset_id, dataset, region, root_url, partition_path, file, \
    row_count, subject_count, jurisdictions, allowed_regions, scanned_at";

fn policy_from(row: &AnyRow) -> StoreResult<ResidencyPolicy> {
    let t = "residency_policies";
    Ok(ResidencyPolicy {
        jurisdiction: get_s(row, t, "jurisdiction")?,
        regions: get_list(row, t, "regions")?,
        updated_by: get_s(row, t, "updated_by")?,
        updated_at: get_ts(row, t, "updated_at")?,
    })
}

fn subject_from(row: &AnyRow) -> StoreResult<SubjectJurisdiction> {
    let t = "subject_jurisdictions";
    Ok(SubjectJurisdiction {
        subject_ref: get_s(row, t, "subject_ref")?,
        jurisdiction: get_s(row, t, "jurisdiction")?,
        source: get_s(row, t, "source")?,
        updated_by: get_s(row, t, "updated_by")?,
        updated_at: get_ts(row, t, "updated_at")?,
    })
}

fn scan_from(row: &AnyRow) -> StoreResult<ResidencyScan> {
    let t = "residency_scans";
    let status = get_s(row, t, "status")?;
    Ok(ResidencyScan {
        dataset_id: get_s(row, t, "dataset_id")?,
        dataset: get_s(row, t, "dataset")?,
        status: ScanStatus::parse(&status).ok_or_else(|| corrupt(t, format!("status {status}")))?,
        scanned_at: get_ts(row, t, "scanned_at")?,
        files_scanned: get_u64(row, t, "files_scanned")?,
        rows_scanned: get_u64(row, t, "rows_scanned")?,
        violating_files: get_u64(row, t, "violating_files")?,
        violating_rows: get_u64(row, t, "violating_rows")?,
        note: get_os(row, t, "note")?,
    })
}

fn violation_from(row: &AnyRow) -> StoreResult<ResidencyViolation> {
    let t = "residency_violations";
    Ok(ResidencyViolation {
        dataset_id: get_s(row, t, "dataset_id")?,
        dataset: get_s(row, t, "dataset")?,
        region: get_s(row, t, "region")?,
        root_url: get_s(row, t, "root_url")?,
        partition: get_s(row, t, "partition_path")?,
        file: get_s(row, t, "file")?,
        rows: get_u64(row, t, "row_count")?,
        subjects: get_u64(row, t, "subject_count")?,
        jurisdictions: get_list(row, t, "jurisdictions")?,
        allowed_regions: get_list(row, t, "allowed_regions")?,
        scanned_at: get_ts(row, t, "scanned_at")?,
    })
}

impl Store {
    /// Sets (creates or replaces) the policy of `jurisdiction`: the regions, in order of
    /// preference, where its subjects' rows may be stored; with its audit entry, in one
    /// transaction.
    pub async fn set_residency_policy(
        &self,
        jurisdiction: &str,
        regions: &[String],
        actor: &str,
        audit: NewAuditEntry,
    ) -> StoreResult<ResidencyPolicy> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO residency_policies ({POLICY_COLS}) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (jurisdiction) DO UPDATE SET regions = excluded.regions, \
               updated_by = excluded.updated_by, updated_at = excluded.updated_at \
             RETURNING {POLICY_COLS}"
        )))
        .bind(jurisdiction)
        .bind(list_json(regions))
        .bind(actor)
        .bind(to_db(now()))
        .fetch_one(&mut *tx)
        .await
        .map_err(db("setting a residency policy"))?;
        let policy = policy_from(&row)?;
        append_audit_in(&mut tx, audit).await?;
        tx.commit()
            .await
            .map_err(db("committing a residency policy"))?;
        Ok(policy)
    }

    /// Deletes the policy of `jurisdiction` (audited); its subjects are unrestricted from then
    /// on. `NotFound` when there is none.
    pub async fn delete_residency_policy(
        &self,
        jurisdiction: &str,
        audit: NewAuditEntry,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM residency_policies WHERE jurisdiction = $1")
            .bind(jurisdiction)
            .execute(&mut *tx)
            .await
            .map_err(db("deleting a residency policy"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                entity: "residency policy",
                id: jurisdiction.to_string(),
            });
        }
        append_audit_in(&mut tx, audit).await?;
        tx.commit()
            .await
            .map_err(db("committing a residency policy deletion"))
    }

    /// Every residency policy, by jurisdiction.
    pub async fn residency_policies(&self) -> StoreResult<Vec<ResidencyPolicy>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {POLICY_COLS} FROM residency_policies ORDER BY jurisdiction"
        )))
        .fetch_all(self.pool())
        .await
        .map_err(db("listing residency policies"))?
        .iter()
        .map(policy_from)
        .collect()
    }

    /// Sets the jurisdiction of the subject with keyed reference `subject_ref` (source
    /// `admin`), replacing any recorded one, with its audit entry, in one transaction.
    pub async fn set_subject_jurisdiction(
        &self,
        subject_ref: &str,
        jurisdiction: &str,
        actor: &str,
        audit: NewAuditEntry,
    ) -> StoreResult<SubjectJurisdiction> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO subject_jurisdictions ({SUBJECT_COLS}) VALUES ($1, $2, 'admin', $3, $4) \
             ON CONFLICT (subject_ref) DO UPDATE SET jurisdiction = excluded.jurisdiction, \
               source = excluded.source, updated_by = excluded.updated_by, \
               updated_at = excluded.updated_at \
             RETURNING {SUBJECT_COLS}"
        )))
        .bind(subject_ref)
        .bind(jurisdiction)
        .bind(actor)
        .bind(to_db(now()))
        .fetch_one(&mut *tx)
        .await
        .map_err(db("setting a subject's jurisdiction"))?;
        let set = subject_from(&row)?;
        append_audit_in(&mut tx, audit).await?;
        tx.commit()
            .await
            .map_err(db("committing a subject's jurisdiction"))?;
        Ok(set)
    }

    /// The recorded jurisdiction of one subject (by keyed reference), if any.
    pub async fn subject_jurisdiction(
        &self,
        subject_ref: &str,
    ) -> StoreResult<Option<SubjectJurisdiction>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {SUBJECT_COLS} FROM subject_jurisdictions WHERE subject_ref = $1"
        )))
        .bind(subject_ref)
        .fetch_optional(self.pool())
        .await
        .map_err(db("reading a subject's jurisdiction"))?
        .as_ref()
        .map(subject_from)
        .transpose()
    }

    /// The recorded jurisdictions of the subjects among `subject_refs` that have one, as
    /// `(subject_ref, jurisdiction)`.
    pub async fn subject_jurisdictions(
        &self,
        subject_refs: &[String],
    ) -> StoreResult<Vec<(String, String)>> {
        let mut conn = self.pool().acquire().await.map_err(db("connecting"))?;
        let rows = fetch_in(&mut conn, &[], subject_refs, LOOKUP_CHUNK, |list| {
            format!(
                "SELECT subject_ref, jurisdiction FROM subject_jurisdictions \
                 WHERE subject_ref IN ({list})"
            )
        })
        .await
        .map_err(db("looking up subjects' jurisdictions"))?;
        rows.iter()
            .map(|row| {
                Ok((
                    get_s(row, "subject_jurisdictions", "subject_ref")?,
                    get_s(row, "subject_jurisdictions", "jurisdiction")?,
                ))
            })
            .collect()
    }

    /// Records `(subject_ref, jurisdiction)` for subjects that have no jurisdiction yet (ingest
    /// from a dataset's jurisdiction column; `source` e.g. `ingest:running_app`); recorded
    /// ones are left as they are. Returns how many were recorded.
    pub async fn record_subject_jurisdictions(
        &self,
        entries: &[(String, String)],
        source: &str,
        actor: &str,
    ) -> StoreResult<u64> {
        if entries.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        let at = to_db(now());
        let mut recorded = 0;
        for chunk in entries.chunks(INSERT_CHUNK) {
            let values: Vec<String> = (0..chunk.len())
                .map(|r| {
                    let b = r * 5;
                    format!(
                        "(${}, ${}, ${}, ${}, ${})",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO subject_jurisdictions ({SUBJECT_COLS}) VALUES {} \
                 ON CONFLICT (subject_ref) DO NOTHING",
                values.join(", ")
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (subject_ref, jurisdiction) in chunk {
                query = query
                    .bind(subject_ref)
                    .bind(jurisdiction)
                    .bind(source)
                    .bind(actor)
                    .bind(&at);
            }
            recorded += query
                .execute(&mut *tx)
                .await
                .map_err(db("recording subjects' jurisdictions"))?
                .rows_affected();
        }
        tx.commit()
            .await
            .map_err(db("committing subjects' jurisdictions"))?;
        Ok(recorded)
    }

    /// Replaces the last residency scan of `scan.dataset_id` and its violations by these, and
    /// appends `audit` if given, in one transaction.
    pub async fn record_residency_scan(
        &self,
        scan: &ResidencyScan,
        violations: &[ResidencyViolation],
        audit: Option<NewAuditEntry>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        for table in ["residency_violations", "residency_scans"] {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE dataset_id = $1"
            )))
            .bind(&scan.dataset_id)
            .execute(&mut *tx)
            .await
            .map_err(db("forgetting the previous residency scan"))?;
        }
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO residency_scans ({SCAN_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        )))
        .bind(&scan.dataset_id)
        .bind(&scan.dataset)
        .bind(scan.status.as_str())
        .bind(to_db(scan.scanned_at))
        .bind(to_i64(scan.files_scanned))
        .bind(to_i64(scan.rows_scanned))
        .bind(to_i64(scan.violating_files))
        .bind(to_i64(scan.violating_rows))
        .bind(&scan.note)
        .execute(&mut *tx)
        .await
        .map_err(db("recording a residency scan"))?;
        for v in violations {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO residency_violations (id, {VIOLATION_COLS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            )))
            .bind(Uuid::new_v4().to_string())
            .bind(&v.dataset_id)
            .bind(&v.dataset)
            .bind(&v.region)
            .bind(&v.root_url)
            .bind(&v.partition)
            .bind(&v.file)
            .bind(to_i64(v.rows))
            .bind(to_i64(v.subjects))
            .bind(list_json(&v.jurisdictions))
            .bind(list_json(&v.allowed_regions))
            .bind(to_db(v.scanned_at))
            .execute(&mut *tx)
            .await
            .map_err(db("recording a residency violation"))?;
        }
        if let Some(audit) = audit {
            append_audit_in(&mut tx, audit).await?;
        }
        tx.commit().await.map_err(db("committing a residency scan"))
    }

    /// The last residency scan of every scanned dataset, by dataset name.
    pub async fn residency_scans(&self) -> StoreResult<Vec<ResidencyScan>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {SCAN_COLS} FROM residency_scans ORDER BY dataset, dataset_id"
        )))
        .fetch_all(self.pool())
        .await
        .map_err(db("listing residency scans"))?
        .iter()
        .map(scan_from)
        .collect()
    }

    /// The violations found by the last scans (of one dataset, or of all), by dataset, root
    /// and file.
    pub async fn residency_violations(
        &self,
        dataset_id: Option<&str>,
    ) -> StoreResult<Vec<ResidencyViolation>> {
        let filter = if dataset_id.is_some() {
            "WHERE dataset_id = $1"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {VIOLATION_COLS} FROM residency_violations {filter} \
             ORDER BY dataset, root_url, file"
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        if let Some(id) = dataset_id {
            query = query.bind(id);
        }
        query
            .fetch_all(self.pool())
            .await
            .map_err(db("listing residency violations"))?
            .iter()
            .map(violation_from)
            .collect()
    }
}
