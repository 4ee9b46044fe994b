//! Ingest on a real SQLite store and a local lake: validation, encryption, layout, the locator
//! index and the resurrection guard.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow_array::{Array, BinaryArray, StringArray};
use bytes::Bytes;
use lethe_core::audit::NewAuditEntry;
use lethe_core::domain::{DatasetSchema, SubjectId};
use lethe_core::ingest::{IngestError, InputFormat, ingest};
use lethe_core::keyring::{Kek, Keyring, SubjectHasher};
use lethe_core::store::{Dataset, NewDataset, Store};
use parquet::file::reader::{FileReader, SerializedFileReader};
use secrecy::SecretString;
use serde_json::json;

struct Env {
    _dir: tempfile::TempDir,
    lake: std::path::PathBuf,
    store: Arc<Store>,
    keyring: Arc<Keyring>,
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
    let lake = dir.path().join("lake");
    std::fs::create_dir_all(&lake).unwrap();
    Env {
        _dir: dir,
        lake,
        store: sql,
        keyring,
    }
}

fn running_schema() -> DatasetSchema {
    serde_json::from_value(json!({
        "subject_columns": ["user_id"],
        "columns": [
            {"name": "event_id", "type": "string"},
            {"name": "user_id", "type": "string"},
            {"name": "ts", "type": "timestamp"},
            {"name": "region", "type": "string"},
            {"name": "calories", "type": "int32"},
            {"name": "email", "type": "string", "pii": "encrypt"},
            {"name": "full_name", "type": "string", "pii": "encrypt"},
            {"name": "lat", "type": "float64", "pii": "encrypt"},
            {"name": "lon", "type": "float64", "pii": "encrypt"},
            {"name": "notes", "type": "string", "nullable": true}
        ],
        "partition_by": [{"name": "date", "source": "ts", "transform": "day"},
                         {"name": "region", "source": "region"}],
        "region_column": "region",
        "regions": ["EU", "US"]
    }))
    .unwrap()
}

