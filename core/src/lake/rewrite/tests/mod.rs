//! Tests of the rewrite engine and the erase operation on small local and in-memory lakes.

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path as StorePath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use parquet::basic::Compression;
use parquet::file::reader::{FileReader, SerializedFileReader};

use super::*;
use crate::lake::testlake::*;

const EU: &str = "date=2025-01-07/region=EU/part-0.parquet";
const US: &str = "date=2025-01-07/region=US/part-0.parquet";
const APAC: &str = "date=2025-01-08/region=APAC/part-0.parquet";

fn root_of(dir: &tempfile::TempDir) -> LakeRoot {
    LakeRoot::parse(&dir.path().display().to_string()).unwrap()
}

fn without(
    mut pairs: BTreeMap<(String, i64), usize>,
    users: &[&str],
) -> BTreeMap<(String, i64), usize> {
    pairs.retain(|(u, _), _| !users.contains(&u.as_str()));
    pairs
}

fn outcome_of<'a>(outcome: &'a EraseOutcome, relative: &str) -> &'a FileOutcome {
    outcome
        .files
        .iter()
        .find(|f| f.relative == relative)
        .unwrap()
}

fn no_temp_files(dir: &std::path::Path) {
    let leftovers: Vec<_> = all_files(dir)
        .into_iter()
        .filter(|f| f.contains(engine::TEMP_MARKER))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary objects left: {leftovers:?}"
    );
}

#[tokio::test]
async fn erase_removes_exactly_the_subjects_rows_and_never_touches_other_files() {
    let dir = tempfile::tempdir().unwrap();
    three_file_lake(dir.path());
    let p = |r: &str| dir.path().join(r);
    let (eu_before, apac_before) = (pairs(&p(EU)), pairs(&p(APAC)));
    let us_bytes = std::fs::read(p(US)).unwrap();
    let us_mtime = std::fs::metadata(p(US)).unwrap().modified().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen_in_callback = Arc::clone(&seen);

    let outcome = Erase::new(root_of(&dir), "user_id")
        .subjects(["u1", "u2", "nobody"])
        .concurrency(2)
        .on_progress(Arc::new(move |p: &EraseProgress| {
            seen_in_callback.lock().unwrap().push(p.clone())
        }))
        .execute()
        .await
        .unwrap();

    assert!(!outcome.has_failures(), "{outcome:?}");
    assert_eq!(outcome_of(&outcome, EU).status, FileStatus::Rewritten);
    assert_eq!(outcome_of(&outcome, EU).rows_removed, 20);
    assert_eq!(outcome_of(&outcome, EU).rows_before, 40);
    assert_eq!(outcome_of(&outcome, APAC).rows_removed, 10);
    assert_eq!(outcome_of(&outcome, US).status, FileStatus::Unchanged);
    assert_eq!(pairs(&p(EU)), without(eu_before, &["u1", "u2"]));
    assert_eq!(pairs(&p(APAC)), without(apac_before, &["u1"]));
    assert_eq!(std::fs::read(p(US)).unwrap(), us_bytes);
    assert_eq!(
        std::fs::metadata(p(US)).unwrap().modified().unwrap(),
        us_mtime
    );

    let m = &outcome.metrics;
    assert_eq!(
        (m.files_scanned, m.files_rewritten, m.files_failed),
        (3, 2, 0)
    );
    assert_eq!(m.rows_removed, 30);
    let new_sizes =
        std::fs::metadata(p(EU)).unwrap().len() + std::fs::metadata(p(APAC)).unwrap().len();
    assert_eq!(m.bytes_written, new_sizes);
    assert!(m.bytes_read > 0);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[2].files_done, 3);
        assert_eq!(seen[2].files_total, 3);
        assert_eq!(seen[2].rows_removed, 30);
    }
    no_temp_files(dir.path());

    // A second pass finds nothing and writes nothing.
    let eu_bytes = std::fs::read(p(EU)).unwrap();
    let again = Erase::new(root_of(&dir), "user_id")
        .subjects(["u1", "u2"])
        .execute()
        .await
        .unwrap();
    assert_eq!(again.metrics.files_rewritten, 0);
    assert_eq!(std::fs::read(p(EU)).unwrap(), eu_bytes);
}

