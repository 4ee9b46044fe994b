//! Data residency on a real SQLite store and local roots, one per region: ingest routing and
//! refusals, the scan of a lake with planted violations, and their remediation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, StringArray};
use bytes::Bytes;
use lethe_core::audit::NewAuditEntry;
use lethe_core::domain::DatasetSchema;
use lethe_core::ingest::{IngestError, InputFormat, ingest};
use lethe_core::keyring::{Kek, Keyring, SubjectHasher};
use lethe_core::lake::CommitGuard;
use lethe_core::residency::{remediate_datasets, scan_datasets};
use lethe_core::store::{AuditFilter, Dataset, NewDataset, ScanStatus, Store};
use secrecy::SecretString;
use serde_json::{Value, json};

struct Env {
    dir: tempfile::TempDir,
    store: Arc<Store>,
    keyring: Arc<Keyring>,
}

impl Env {
    fn root(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("lethe.db").display());
    let sql = Arc::new(Store::connect(&SecretString::from(url), 2).await.unwrap());
    let keyring = Arc::new(Keyring::new(
        Kek::generate(),
        sql.clone(),
        SubjectHasher::new(&[7u8; 32]).unwrap(),
    ));
    for root in ["home", "eu", "us"] {
        std::fs::create_dir_all(dir.path().join(root)).unwrap();
    }
    Env {
        dir,
        store: sql,
        keyring,
    }
}

/// The running-app events with one root per region (EU, US) and a jurisdiction column.
fn schema(env: &Env) -> DatasetSchema {
    serde_json::from_value(json!({
        "subject_columns": ["user_id"],
        "columns": [
            {"name": "event_id", "type": "string"},
            {"name": "user_id", "type": "string"},
            {"name": "ts", "type": "timestamp"},
            {"name": "region", "type": "string"},
            {"name": "country", "type": "string", "nullable": true},
            {"name": "calories", "type": "int32"},
            {"name": "email", "type": "string", "pii": "encrypt"}
        ],
        "partition_by": [{"name": "date", "source": "ts", "transform": "day"},
                         {"name": "region", "source": "region"}],
        "region_column": "region",
        "jurisdiction_column": "country",
        "region_roots": {
            "EU": env.root("eu").display().to_string(),
            "US": env.root("us").display().to_string()
        }
    }))
    .unwrap()
}

async fn register(env: &Env, schema: DatasetSchema) -> Dataset {
    schema.validate().unwrap();
    env.store
        .create_dataset(
            NewDataset {
                name: "events".into(),
                root_url: env.root("home").display().to_string(),
                subject_column: "user_id".into(),
                partition_columns: vec!["date".into(), "region".into()],
                created_by: "test".into(),
                schema: Some(schema),
                format: Default::default(),
                iceberg: None,
            },
            NewAuditEntry::new("test", "dataset.registered"),
        )
        .await
        .unwrap()
}

fn row(i: usize, user: &str, region: &str, country: Option<&str>) -> Value {
    json!({
        "event_id": format!("e-{i}"),
        "user_id": user,
        "ts": format!("2025-01-0{}T10:00:00Z", 1 + i % 2),
        "region": region,
        "country": country,
        "calories": 100 + i,
        "email": format!("{user}@example.com"),
    })
}

fn jsonl(rows: &[Value]) -> Bytes {
    Bytes::from(rows.iter().map(|r| format!("{r}\n")).collect::<String>())
}

async fn put_policy(env: &Env, jurisdiction: &str, regions: &[&str]) {
    let regions: Vec<String> = regions.iter().map(|r| r.to_string()).collect();
    env.store
        .set_residency_policy(
            jurisdiction,
            &regions,
            "user:admin",
            NewAuditEntry::new("user:admin", "residency.policy_set"),
        )
        .await
        .unwrap();
}

async fn put_jurisdiction(env: &Env, subject: &str, jurisdiction: &str) {
    env.store
        .set_subject_jurisdiction(
            &env.keyring.subject_ref_str(subject),
            jurisdiction,
            "user:admin",
            NewAuditEntry::new("user:admin", "subject.jurisdiction_set"),
        )
        .await
        .unwrap();
}