async fn register(env: &Env, schema: DatasetSchema) -> Dataset {
    env.store
        .create_dataset(
            NewDataset {
                name: "running_events".into(),
                root_url: env.lake.display().to_string(),
                subject_column: schema.primary_subject().to_string(),
                partition_columns: schema.partition_by.iter().map(|p| p.name.clone()).collect(),
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

fn row(i: usize, user: &str, region: &str) -> serde_json::Value {
    json!({
        "event_id": format!("e-{i}"),
        "user_id": user,
        "ts": format!("2025-01-0{}T10:00:00Z", 1 + i % 2),
        "region": region,
        "calories": 100 + i,
        "email": format!("{user}@example.com"),
        "full_name": format!("Name of {user}"),
        "lat": 48.85,
        "lon": 2.35,
        "notes": if i.is_multiple_of(3) { serde_json::Value::Null } else { json!("felt good") },
    })
}

fn jsonl(rows: &[serde_json::Value]) -> Bytes {
    let mut out = String::new();
    for r in rows {
        out.push_str(&r.to_string());
        out.push('\n');
    }
    Bytes::from(out)
}

fn parquet_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn read_all(path: &std::path::Path) -> Vec<arrow_array::RecordBatch> {
    let file = std::fs::File::open(path).unwrap();
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn ingest_writes_sorted_encrypted_partitioned_indexed_files() {
    let env = env().await;
    let dataset = register(&env, running_schema()).await;
    let users = ["u-3", "u-1", "u-2"];
    let rows: Vec<_> = (0..60)
        .map(|i| row(i, users[i % 3], if i % 4 < 2 { "US" } else { "EU" }))
        .collect();
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
    assert_eq!((report.rows_read, report.rows_written), (60, 60));
    assert_eq!(report.subjects, 3);
    assert_eq!(report.rows_dropped_erased, 0);

    let files = parquet_files(&env.lake);
    assert_eq!(files.len(), 4, "2 days x 2 regions: {files:?}");
    let relative: BTreeSet<String> = files
        .iter()
        .map(|f| {
            f.strip_prefix(&env.lake)
                .unwrap()
                .parent()
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    assert!(
        relative.contains("date=2025-01-01/region=EU"),
        "{relative:?}"
    );
    let mut total = 0;
    for f in &files {
        let reader = SerializedFileReader::new(std::fs::File::open(f).unwrap()).unwrap();
        let md = reader.metadata();
        let schema = md.file_metadata().schema_descr();
        let names: Vec<&str> = schema.columns().iter().map(|c| c.name()).collect();
        assert!(
            !names.contains(&"region"),
            "identity partition lives in the path"
        );
        let user_leaf = names.iter().position(|n| *n == "user_id").unwrap();
        assert!(
            md.row_group(0)
                .column(user_leaf)
                .bloom_filter_offset()
                .is_some(),
            "bloom filter on the subject column"
        );
        for batch in read_all(f) {
            total += batch.num_rows();
            let users = batch
                .column_by_name("user_id")
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .clone();
            let sorted: Vec<_> = users.iter().collect();
            let mut expected = sorted.clone();
            expected.sort();
            assert_eq!(sorted, expected, "rows sorted by subject");
            let email = batch.column_by_name("email").unwrap();
            let email = email.as_any().downcast_ref::<BinaryArray>().unwrap();
            for v in email.iter().flatten() {
                assert_eq!(v[0], 1, "cell envelope v1");
                assert!(!String::from_utf8_lossy(v).contains("@example.com"));
            }
        }
        let raw = std::fs::read(f).unwrap();
        assert!(
            !raw.windows(12).any(|w| w == b"@example.com"),
            "no plaintext PII in the file"
        );
    }
    assert_eq!(total, 60);

    let u1 = env.keyring.subject_ref(&SubjectId::parse("u-1").unwrap());
    let hits = env
        .store
        .index_lookup(&dataset.id, std::slice::from_ref(&u1))
        .await
        .unwrap();
    let indexed_rows: u64 = hits.iter().map(|(_, _, n)| n).sum();
    assert_eq!(indexed_rows, 20, "the index knows every row of u-1");
    assert_eq!(env.store.indexed_files(&dataset.id).await.unwrap().len(), 4);
}

#[tokio::test]
async fn a_bad_row_names_row_and_column_and_nothing_is_written() {
    let env = env().await;
    let dataset = register(&env, running_schema()).await;
    let mut rows: Vec<_> = (0..10).map(|i| row(i, "u-1", "EU")).collect();
    rows[6]["calories"] = json!("lots");
    let e = ingest(
        &env.store,
        &env.keyring,
        &dataset,
        InputFormat::JsonLines,
        jsonl(&rows),
        "test",
    )
    .await
    .unwrap_err();
    assert!(e.is_client_error());
    assert!(
        matches!(&e, IngestError::Invalid { row: 7, column: Some(c), .. } if c == "calories"),
        "{e}"
    );

    rows[6]["calories"] = json!(5);
    rows[2]["region"] = json!("APAC");
    let e = ingest(
        &env.store,
        &env.keyring,
        &dataset,
        InputFormat::JsonLines,
        jsonl(&rows),
        "test",
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("row 3, column region"), "{e}");

    rows[2]["region"] = json!("EU");
    rows[4].as_object_mut().unwrap().remove("email");
    let e = ingest(
        &env.store,
        &env.keyring,
        &dataset,
        InputFormat::JsonLines,
        jsonl(&rows),
        "test",
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("row 5, column email"), "{e}");
    assert!(
        parquet_files(&env.lake).is_empty(),
        "nothing of the batch written"
    );
    assert!(
        env.store
            .indexed_files(&dataset.id)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn csv_and_parquet_inputs_are_read_and_validated_too() {
    let env = env().await;
    let dataset = register(&env, running_schema()).await;
    let csv = "event_id,user_id,ts,region,calories,email,full_name,lat,lon,notes\n\
               e-1,u-1,2025-01-01T10:00:00Z,EU,120,a@x.io,Ann,1.5,2.5,\n\
               e-2,u-2,2025-01-01T11:00:00+01:00,US,130,b@x.io,Bob,1.5,2.5,hi\n";
    let report = ingest(
        &env.store,
        &env.keyring,
        &dataset,
        InputFormat::Csv,
        Bytes::from(csv),
        "test",
    )
    .await
    .unwrap();
    assert_eq!(report.rows_written, 2);

    let bad = csv.replace("130", "13x");
    let e = ingest(
        &env.store,
        &env.keyring,
        &dataset,
        InputFormat::Csv,
        Bytes::from(bad),
        "test",
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("row 3, column calories"), "{e}");

    // A Parquet input from another writer, with narrower and wider types.
    let schema = Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("event_id", arrow_schema::DataType::Utf8, false),
        arrow_schema::Field::new("user_id", arrow_schema::DataType::Utf8, false),
        arrow_schema::Field::new("ts", arrow_schema::DataType::Utf8, false),
        arrow_schema::Field::new("region", arrow_schema::DataType::Utf8, false),
        arrow_schema::Field::new("calories", arrow_schema::DataType::Int64, false),
        arrow_schema::Field::new("email", arrow_schema::DataType::Utf8, false),
        arrow_schema::Field::new("full_name", arrow_schema::DataType::Utf8, false),
        arrow_schema::Field::new("lat", arrow_schema::DataType::Float32, false),
        arrow_schema::Field::new("lon", arrow_schema::DataType::Float32, false),
    ]));
    let batch = arrow_array::RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["e-9"])),
            Arc::new(StringArray::from(vec!["u-9"])),
            Arc::new(StringArray::from(vec!["2025-01-02T10:00:00Z"])),
            Arc::new(StringArray::from(vec!["EU"])),
            Arc::new(arrow_array::Int64Array::from(vec![99])),
            Arc::new(StringArray::from(vec!["z@x.io"])),
            Arc::new(StringArray::from(vec!["Zed"])),
            Arc::new(arrow_array::Float32Array::from(vec![1.0])),
            Arc::new(arrow_array::Float32Array::from(vec![2.0])),
        ],
    )
    .unwrap();
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let report = ingest(
        &env.store,
        &env.keyring,
        &dataset,
        InputFormat::Parquet,
        Bytes::from(buf),
        "test",
    )
    .await
    .unwrap();
    assert_eq!(report.rows_written, 1);
}

#[tokio::test]
async fn rows_of_a_shredded_subject_are_dropped_and_counted() {
    let env = env().await;
    let dataset = register(&env, running_schema()).await;
    let gone = SubjectId::parse("u-gone").unwrap();
    env.keyring.dek_for_write(&gone).await.unwrap();
    env.keyring.shred(&gone).await.unwrap();
    let rows: Vec<_> = (0..12)
        .map(|i| row(i, if i % 3 == 0 { "u-gone" } else { "u-ok" }, "EU"))
        .collect();
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
    assert_eq!(report.rows_dropped_erased, 4);
    assert_eq!(report.rows_written, 8);
    for f in parquet_files(&env.lake) {
        for b in read_all(&f) {
            let users = b.column_by_name("user_id").unwrap();
            let users = users.as_any().downcast_ref::<StringArray>().unwrap();
            assert!(users.iter().all(|u| u != Some("u-gone")));
        }
    }
    let gone_ref = env.keyring.subject_ref(&gone);
    assert!(
        env.store
            .index_lookup(&dataset.id, &[gone_ref])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_dataset_without_schema_is_refused() {
    let env = env().await;
    let dataset = env
        .store
        .create_dataset(
            NewDataset {
                name: "foreign".into(),
                root_url: env.lake.display().to_string(),
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
    let e = ingest(
        &env.store,
        &env.keyring,
        &dataset,
        InputFormat::JsonLines,
        jsonl(&[row(0, "u-1", "EU")]),
        "test",
    )
    .await
    .unwrap_err();
    assert!(matches!(e, IngestError::NotManaged { .. }), "{e}");
    let nulls = StringArray::new_null(1);
    assert_eq!(nulls.null_count(), 1);
}

#[tokio::test]
async fn compaction_merges_small_files_sorted_and_applies_pending_erasures() {
    let env = env().await;
    let dataset = register(&env, running_schema()).await;
    // Three ingests of the same partition: three small files.
    for batch in 0..3 {
        let rows: Vec<_> = (0..10)
            .map(|i| {
                let mut r = row(0, &format!("u-{}", (i * 7 + batch) % 5), "EU");
                r["event_id"] = json!(format!("e-{batch}-{i}"));
                r
            })
            .collect();
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
    }
    let before = parquet_files(&env.lake);
    assert_eq!(before.len(), 3);
    let gone = SubjectId::parse("u-2").unwrap();
    env.keyring.shred(&gone).await.unwrap();

    let report = lethe_core::compaction::compact(&env.store, &env.keyring, &dataset, "test")
        .await
        .unwrap();
    assert_eq!((report.files_in, report.files_out), (3, 1));
    assert_eq!(report.rows_in, 30);
    assert_eq!(report.rows_erased, 6, "u-2's rows went in the same pass");
    assert_eq!(report.rows_out, 24);

    let after = parquet_files(&env.lake);
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(!before.contains(&after[0]));
    assert!(
        !env.lake.join("_lethe").exists()
            || std::fs::read_dir(env.lake.join("_lethe")).unwrap().count() == 0,
        "no manifest left"
    );
    let batches = read_all(&after[0]);
    let users: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            let c = b.column_by_name("user_id").unwrap();
            let c = c.as_any().downcast_ref::<StringArray>().unwrap();
            c.iter().map(|v| v.unwrap().to_string()).collect::<Vec<_>>()
        })
        .collect();
    let mut sorted = users.clone();
    sorted.sort();
    assert_eq!(users, sorted, "merged file sorted by subject");
    assert!(!users.contains(&"u-2".to_string()));

    // The index now points at the merged file only.
    let u1 = env.keyring.subject_ref(&SubjectId::parse("u-1").unwrap());
    let hits = env.store.index_lookup(&dataset.id, &[u1]).await.unwrap();
    let merged = after[0]
        .strip_prefix(&env.lake)
        .unwrap()
        .display()
        .to_string();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].1, merged);
    let known = env.store.indexed_files(&dataset.id).await.unwrap();
    assert_eq!(known.len(), 1);
    assert_eq!(known[0].1, std::fs::metadata(&after[0]).unwrap().len());
}

#[tokio::test]
async fn an_interrupted_compaction_is_rolled_back_before_the_next() {
    let env = env().await;
    let dataset = register(&env, running_schema()).await;
    let rows: Vec<_> = (0..4).map(|i| row(i, "u-1", "EU")).collect();
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
    let input = parquet_files(&env.lake)[0].clone();
    let relative = input.strip_prefix(&env.lake).unwrap().display().to_string();
    // A crash after writing an output but before the index swap.
    let output = input.with_file_name("part-deadbeef0000-c0000.parquet");
    std::fs::copy(&input, &output).unwrap();
    let out_rel = output
        .strip_prefix(&env.lake)
        .unwrap()
        .display()
        .to_string();
    std::fs::create_dir_all(env.lake.join("_lethe")).unwrap();
    std::fs::write(
        env.lake.join("_lethe/compaction-deadbeef0000.json"),
        json!({"state": "writing", "partition": "x", "inputs": [relative], "outputs": [out_rel]})
            .to_string(),
    )
    .unwrap();
    let report = lethe_core::compaction::compact(&env.store, &env.keyring, &dataset, "test")
        .await
        .unwrap();
    assert_eq!(report.recovered, 1);
    assert!(!output.exists(), "the half-done output was removed");
    assert!(input.exists(), "the input stays");
    assert_eq!(report.files_in, 0, "one file left: nothing to merge");
}

/// `(user_id, email envelope)` of every row of the lake.
fn email_cells(lake: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for f in parquet_files(lake) {
        for b in read_all(&f) {
            let users = b.column_by_name("user_id").unwrap();
            let users = users.as_any().downcast_ref::<StringArray>().unwrap();
            let emails = b.column_by_name("email").unwrap();
            let emails = emails.as_any().downcast_ref::<BinaryArray>().unwrap();
            for i in 0..b.num_rows() {
                out.push((users.value(i).to_string(), emails.value(i).to_vec()));
            }
        }
    }
    out
}

#[tokio::test]
async fn lake_cells_open_with_their_key_only_and_survive_kek_rotation() {
    use lethe_core::keyring::cell::{CellContext, CellError, decrypt_cell};
    let env = env().await;
    let dataset = register(&env, running_schema()).await;
    let rows: Vec<_> = (0..12)
        .map(|i| row(i, ["u-a", "u-b", "u-c"][i % 3], "EU"))
        .collect();
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
    let cells = email_cells(&env.lake);
    assert_eq!(cells.len(), 12);
    let open = |keyring: Arc<Keyring>, user: String, column: &'static str, envelope: Vec<u8>| async move {
        let id = SubjectId::parse(&user).unwrap();
        let dek = keyring.dek_for_read(&id).await.unwrap();
        let ctx = CellContext {
            dataset: "running_events",
            column,
            subject_id: &id,
        };
        decrypt_cell(&dek, &ctx, &envelope)
    };
    for (user, envelope) in &cells {
        let plain = open(env.keyring.clone(), user.clone(), "email", envelope.clone())
            .await
            .unwrap();
        assert_eq!(plain, format!("{user}@example.com").into_bytes());
    }
    let (user, envelope) = cells[0].clone();

    // A tampered byte, another column, another subject's key: each a clear error.
    let mut tampered = envelope.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let e = open(env.keyring.clone(), user.clone(), "email", tampered)
        .await
        .unwrap_err();
    assert!(matches!(e, CellError::WrongKeyOrTampered), "{e}");
    let e = open(
        env.keyring.clone(),
        user.clone(),
        "full_name",
        envelope.clone(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, CellError::WrongKeyOrTampered),
        "a cell moved to another column: {e}"
    );
    let other = if user == "u-a" { "u-b" } else { "u-a" };
    let other_id = SubjectId::parse(other).unwrap();
    let other_dek = env.keyring.dek_for_read(&other_id).await.unwrap();
    let ctx = CellContext {
        dataset: "running_events",
        column: "email",
        subject_id: &SubjectId::parse(&user).unwrap(),
    };
    assert!(
        decrypt_cell(&other_dek, &ctx, &envelope).is_err(),
        "another subject's key does not fit"
    );

    // KEK rotation re-wraps every DEK; every cell in the lake still opens.
    let report = env.keyring.rotate_kek(Kek::generate()).await.unwrap();
    assert_eq!(report.rewrapped, 3);
    for (user, envelope) in &cells {
        open(env.keyring.clone(), user.clone(), "email", envelope.clone())
            .await
            .unwrap();
    }

    // A destroyed key: the cells stay in the lake, and nothing opens them.
    let id = SubjectId::parse(&user).unwrap();
    env.keyring.shred(&id).await.unwrap();
    assert!(matches!(
        env.keyring.dek_for_read(&id).await,
        Err(lethe_core::keyring::KeyringError::Shredded)
    ));
    assert!(
        email_cells(&env.lake).iter().any(|(u, _)| *u == user),
        "ciphertext still there"
    );
}