#[tokio::test]
async fn a_rewrite_keeps_schema_metadata_codecs_bloom_filters_and_row_group_layout() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<(&str, i64)> = (0..50)
        .map(|i| (["a", "b", "c"][i as usize % 3], i))
        .collect();
    let props = props(7)
        .set_column_bloom_filter_enabled("user_id".into(), true)
        .build();
    let path = write_file(dir.path(), "f.parquet", &[events(&rows)], props);
    let before = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let before = before.metadata().clone();
    let arrow_before = read_all(&path)[0].schema();

    let outcome = Erase::new(root_of(&dir), "user_id")
        .subjects(["b"])
        .execute()
        .await
        .unwrap();
    assert_eq!(outcome.metrics.rows_removed, 17);

    let after = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let after = after.metadata();
    assert_eq!(
        after.file_metadata().schema_descr().root_schema(),
        before.file_metadata().schema_descr().root_schema()
    );
    let mut kv = before
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap();
    kv.push(parquet::file::metadata::KeyValue::new(
        surgery::ORIGINAL_CREATED_BY.to_string(),
        before.file_metadata().created_by().unwrap().to_string(),
    ));
    assert_eq!(after.file_metadata().key_value_metadata(), Some(&kv));
    assert!(
        after
            .file_metadata()
            .created_by()
            .unwrap()
            .starts_with("lethe version "),
        "created_by says who wrote the file"
    );
    assert_eq!(read_all(&path)[0].schema(), arrow_before);
    // One output row group per input row group, each minus its "b" rows.
    let expected: Vec<i64> = before
        .row_groups()
        .iter()
        .enumerate()
        .map(|(g, rg)| {
            let b_rows = (g as i64 * 7..g as i64 * 7 + rg.num_rows())
                .filter(|i| i % 3 == 1)
                .count() as i64;
            rg.num_rows() - b_rows
        })
        .filter(|n| *n > 0) // a row group left empty disappears
        .collect();
    let got: Vec<i64> = after.row_groups().iter().map(|rg| rg.num_rows()).collect();
    assert_eq!(got, expected);
    assert_eq!(before.num_row_groups(), 8);
    assert_eq!(after.num_row_groups(), 7);
    for rg in after.row_groups() {
        for col in rg.columns() {
            let want = match col.column_path().string().as_str() {
                "notes" => "SNAPPY",
                _ => "ZSTD",
            };
            assert!(
                col.compression().to_string().starts_with(want),
                "{}",
                col.compression()
            );
            assert!(col.statistics().is_some(), "statistics written");
        }
        assert!(
            rg.column(0).bloom_filter_offset().is_some(),
            "bloom filter kept"
        );
        assert!(rg.column(1).bloom_filter_offset().is_none());
    }
    assert!(matches!(
        before.row_group(0).column(4).compression(),
        Compression::SNAPPY
    ));
}

#[tokio::test]
async fn the_hadoop_crc_sidecar_is_rewritten_for_the_new_bytes() {
    let dir = tempfile::tempdir().unwrap();
    three_file_lake(dir.path());
    let data = dir.path().join(EU);
    let sidecar = data.with_file_name(".part-0.parquet.crc");
    let sidecar_for = |bytes: &[u8], bpc: usize| {
        let mut out = b"crc\0".to_vec();
        out.extend_from_slice(&(bpc as i32).to_be_bytes());
        for chunk in bytes.chunks(bpc) {
            out.extend_from_slice(&crc32fast::hash(chunk).to_be_bytes());
        }
        out
    };
    std::fs::write(&sidecar, sidecar_for(&std::fs::read(&data).unwrap(), 256)).unwrap();
    let us_sidecar = dir.path().join(US).with_file_name(".part-0.parquet.crc");
    let us_sidecar_bytes = sidecar_for(&std::fs::read(dir.path().join(US)).unwrap(), 512);
    std::fs::write(&us_sidecar, &us_sidecar_bytes).unwrap();

    let outcome = Erase::new(root_of(&dir), "user_id")
        .subjects(["u3"])
        .execute()
        .await
        .unwrap();
    assert_eq!(outcome_of(&outcome, EU).status, FileStatus::Rewritten);
    let new_bytes = std::fs::read(&data).unwrap();
    assert_eq!(
        std::fs::read(&sidecar).unwrap(),
        sidecar_for(&new_bytes, 256)
    );
    assert_eq!(std::fs::read(&us_sidecar).unwrap(), us_sidecar_bytes);
    no_temp_files(dir.path());
}