/// Parquet files under `root`, relative to it.
fn files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet")
                && !p.to_string_lossy().contains("/_lethe/")
            {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// Rows per `(file, user_id)` under `root`.
fn rows_by_file(root: &Path) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for f in files(root) {
        let file = std::fs::File::open(root.join(&f)).unwrap();
        for batch in parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
        {
            let batch = batch.unwrap();
            let users = batch.column_by_name("user_id").unwrap();
            let users = users.as_any().downcast_ref::<StringArray>().unwrap();
            for u in users.iter() {
                *out.entry((f.clone(), u.unwrap().to_string())).or_default() += 1;
            }
        }
    }
    out
}

/// Rows per user under `root`.
fn rows_by_user(root: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for ((_, user), n) in rows_by_file(root) {
        *out.entry(user).or_default() += n;
    }
    out
}

#[tokio::test]
async fn ingest_writes_each_row_under_its_regions_root_and_refuses_a_row_its_policy_forbids() {
    let env = env().await;
    let dataset = register(&env, schema(&env)).await;
    put_policy(&env, "EU", &["EU"]).await;
    put_jurisdiction(&env, "u-eu", "EU").await;

    let rows = vec![
        row(0, "u-eu", "EU", None),
        row(1, "u-us", "US", None),
        row(2, "u-eu", "EU", None),
    ];
    let report = ingest(
        &env.store,
        &env.keyring,
        &dataset,
        InputFormat::JsonLines,
        jsonl(&rows),
        "test",
    )
    .await
    .unwrap();
    assert_eq!(report.rows_written, 3);
    let regions: Vec<Option<&str>> = report.files.iter().map(|f| f.region.as_deref()).collect();
    assert!(regions.iter().all(|r| r.is_some()), "{regions:?}");
    assert_eq!(rows_by_user(&env.root("eu")), [("u-eu".into(), 2)].into());
    assert_eq!(rows_by_user(&env.root("us")), [("u-us".into(), 1)].into());
    assert!(
        files(&env.root("home")).is_empty(),
        "every region has a root"
    );
    assert!(files(&env.root("eu"))[0].contains("region=EU"));

    // An EU subject's row in the US: the whole batch is refused, nothing is written.
    let before = (files(&env.root("eu")), files(&env.root("us")));
    let bad = vec![row(3, "u-us", "US", None), row(4, "u-eu", "US", None)];
    let err = ingest(
        &env.store,
        &env.keyring,
        &dataset,
        InputFormat::JsonLines,
        jsonl(&bad),
        "test",
    )
    .await
    .unwrap_err();
    match &err {
        IngestError::Invalid {
            row,
            column,
            reason,
        } => {
            assert_eq!((*row, column.as_deref()), (2, Some("region")));
            assert!(reason.contains("jurisdiction EU"), "{reason}");
            assert!(
                !reason.contains("u-eu"),
                "no subject id in errors: {reason}"
            );
        }
        other => panic!("expected invalid_row, got {other:?}"),
    }
    assert!(err.is_client_error());
    assert_eq!(before, (files(&env.root("eu")), files(&env.root("us"))));
}