#[tokio::test]
async fn a_message_table_erases_one_side_of_a_conversation() {
    use lethe_core::lake::{Erase, ErasePolicy, LakeRoot, Locate};
    let env = env().await;
    let schema: DatasetSchema = serde_json::from_value(json!({
        "subject_columns": ["sender", "receiver"],
        "columns": [
            {"name": "id", "type": "string"},
            {"name": "sender", "type": "string"},
            {"name": "receiver", "type": "string"},
            {"name": "sender_email", "type": "string", "pii": "encrypt", "subject": "sender"},
            {"name": "receiver_email", "type": "string", "pii": "encrypt", "subject": "receiver"},
            {"name": "body", "type": "string"}
        ],
        "erasure": "null_subject_columns"
    }))
    .unwrap();
    let dataset = env
        .store
        .create_dataset(
            NewDataset {
                name: "messages".into(),
                root_url: env.lake.display().to_string(),
                subject_column: "sender".into(),
                partition_columns: vec![],
                created_by: "test".into(),
                schema: Some(schema.clone()),
                format: Default::default(),
                iceberg: None,
            },
            NewAuditEntry::new("test", "dataset.registered"),
        )
        .await
        .unwrap();
    let msg = |id: &str, s: &str, r: &str| {
        json!({"id": id, "sender": s, "receiver": r, "sender_email": format!("{s}@x.io"),
               "receiver_email": format!("{r}@x.io"), "body": "hi"})
    };
    let rows = vec![
        msg("1", "ann", "bob"),
        msg("2", "bob", "ann"),
        msg("3", "bob", "cat"),
        msg("4", "ann", "ann"),
    ];
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
    let root = LakeRoot::parse(&env.lake.display().to_string()).unwrap();

    // Locate finds ann in either column.
    let found = Locate::new(root.clone(), "sender")
        .also_columns(["receiver"])
        .subjects(["ann"])
        .execute()
        .await
        .unwrap();
    assert_eq!(found.files.len(), 1);

    let outcome = Erase::new(root, "sender")
        .policy(ErasePolicy::from_schema(&schema))
        .subjects(["ann"])
        .execute()
        .await
        .unwrap();
    assert!(!outcome.has_failures(), "{:?}", outcome.files);
    let files = parquet_files(&env.lake);
    let batch = &read_all(&files[0])[0];
    let col = |name: &str| batch.column_by_name(name).unwrap().clone();
    let ids = col("id");
    let ids = ids.as_any().downcast_ref::<StringArray>().unwrap();
    let mut by_id = std::collections::BTreeMap::new();
    for i in 0..batch.num_rows() {
        by_id.insert(ids.value(i).to_string(), i);
    }
    assert_eq!(by_id.len(), 3, "ann's note to herself is gone: {by_id:?}");
    let sender = col("sender");
    let receiver = col("receiver");
    let sender_email = col("sender_email");
    let receiver_email = col("receiver_email");
    let (m1, m2, m3) = (by_id["1"], by_id["2"], by_id["3"]);
    assert!(
        sender.is_null(m1) && sender_email.is_null(m1),
        "ann's side of message 1 is gone"
    );
    assert!(
        receiver.is_valid(m1) && receiver_email.is_valid(m1),
        "bob's side stays"
    );
    assert!(receiver.is_null(m2) && receiver_email.is_null(m2));
    assert!(sender.is_valid(m2) && sender_email.is_valid(m2));
    assert!(
        sender.is_valid(m3) && receiver.is_valid(m3),
        "a message without ann is untouched"
    );
}