#[tokio::test]
async fn broken_files_are_refused_left_byte_identical_and_do_not_stop_the_others() {
    let dir = tempfile::tempdir().unwrap();
    three_file_lake(dir.path());
    let good = std::fs::read(dir.path().join(EU)).unwrap();
    let broken: [(&str, Vec<u8>); 4] = [
        ("junk.parquet", b"this is not parquet at all".to_vec()),
        ("tiny.parquet", b"PAR1".to_vec()),
        ("truncated.parquet", good[..good.len() / 2].to_vec()),
        // Footer intact, column data overwritten: the footer reads, decoding fails.
        ("scrambled.parquet", {
            let mut b = good.clone();
            for x in &mut b[4..good.len() / 2] {
                *x = 0xA5;
            }
            b
        }),
    ];
    for (name, bytes) in &broken {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }

    let outcome = Erase::new(root_of(&dir), "user_id")
        .subjects(["u1"])
        .execute()
        .await
        .unwrap();

    assert!(outcome.has_failures());
    assert_eq!(outcome.metrics.files_failed, 4);
    assert_eq!(outcome_of(&outcome, EU).status, FileStatus::Rewritten);
    assert_eq!(outcome_of(&outcome, APAC).status, FileStatus::Rewritten);
    for (name, bytes) in &broken {
        let FileStatus::Failed { error } = &outcome_of(&outcome, name).status else {
            panic!("{name} was not refused");
        };
        let expected = match *name {
            "scrambled.parquet" => "corrupt or unreadable",
            _ => "is not a Parquet file",
        };
        assert!(error.contains(expected), "{name}: {error}");
        assert_eq!(
            &std::fs::read(dir.path().join(name)).unwrap(),
            bytes,
            "{name} changed"
        );
    }
    no_temp_files(dir.path());
}

#[tokio::test]
async fn a_delta_table_is_refused_as_a_whole() {
    let dir = tempfile::tempdir().unwrap();
    three_file_lake(dir.path());
    std::fs::create_dir(dir.path().join("_delta_log")).unwrap();
    std::fs::write(
        dir.path().join("_delta_log/00000000000000000000.json"),
        "{}",
    )
    .unwrap();
    let before = std::fs::read(dir.path().join(EU)).unwrap();
    let err = Erase::new(root_of(&dir), "user_id")
        .subjects(["u1"])
        .execute()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LakeError::TableFormat {
                format: "Delta Lake",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("Delta Lake table"), "{err}");
    assert_eq!(std::fs::read(dir.path().join(EU)).unwrap(), before);
}

#[tokio::test]
async fn a_file_without_the_subject_column_fails_with_missing_column() {
    let dir = tempfile::tempdir().unwrap();
    three_file_lake(dir.path());
    let outcome = Erase::new(root_of(&dir), "customer")
        .subjects(["u1"])
        .execute()
        .await
        .unwrap();
    assert_eq!(outcome.metrics.files_failed, 3);
    let FileStatus::Failed { error } = &outcome.files[0].status else {
        panic!("not failed");
    };
    assert!(
        error.contains("has no top-level column \"customer\""),
        "{error}"
    );
}

#[tokio::test]
async fn erasing_every_row_leaves_a_valid_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    three_file_lake(dir.path());
    let outcome = Erase::new(root_of(&dir), "user_id")
        .subjects(["u1", "u9"])
        .execute()
        .await
        .unwrap();
    assert_eq!(outcome_of(&outcome, APAC).rows_removed, 20);
    let path = dir.path().join(APAC);
    let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    assert_eq!(reader.metadata().file_metadata().num_rows(), 0);
    assert!(pairs(&path).is_empty());
}

/// An in-memory store whose renames fail: the swap is the last step, so everything before it
/// (temporary object written and verified) has happened.
#[derive(Debug)]
struct RenameFails(InMemory);

impl std::fmt::Display for RenameFails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RenameFails")
    }
}

#[async_trait::async_trait]
impl ObjectStore for RenameFails {
    async fn put_opts(
        &self,
        location: &StorePath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.0.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &StorePath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.0.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &StorePath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.0.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<StorePath>>,
    ) -> BoxStream<'static, object_store::Result<StorePath>> {
        self.0.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&StorePath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.0.list(prefix)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&StorePath>,
    ) -> object_store::Result<ListResult> {
        self.0.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &StorePath,
        to: &StorePath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.0.copy_opts(from, to, options).await
    }
    async fn rename_opts(
        &self,
        _from: &StorePath,
        _to: &StorePath,
        _options: RenameOptions,
    ) -> object_store::Result<()> {
        Err(object_store::Error::NotImplemented {
            operation: "rename".into(),
            implementer: "RenameFails".into(),
        })
    }
}