#[tokio::test]
async fn a_jurisdiction_column_records_new_subjects_and_cannot_contradict_a_recorded_one() {
    let env = env().await;
    let dataset = register(&env, schema(&env)).await;
    put_policy(&env, "BR", &["US"]).await;
    let ingest_rows = |rows: Vec<Value>| {
        ingest(
            &env.store,
            &env.keyring,
            &dataset,
            InputFormat::JsonLines,
            jsonl(&rows),
            "test",
        )
    };

    // The batch declares u-br Brazilian: its EU row is refused, and nothing is recorded.
    let err = ingest_rows(vec![
        row(0, "u-br", "US", Some("br")),
        row(1, "u-br", "EU", Some("BR")),
    ])
    .await
    .unwrap_err();
    assert!(
        matches!(&err, IngestError::Invalid { row: 2, column: Some(c), .. } if c == "region"),
        "{err:?}"
    );
    let br = env.keyring.subject_ref_str("u-br");
    assert!(env.store.subject_jurisdiction(&br).await.unwrap().is_none());

    // Accepted: the jurisdiction is recorded from the column.
    ingest_rows(vec![row(2, "u-br", "US", Some("BR"))])
        .await
        .unwrap();
    let recorded = env.store.subject_jurisdiction(&br).await.unwrap().unwrap();
    assert_eq!(
        (recorded.jurisdiction.as_str(), recorded.source.as_str()),
        ("BR", "ingest:events")
    );
    // Later rows follow the recorded jurisdiction, even without the column.
    assert!(matches!(
        ingest_rows(vec![row(3, "u-br", "EU", None)]).await,
        Err(IngestError::Invalid { row: 1, .. })
    ));
    // A contradicting jurisdiction is refused; so is an invalid one.
    for (country, expected) in [("EU", "recorded jurisdiction BR"), ("B", "jurisdiction")] {
        match ingest_rows(vec![row(4, "u-br", "US", Some(country))]).await {
            Err(IngestError::Invalid {
                row: 1,
                column: Some(c),
                reason,
            }) => {
                assert_eq!(c, "country");
                assert!(reason.contains(expected), "{reason}");
            }
            other => panic!("{country}: {other:?}"),
        }
    }
    // Two jurisdictions for a new subject in one batch.
    let err = ingest_rows(vec![
        row(5, "u-new", "US", Some("US")),
        row(6, "u-new", "US", Some("CA")),
    ])
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("two jurisdictions, US and CA"),
        "{err}"
    );
}