/// Compaction deletes the files it merges, so it must not overlap a rewrite of the same
/// dataset: each waits for the other's dataset lease, and a job kept waiting is deferred
/// without spending an attempt.
#[tokio::test]
async fn compaction_and_rewrites_of_a_dataset_take_turns() {
    use lethe_core::domain::{RequestStatus, RequestType};
    use lethe_core::jobs::{Worker, WorkerConfig};
    use lethe_core::store::{
        HeldDatasetLease, JobKind, JobStatus, LeaseMode, NewJob, NewRequest, StoreError, Transition,
    };
    use std::time::Duration;

    let env = env().await;
    let dataset = register(&env, running_schema()).await;
    for batch in 0..2 {
        let rows: Vec<_> = (0..4)
            .map(|i| {
                let mut r = row(0, &format!("u-{i}"), "EU");
                r["event_id"] = json!(format!("e-{batch}-{i}"));
                r
            })
            .collect();
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
    }
    let before = parquet_files(&env.lake);
    assert_eq!(before.len(), 2);
    let compact = || lethe_core::compaction::compact(&env.store, &env.keyring, &dataset, "test");

    // A rectification holds the dataset (shared): compaction is refused and touches nothing.
    let rewrite = HeldDatasetLease::acquire(
        &env.store,
        &dataset.id,
        "request:r-1",
        LeaseMode::Shared,
        "rectification",
    )
    .await
    .unwrap();
    match compact().await {
        Err(IngestError::Store(StoreError::DatasetBusy(lease))) => {
            assert_eq!(
                (lease.holder.as_str(), lease.purpose.as_str()),
                ("request:r-1", "rectification")
            );
        }
        other => panic!("expected a busy dataset, got {other:?}"),
    }
    assert_eq!(parquet_files(&env.lake), before);
    rewrite.release().await.unwrap();

    // Free again: compaction runs, and gives the dataset back when it is done.
    let report = compact().await.unwrap();
    assert_eq!((report.files_in, report.files_out), (2, 1));
    env.store
        .acquire_dataset_lease(
            &dataset.id,
            "probe",
            LeaseMode::Exclusive,
            "probe",
            Duration::from_secs(5),
        )
        .await
        .expect("compaction released its lease");
    env.store
        .release_dataset_lease(&dataset.id, "probe")
        .await
        .unwrap();
    let compacted = parquet_files(&env.lake);

    // A compaction holds the dataset (exclusive): a rectification job is deferred, its attempt
    // given back, the reason on the job, the request not completed and the lake untouched.
    let compaction = HeldDatasetLease::acquire(
        &env.store,
        &dataset.id,
        "cli:compaction",
        LeaseMode::Exclusive,
        "compaction",
    )
    .await
    .unwrap();
    let (request, _) = env
        .store
        .create_request(
            NewRequest {
                request_type: RequestType::Rectification,
                subject_id: SubjectId::parse("u-1").unwrap(),
                subject_pseudonym: "ps-1".into(),
                filed_by: "user:a".into(),
                verification_note: None,
                idempotency_key: None,
                received_at: chrono::Utc::now(),
                details: Some(json!({"dataset_id": dataset.id, "changes": {"notes": "fixed"}})),
            },
            NewAuditEntry::new("test", "request.created"),
        )
        .await
        .unwrap();
    let mut approve = Transition::new(
        RequestStatus::Approved,
        "user:admin",
        NewAuditEntry::new("test", "request.approved"),
    );
    approve.decision = true;
    approve.enqueue = Some(NewJob {
        kind: JobKind::Rectification,
        request_id: Some(request.id.clone()),
        payload: json!({}),
        max_attempts: 3,
        run_at: None,
    });
    env.store
        .transition_request(&request.id, approve)
        .await
        .unwrap();
    let worker = Worker::new(
        env.store.clone(),
        WorkerConfig {
            worker_id: "w".into(),
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(10),
            exports_url: env.lake.join("../exports").display().to_string(),
            file_concurrency: 1,
            job_concurrency: 1,
            export_ttl: Duration::from_secs(3600),
            settings: std::sync::Arc::new(lethe_core::config::Settings::load_from(None).unwrap()),
        },
    )
    .with_keyring(env.keyring.clone());
    let job_id = worker.try_execute_job().await.unwrap().expect("a job ran");
    let job = env.store.job(&job_id).await.unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.attempts, 0, "waiting for a lease spends no attempt");
    let reason = job.last_error.unwrap_or_default();
    assert!(
        reason.contains("busy") && reason.contains("compaction"),
        "{reason}"
    );
    assert!(job.run_at > chrono::Utc::now(), "runs again later");
    assert_ne!(
        env.store.request(&request.id).await.unwrap().status,
        RequestStatus::Completed
    );
    assert_eq!(parquet_files(&env.lake), compacted);
    compaction.release().await.unwrap();
}

