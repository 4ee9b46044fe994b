use super::*;
use crate::residency::rule::RegionSource;

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
                format: Default::default(),
                iceberg: None,
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