#[tokio::test]
async fn a_scan_reports_planted_violations_per_file_and_remediation_moves_them_to_an_allowed_root()
{
    let env = env().await;
    let dataset = register(&env, schema(&env)).await;
    // Planted: before any policy exists, EU subjects' rows are written to the US root.
    let mut rows = Vec::new();
    for i in 0..24 {
        let (user, region) = match i % 4 {
            0 => ("u-eu-1", "US"),
            1 => ("u-eu-2", if i % 8 == 1 { "US" } else { "EU" }),
            2 => ("u-us", "US"),
            _ => ("u-eu-1", "EU"),
        };
        rows.push(row(i, user, region, None));
    }
    ingest(
        &env.store,
        &env.keyring,
        &dataset,
        InputFormat::JsonLines,
        jsonl(&rows),
        "test",
    )
    .await
    .unwrap();
    let us_before = rows_by_file(&env.root("us"));
    let eu_before = rows_by_user(&env.root("eu"));
    assert_eq!(
        rows_by_user(&env.root("us")),
        [
            ("u-eu-1".into(), 6),
            ("u-eu-2".into(), 3),
            ("u-us".into(), 6)
        ]
        .into()
    );
    put_policy(&env, "EU", &["EU"]).await;
    put_jurisdiction(&env, "u-eu-1", "EU").await;
    put_jurisdiction(&env, "u-eu-2", "EU").await;

    // Scan: one violation per US file, with its misplaced rows and subjects.
    let scans = scan_datasets(&env.store, &env.keyring, None, "test")
        .await
        .unwrap();
    let scan = &scans[0];
    assert_eq!(scan.scan.status, ScanStatus::Violations);
    assert_eq!(scan.scan.violating_rows, 9);
    let us_files = files(&env.root("us"));
    assert_eq!(
        scan.violations.len(),
        us_files.len(),
        "{:?}",
        scan.violations
    );
    for v in &scan.violations {
        assert_eq!(v.region, "US");
        assert_eq!(v.root_url, env.root("us").display().to_string());
        assert!(v.file.starts_with(&v.partition), "{v:?}");
        let expected: usize = us_before
            .iter()
            .filter(|((f, u), _)| *f == v.file && u.starts_with("u-eu"))
            .map(|(_, n)| n)
            .sum();
        assert_eq!(v.rows as usize, expected, "{v:?}");
        assert_eq!(v.jurisdictions, ["EU"]);
        assert_eq!(v.allowed_regions, ["EU"]);
    }
    let stored = env.store.residency_violations(None).await.unwrap();
    assert_eq!(stored.len(), scan.violations.len());

    // Remediate: copy into the EU root, then rewrite the US files.
    let reports = remediate_datasets(&env.store, &env.keyring, None, "test", None)
        .await
        .unwrap();
    let report = &reports[0];
    assert_eq!(report.rows_moved, 9);
    assert_eq!(report.rows_unmovable, 0);
    assert_eq!(report.recovered, 0);
    assert!(report.files_failed.is_empty(), "{:?}", report.files_failed);
    assert!(
        report
            .files_written
            .iter()
            .all(|f| f.region == "EU" && f.path.contains("region=EU")),
        "{:?}",
        report.files_written
    );
    assert_eq!(rows_by_user(&env.root("us")), [("u-us".into(), 6)].into());
    let mut eu_expected = eu_before.clone();
    *eu_expected.entry("u-eu-1".into()).or_default() += 6;
    *eu_expected.entry("u-eu-2".into()).or_default() += 3;
    assert_eq!(rows_by_user(&env.root("eu")), eu_expected);
    // Moved rows keep their day partition.
    for f in &report.files_written {
        let date = f.path.split('/').next().unwrap();
        assert!(
            us_before.keys().any(|(file, _)| file.starts_with(date)),
            "{f:?}"
        );
    }
    // The locator index knows where the rows are now.
    let refs = vec![env.keyring.subject_ref_str("u-eu-1")];
    let indexed: Vec<String> = env
        .store
        .index_lookup(&dataset.id, &refs)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, path, _)| path)
        .collect();
    for path in &indexed {
        assert!(path.contains("region=EU"), "{indexed:?}");
    }
    let eu_files = files(&env.root("eu"));
    assert!(indexed.iter().all(|p| eu_files.contains(p)));
    let sizes: BTreeMap<String, u64> = env
        .store
        .indexed_files(&dataset.id)
        .await
        .unwrap()
        .into_iter()
        .collect();
    for f in files(&env.root("us")) {
        let on_disk = std::fs::metadata(env.root("us").join(&f)).unwrap().len();
        assert_eq!(
            sizes.get(&f),
            Some(&on_disk),
            "rewritten US file re-indexed: {f}"
        );
    }
    assert!(
        !env.root("us").join("_lethe").exists()
            || std::fs::read_dir(env.root("us").join("_lethe"))
                .unwrap()
                .next()
                .is_none(),
        "no manifest left"
    );
    // What remediation left is recorded: nothing.
    assert!(
        env.store
            .residency_violations(None)
            .await
            .unwrap()
            .is_empty()
    );

    // Audited per file, without subject ids.
    let audit = env
        .store
        .audit_entries(&AuditFilter {
            action: Some("residency.remediated".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), us_files.len());
    for entry in &audit {
        assert!(entry.subject.is_none());
        assert_eq!(
            entry.details["to_regions"],
            json!({"EU": entry.details["rows_moved"]})
        );
        assert!(!entry.details.to_string().contains("u-eu"));
    }

    // The next scan is clean.
    let scans = scan_datasets(&env.store, &env.keyring, Some(&dataset.id), "test")
        .await
        .unwrap();
    assert_eq!(scans[0].scan.status, ScanStatus::Clean);
    assert_eq!(scans[0].scan.rows_scanned, 24);
}

#[tokio::test]
async fn rows_no_region_of_the_dataset_allows_stay_and_are_reported() {
    let env = env().await;
    let dataset = register(&env, schema(&env)).await;
    ingest(
        &env.store,
        &env.keyring,
        &dataset,
        InputFormat::JsonLines,
        jsonl(&[row(0, "u-ch", "US", None), row(1, "u-us", "US", None)]),
        "test",
    )
    .await
    .unwrap();
    put_policy(&env, "CH", &["CH"]).await;
    put_jurisdiction(&env, "u-ch", "CH").await;
    let reports = remediate_datasets(&env.store, &env.keyring, None, "test", None)
        .await
        .unwrap();
    assert_eq!((reports[0].rows_moved, reports[0].rows_unmovable), (0, 1));
    let left = env.store.residency_violations(None).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!((left[0].rows, left[0].subjects), (1, 1));
    assert_eq!(left[0].allowed_regions, ["CH"]);
    assert_eq!(rows_by_user(&env.root("us")).len(), 2, "nothing moved");
}