/// A holder whose dataset lease was taken over while it worked (it stalled past the lease's
/// time to live, and a compaction came in) swaps nothing more: its rewrite is fenced and the
/// file stays as it was, and confirming the lease says who has the dataset now.
#[tokio::test]
async fn a_rewrite_whose_dataset_lease_was_taken_over_swaps_nothing() {
    use lethe_core::lake::{CommitGuard, Erase, FileStatus, LakeRoot};
    use lethe_core::store::{HeldDatasetLease, LeaseMode, StoreError};

    let env = env().await;
    let dataset = register(&env, running_schema()).await;
    let rows: Vec<_> = (0..4).map(|i| row(0, &format!("u-{i}"), "EU")).collect();
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
    let files = parquet_files(&env.lake);
    assert_eq!(files.len(), 1);
    let before = std::fs::read(&files[0]).unwrap();

    let erasure = Arc::new(
        HeldDatasetLease::acquire(
            &env.store,
            &dataset.id,
            "job:stalled",
            LeaseMode::Shared,
            "erasure",
        )
        .await
        .unwrap(),
    );
    erasure.confirm().await.expect("held and renewed");
    // The lease lapses while its holder is stalled (here: removed as an expired row would
    // be), and a compaction takes the dataset.
    env.store
        .release_dataset_lease(&dataset.id, "job:stalled")
        .await
        .unwrap();
    let compaction = HeldDatasetLease::acquire(
        &env.store,
        &dataset.id,
        "cli:compaction",
        LeaseMode::Exclusive,
        "compaction",
    )
    .await
    .unwrap();

    match erasure.confirm().await {
        Err(StoreError::DatasetLeaseLost { dataset_id, detail }) => {
            assert_eq!(dataset_id, dataset.id);
            assert!(detail.contains("cli:compaction"), "{detail}");
        }
        other => panic!("expected a lost lease, got {other:?}"),
    }
    let relative = files[0]
        .strip_prefix(&env.lake)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let guard: Arc<dyn CommitGuard> = erasure.clone();
    let outcome = Erase::new(
        LakeRoot::parse(&dataset.root_url).unwrap(),
        "user_id".to_string(),
    )
    .subjects(["u-1".to_string()])
    .files([relative])
    .commit_guard(guard)
    .execute()
    .await
    .unwrap();
    match &outcome.files[0].status {
        FileStatus::Failed { error } => assert!(error.contains("lost the lease"), "{error}"),
        other => panic!("the swap should have been fenced, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(&files[0]).unwrap(),
        before,
        "the file is as it was"
    );
    assert_eq!(parquet_files(&env.lake), files, "no stray copy is left");
    compaction.release().await.unwrap();
}

#[tokio::test]
async fn a_compaction_keeps_the_rows_an_erased_subject_shares_with_a_held_one() {
    let env = env().await;
    let schema: DatasetSchema = serde_json::from_value(json!({
        "subject_columns": ["sender", "receiver"],
        "columns": [
            {"name": "id", "type": "string"},
            {"name": "sender", "type": "string"},
            {"name": "receiver", "type": "string"},
            {"name": "body", "type": "string"}
        ],
        "erasure": "delete_row"
    }))
    .unwrap();
    let dataset = register(&env, schema).await;
    // Two ingests: two small files for the compaction to merge.
    for rows in [
        [("m1", "ann", "bob"), ("m2", "ann", "cat")],
        [("m3", "bob", "ann"), ("m4", "cat", "bob")],
    ] {
        let rows: Vec<_> = rows
            .iter()
            .map(|(id, s, r)| json!({"id": id, "sender": s, "receiver": r, "body": "hi"}))
            .collect();
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
    }
    assert_eq!(parquet_files(&env.lake).len(), 2);
    // Bob is under a hold; Ann is erased (her key destroyed), her rows pending removal.
    let bob = env.keyring.subject_ref_str("bob");
    place_hold(&env, None, Some(("bob-pseudonym".into(), bob))).await;
    env.keyring
        .shred(&SubjectId::parse("ann").unwrap())
        .await
        .unwrap();

    let report = lethe_core::compaction::compact(&env.store, &env.keyring, &dataset, "test")
        .await
        .unwrap();
    assert_eq!((report.files_in, report.files_out), (2, 1));
    assert_eq!(report.rows_erased, 1, "only ann's message to cat goes");
    let after = parquet_files(&env.lake);
    let mut ids: Vec<String> = read_all(&after[0])
        .iter()
        .flat_map(|b| {
            let c = b.column_by_name("id").unwrap();
            let c = c.as_any().downcast_ref::<StringArray>().unwrap();
            c.iter().map(|v| v.unwrap().to_string()).collect::<Vec<_>>()
        })
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        ["m1", "m3", "m4"],
        "the messages ann shares with bob stay"
    );
}