#[tokio::test]
async fn a_failed_swap_leaves_the_original_and_no_temporary_object() {
    let dir = tempfile::tempdir().unwrap();
    three_file_lake(dir.path());
    let store = Arc::new(RenameFails(InMemory::new()));
    let bytes = std::fs::read(dir.path().join(EU)).unwrap();
    store
        .put(&StorePath::from(EU), PutPayload::from(bytes.clone()))
        .await
        .unwrap();
    let root = LakeRoot::from_store(store.clone(), StorePath::default(), "test://".into());
    let outcome = Erase::new(root, "user_id")
        .subjects(["u1"])
        .execute()
        .await
        .unwrap();
    let FileStatus::Failed { error } = &outcome.files[0].status else {
        panic!("not failed: {outcome:?}");
    };
    assert!(error.contains("rename"), "{error}");
    let got = store
        .get(&StorePath::from(EU))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), &bytes[..]);
    let keys: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(store.list(None))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.location.to_string())
        .collect();
    assert_eq!(keys, [EU]);
}

#[tokio::test]
async fn erase_works_on_an_in_memory_lake_with_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    three_file_lake(dir.path());
    let store = Arc::new(InMemory::new());
    for rel in [EU, US] {
        let bytes = std::fs::read(dir.path().join(rel)).unwrap();
        store
            .put(
                &StorePath::from(format!("lake/{rel}")),
                PutPayload::from(bytes),
            )
            .await
            .unwrap();
    }
    let root = LakeRoot::from_store(
        store.clone(),
        StorePath::from("lake"),
        "memory://lake".into(),
    );
    let outcome = Erase::new(root, "user_id")
        .subjects(["u5"])
        .execute()
        .await
        .unwrap();
    assert_eq!(outcome.metrics.files_rewritten, 1);
    assert_eq!(outcome_of(&outcome, US).rows_removed, 10);
    let keys: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(store.list(None))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.location.to_string())
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
}

#[tokio::test]
async fn a_killed_local_upload_leaves_no_staging_file_after_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    three_file_lake(dir.path());
    let folder = dir.path().join("date=2025-01-07/region=US");
    // What object_store's local multipart upload leaves when the process is killed mid-way.
    let staging = folder.join(format!(
        ".part-0.parquet{}{}#1",
        engine::TEMP_MARKER,
        uuid::Uuid::new_v4()
    ));
    std::fs::write(&staging, b"half an upload").unwrap();
    let unrelated = folder.join("notes#1");
    std::fs::write(&unrelated, b"not ours").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));

    // The subject is not in that file: it is found unchanged, and still cleaned.
    let outcome = Erase::new(root_of(&dir), "user_id")
        .subjects(["u1"])
        .execute()
        .await
        .unwrap();
    assert_eq!(outcome_of(&outcome, US).status, FileStatus::Unchanged);
    assert_eq!(outcome_of(&outcome, US).stale_temps_removed, 1);
    assert!(!staging.exists(), "staging file removed");
    assert!(unrelated.exists(), "only Lethe's own leftovers are removed");
    no_temp_files(dir.path());
}

#[tokio::test]
async fn nulling_a_subjects_columns_skips_those_an_older_file_does_not_have() {
    use arrow_array::StringArray;
    use arrow_schema::{DataType, Field, Schema};
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("sender", DataType::Utf8, true),
        Field::new("receiver", DataType::Utf8, true),
        Field::new("note", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
            Arc::new(StringArray::from(vec!["b", "a", "b"])),
            Arc::new(StringArray::from(vec!["a's", "b's", "c's"])),
        ],
    )
    .unwrap();
    let path = write_file(dir.path(), "m.parquet", &[batch], props(10).build());
    let policy = ErasePolicy {
        subject_columns: vec!["sender".into(), "receiver".into()],
        strategy: crate::domain::ErasureStrategy::NullSubjectColumns,
        // `sender_email` came with a later version of the dataset's schema.
        owned: [(
            "sender".to_string(),
            vec!["note".to_string(), "sender_email".to_string()],
        )]
        .into(),
        shielded: None,
    };
    let outcome = Erase::new(root_of(&dir), "sender")
        .policy(policy)
        .subjects(["a"])
        .execute()
        .await
        .unwrap();
    assert!(!outcome.has_failures(), "{:?}", outcome.files);
    let after = &read_all(&path)[0];
    let col = |n: &str| {
        after
            .column_by_name(n)
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect::<Vec<_>>()
    };
    assert_eq!(col("sender"), [None, Some("b".into()), Some("c".into())]);
    assert_eq!(col("receiver"), [Some("b".into()), None, Some("b".into())]);
    assert_eq!(col("note"), [None, Some("b's".into()), Some("c's".into())]);
}

mod page_filter;