#[tokio::test]
async fn datasets_written_by_others_are_recorded_as_not_scannable() {
    let env = env().await;
    env.store
        .create_dataset(
            NewDataset {
                name: "foreign".into(),
                root_url: env.root("home").display().to_string(),
                subject_column: "user_id".into(),
                partition_columns: vec![],
                created_by: "test".into(),
                schema: None,
                format: Default::default(),
                iceberg: None,
            },
            NewAuditEntry::new("test", "dataset.registered"),
        )
        .await
        .unwrap();
    let scans = scan_datasets(&env.store, &env.keyring, None, "test")
        .await
        .unwrap();
    assert_eq!(scans[0].scan.status, ScanStatus::NotScannable);
    assert!(
        scans[0]
            .scan
            .note
            .as_deref()
            .unwrap()
            .contains("no declared schema")
    );
    assert_eq!(env.store.residency_scans().await.unwrap().len(), 1);
}

/// A commit guard that refuses every swap: the remediation stops after its copy, as if the
/// worker had died between copying the rows and rewriting their source.
#[derive(Debug)]
struct LostLease;

#[async_trait::async_trait]
impl CommitGuard for LostLease {
    async fn may_commit(&self, _file: &str) -> Result<(), String> {
        Err("lease lost (test)".into())
    }
}

#[tokio::test]
async fn a_remediation_stopped_after_its_copy_is_finished_by_the_next_without_duplicating_rows() {
    let env = env().await;
    let dataset = register(&env, schema(&env)).await;
    // Two small files in the same US partition: the EU subject's rows are in the first.
    for batch in [
        vec![
            row(0, "u-eu", "US", None),
            row(2, "u-eu", "US", None),
            row(4, "u-us", "US", None),
        ],
        vec![row(6, "u-us", "US", None)],
    ] {
        ingest(
            &env.store,
            &env.keyring,
            &dataset,
            InputFormat::JsonLines,
            jsonl(&batch),
            "test",
        )
        .await
        .unwrap();
    }
    put_policy(&env, "EU", &["EU"]).await;
    put_jurisdiction(&env, "u-eu", "EU").await;

    let guard: Arc<dyn CommitGuard> = Arc::new(LostLease);
    let err = remediate_datasets(&env.store, &env.keyring, None, "test", Some(guard))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    // The copy is there, the source still holds the rows: the window the manifest covers.
    assert_eq!(rows_by_user(&env.root("eu")), [("u-eu".into(), 2)].into());
    assert_eq!(rows_by_user(&env.root("us"))["u-eu"], 2);
    let manifests: Vec<_> = std::fs::read_dir(env.root("us").join("_lethe"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(manifests.len(), 1, "{manifests:?}");
    assert!(manifests[0].starts_with("residency-"));

    // Compaction leaves the pending source alone (it would carry the rows on otherwise).
    let us_files = files(&env.root("us"));
    let compacted = lethe_core::compaction::compact(&env.store, &env.keyring, &dataset, "test")
        .await
        .unwrap();
    assert_eq!(compacted.files_in, 0, "{compacted:?}");
    assert_eq!(files(&env.root("us")), us_files);

    // The next remediation finishes the interrupted one: the source is rewritten, nothing is
    // copied twice.
    let reports = remediate_datasets(&env.store, &env.keyring, None, "test", None)
        .await
        .unwrap();
    assert_eq!(reports[0].recovered, 1);
    assert_eq!(reports[0].rows_moved, 0, "already copied");
    assert_eq!(rows_by_user(&env.root("eu")), [("u-eu".into(), 2)].into());
    assert_eq!(rows_by_user(&env.root("us")), [("u-us".into(), 2)].into());
    assert_eq!(
        std::fs::read_dir(env.root("us").join("_lethe"))
            .unwrap()
            .count(),
        0,
        "manifest deleted"
    );
    let audit = env
        .store
        .audit_entries(&AuditFilter {
            action: Some("residency.remediated".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].details["recovered"], true);
    assert_eq!(audit[0].details["rows_removed_from_source"], 2);
    let scans = scan_datasets(&env.store, &env.keyring, None, "test")
        .await
        .unwrap();
    assert_eq!(scans[0].scan.status, ScanStatus::Clean);
}