#[tokio::test]
async fn a_compaction_of_a_held_dataset_merges_files_but_removes_no_erased_subjects_rows() {
    let env = env().await;
    let dataset = register(&env, running_schema()).await;
    for batch in 0..2 {
        let rows: Vec<_> = (0..4)
            .map(|i| {
                let mut r = row(0, &format!("u-{i}"), "EU");
                r["event_id"] = json!(format!("e-{batch}-{i}"));
                r
            })
            .collect();
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
    }
    place_hold(&env, Some(dataset.id.clone()), None).await;
    env.keyring
        .shred(&SubjectId::parse("u-2").unwrap())
        .await
        .unwrap();
    let report = lethe_core::compaction::compact(&env.store, &env.keyring, &dataset, "test")
        .await
        .unwrap();
    assert_eq!((report.files_in, report.files_out), (2, 1));
    assert!(report.erasures_held);
    assert_eq!(
        (report.rows_erased, report.rows_out),
        (0, 8),
        "the hold keeps u-2's rows"
    );
}

/// Places a legal hold on a dataset, or on a subject given by pseudonym and keyed reference.
async fn place_hold(env: &Env, dataset_id: Option<String>, subject: Option<(String, String)>) {
    let (subject_pseudonym, subject_ref) = subject.unzip();
    env.store
        .create_legal_hold(
            lethe_core::store::NewLegalHold {
                dataset_id,
                subject_pseudonym,
                subject_ref,
                legal_basis: "Art. 17(3)(e)".into(),
                reason: "claims".into(),
                ends_at: None,
                created_by: "test".into(),
            },
            NewAuditEntry::new("test", "legal_hold.placed"),
        )
        .await
        .unwrap();
}
