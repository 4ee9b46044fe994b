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

/// The bytes of every column chunk of row group `rg` of the file at `path`.
fn chunk_bytes(path: &std::path::Path, rg: usize) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    reader
        .metadata()
        .row_group(rg)
        .columns()
        .iter()
        .map(|c| {
            let (start, len) = c.byte_range();
            bytes[start as usize..(start + len) as usize].to_vec()
        })
        .collect()
}

#[tokio::test]
async fn row_groups_without_the_subject_are_copied_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    // Sorted by subject, 10 rows per row group: "u3" sits in row group 3 only.
    let rows: Vec<(String, i64)> = (0..80).map(|i| (format!("u{}", i / 10), i)).collect();
    let rows: Vec<(&str, i64)> = rows.iter().map(|(u, i)| (u.as_str(), *i)).collect();
    let props = props(10)
        .set_column_bloom_filter_enabled("user_id".into(), true)
        .set_column_dictionary_enabled("notes".into(), true)
        .build();
    let path = write_file(dir.path(), "f.parquet", &[events(&rows)], props);
    let before: Vec<Vec<Vec<u8>>> = (0..8).map(|rg| chunk_bytes(&path, rg)).collect();
    let pairs_before = pairs(&path);

    let outcome = Erase::new(root_of(&dir), "user_id")
        .subjects(["u3"])
        .execute()
        .await
        .unwrap();
    let m = &outcome.metrics;
    assert_eq!(m.rows_removed, 10);
    assert_eq!(
        m.surgery.row_groups_rewritten, 1,
        "only row group 3 is decoded"
    );
    assert_eq!(m.surgery.row_groups_copied, 7);
    assert!(m.surgery.bytes_copied > 6 * m.surgery.bytes_reencoded);

    let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let md = reader.metadata();
    assert_eq!(md.num_row_groups(), 7, "the emptied row group is dropped");
    let kept: Vec<usize> = vec![0, 1, 2, 4, 5, 6, 7];
    for (new, old) in kept.iter().enumerate() {
        assert_eq!(
            chunk_bytes(&path, new),
            before[*old],
            "row group {old} copied byte for byte"
        );
        let rg = md.row_group(new);
        assert!(
            rg.column(0).bloom_filter_offset().is_some(),
            "bloom filter copied"
        );
        assert!(rg.column(0).statistics().is_some(), "statistics copied");
    }
    assert_eq!(pairs(&path), without(pairs_before, &["u3"]));
    // The copied bloom filters still answer for their row groups.
    let sbbf = reader
        .get_row_group(0)
        .unwrap()
        .get_column_bloom_filter(0)
        .cloned();
    assert!(sbbf.is_none_or(|b| b.check(&"u0")));
    let located = crate::lake::Locate::new(root_of(&dir), "user_id")
        .subjects(["u5"])
        .execute()
        .await
        .unwrap();
    assert_eq!(located.files[0].rows, 10);
    assert_eq!(located.files[0].row_groups, vec![4]);
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

#[tokio::test]
async fn an_affected_row_group_is_filtered_page_by_page_and_the_erased_values_leave_the_file() {
    use parquet::file::properties::EnabledStatistics;
    use parquet::file::serialized_reader::ReadOptionsBuilder;
    use parquet::file::statistics::Statistics;

    let dir = tempfile::tempdir().unwrap();
    // One row group of 2,000 rows in pages of 100; the subject's 6 rows sit in one page.
    let rows: Vec<(String, i64)> = (0..2000)
        .map(|i| {
            let user = if (500..506).contains(&i) {
                "zz-victim".to_string()
            } else {
                format!("u{:03}", i % 150)
            };
            (user, i)
        })
        .collect();
    let rows: Vec<(&str, i64)> = rows.iter().map(|(u, i)| (u.as_str(), *i)).collect();
    let props = props(10_000)
        .set_compression(Compression::UNCOMPRESSED)
        .set_column_compression("notes".into(), Compression::UNCOMPRESSED)
        .set_data_page_row_count_limit(100)
        .set_write_batch_size(50)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_column_bloom_filter_enabled("user_id".into(), true)
        .build();
    let path = write_file(dir.path(), "f.parquet", &[events(&rows)], props);
    let before = std::fs::read(&path).unwrap();
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    assert!(contains(&before, b"zz-victim") && contains(&before, b"note 502"));
    let pairs_before = pairs(&path);

    let outcome = Erase::new(root_of(&dir), "user_id")
        .subjects(["zz-victim"])
        .execute()
        .await
        .unwrap();
    let m = &outcome.metrics.surgery;
    assert_eq!(outcome.metrics.rows_removed, 6);
    assert_eq!(m.row_groups_rewritten, 1);
    assert!(
        m.pages_copied > 10 * m.pages_reencoded && m.pages_reencoded > 0,
        "only the pages that held the subject are encoded again: {m:?}"
    );

    let after = std::fs::read(&path).unwrap();
    assert!(
        !contains(&after, b"zz-victim") && !contains(&after, b"note 502"),
        "the subject's values are gone from dictionaries, statistics and page index"
    );
    assert_eq!(pairs(&path), without(pairs_before, &["zz-victim"]));

    let options = ReadOptionsBuilder::new()
        .with_page_index()
        .with_reader_properties(
            parquet::file::properties::ReaderProperties::builder()
                .set_read_bloom_filter(true)
                .build(),
        )
        .build();
    let reader =
        SerializedFileReader::new_with_options(std::fs::File::open(&path).unwrap(), options)
            .unwrap();
    let md = reader.metadata();
    let user_id = md.row_group(0).column(0);
    assert!(
        user_id.dictionary_page_offset().is_some(),
        "still dictionary encoded"
    );
    match user_id.statistics() {
        Some(Statistics::ByteArray(s)) => {
            assert_eq!(s.min_opt().unwrap().data(), b"u000");
            assert_eq!(
                s.max_opt().unwrap().data(),
                b"u149",
                "recomputed, not carried over"
            );
        }
        other => panic!("user_id statistics: {other:?}"),
    }
    let offsets = md
        .page_index_for_row_group(0)
        .offset_index(0)
        .cloned()
        .expect("offset index written");
    let first_rows: Vec<i64> = offsets
        .page_locations()
        .iter()
        .map(|p| p.first_row_index)
        .collect();
    assert_eq!(first_rows.len(), 20);
    assert_eq!(
        first_rows[5..7],
        [500, 594],
        "the page that lost 6 rows holds 94"
    );
    let bloom = reader
        .get_row_group(0)
        .unwrap()
        .get_column_bloom_filter(0)
        .cloned()
        .expect("bloom filter rebuilt");
    assert!(bloom.check(&"u007") && !bloom.check(&"zz-victim"));
}

#[tokio::test]
async fn a_chunk_whose_dictionary_overflowed_into_plain_pages_is_filtered_in_both_kinds() {
    let dir = tempfile::tempdir().unwrap();
    // Distinct ids overflow a 1 KiB dictionary after a few pages: the chunk holds dictionary
    // pages, then PLAIN pages. The subject has rows in both kinds.
    let rows: Vec<(String, i64)> = (0..3000)
        .map(|i| {
            let user = if i == 10 || i == 2900 {
                "victim".to_string()
            } else {
                format!("user-{i:05}")
            };
            (user, i)
        })
        .collect();
    let rows: Vec<(&str, i64)> = rows.iter().map(|(u, i)| (u.as_str(), *i)).collect();
    let props = props(10_000)
        .set_compression(Compression::UNCOMPRESSED)
        .set_column_compression("notes".into(), Compression::UNCOMPRESSED)
        .set_dictionary_page_size_limit(1024)
        .set_data_page_row_count_limit(100)
        .set_write_batch_size(50)
        .build();
    let path = write_file(dir.path(), "f.parquet", &[events(&rows)], props);
    let encodings: Vec<_> = {
        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        reader
            .metadata()
            .row_group(0)
            .column(0)
            .encodings()
            .collect()
    };
    assert!(
        encodings.contains(&parquet::basic::Encoding::PLAIN)
            && encodings.contains(&parquet::basic::Encoding::RLE_DICTIONARY),
        "{encodings:?}"
    );
    let pairs_before = pairs(&path);
    let outcome = Erase::new(root_of(&dir), "user_id")
        .subjects(["victim"])
        .execute()
        .await
        .unwrap();
    assert_eq!(outcome.metrics.rows_removed, 2);
    assert!(outcome.metrics.surgery.pages_copied > 0);
    let after = std::fs::read(&path).unwrap();
    assert!(!after.windows(6).any(|w| w == b"victim"));
    assert_eq!(pairs(&path), without(pairs_before, &["victim"]));
}

#[tokio::test]
async fn chunk_statistics_without_a_page_index_come_from_the_values_kept() {
    use parquet::file::properties::EnabledStatistics;
    use parquet::file::statistics::Statistics;

    let dir = tempfile::tempdir().unwrap();
    // "zz" is the largest id and "aa" the smallest; both are erased.
    let rows: Vec<(String, i64)> = (0..1000)
        .map(|i| {
            let user = match i {
                3 => "aa".to_string(),
                700 => "zz".to_string(),
                _ => format!("m{:02}", i % 40),
            };
            (user, i)
        })
        .collect();
    let rows: Vec<(&str, i64)> = rows.iter().map(|(u, i)| (u.as_str(), *i)).collect();
    let props = props(10_000)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_data_page_row_count_limit(100)
        .set_write_batch_size(50)
        .build();
    let path = write_file(dir.path(), "f.parquet", &[events(&rows)], props);
    let outcome = Erase::new(root_of(&dir), "user_id")
        .subjects(["aa", "zz"])
        .execute()
        .await
        .unwrap();
    assert_eq!(outcome.metrics.rows_removed, 2);
    assert!(outcome.metrics.surgery.pages_copied > 0);
    let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let rg = reader.metadata().row_group(0);
    match rg.column(0).statistics() {
        Some(Statistics::ByteArray(s)) => {
            assert_eq!(s.min_opt().unwrap().data(), b"m00");
            assert_eq!(s.max_opt().unwrap().data(), b"m39");
            assert_eq!(s.null_count_opt(), Some(0));
        }
        other => panic!("user_id statistics: {other:?}"),
    }
    match rg.column(1).statistics() {
        Some(Statistics::Int64(s)) => {
            assert_eq!((s.min_opt(), s.max_opt()), (Some(&0), Some(&999)))
        }
        other => panic!("id statistics: {other:?}"),
    }
    match rg.column(4).statistics() {
        // Odd ids have no note; id 3 was one of them.
        Some(Statistics::ByteArray(s)) => assert_eq!(s.null_count_opt(), Some(499)),
        other => panic!("notes statistics: {other:?}"),
    }
}

#[tokio::test]
async fn float_chunks_are_filtered_page_by_page_with_the_total_order_statistics_of_the_crate() {
    use arrow_array::{Float32Array, Float64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use parquet::file::page_index::column_index::ColumnIndexMetaData;
    use parquet::file::properties::EnabledStatistics;
    use parquet::file::serialized_reader::ReadOptionsBuilder;
    use parquet::file::statistics::Statistics;

    // 2,000 rows in pages of 100. The subject's rows (500..506) hold both extremes of both
    // float columns; NaN every 37 rows, -0.0 and +0.0 elsewhere. `score` is dictionary
    // encoded, `ratio` plain.
    let victim = |i: usize| (500..506).contains(&i);
    let user = |i: usize| {
        if victim(i) {
            "zz-victim".to_string()
        } else {
            format!("u{:03}", i % 150)
        }
    };
    let score = |i: usize| match i {
        500 => 1e9,
        501 => -1e9,
        _ if i.is_multiple_of(37) => f64::NAN,
        7 => -0.0,
        _ => (i % 50) as f64 / 4.0,
    };
    let ratio = |i: usize| match i {
        502 => f32::INFINITY,
        503 => f32::NEG_INFINITY,
        _ if i.is_multiple_of(37) => f32::NAN,
        _ => i as f32 / 3.0,
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("score", DataType::Float64, false),
        Field::new("ratio", DataType::Float32, false),
    ]));
    let batch_of = |rows: &[usize]| {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|&i| user(i)))),
                Arc::new(Float64Array::from_iter_values(
                    rows.iter().map(|&i| score(i)),
                )),
                Arc::new(Float32Array::from_iter_values(
                    rows.iter().map(|&i| ratio(i)),
                )),
            ],
        )
        .unwrap()
    };
    let props = || {
        props(10_000)
            .set_data_page_row_count_limit(100)
            .set_write_batch_size(50)
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_column_dictionary_enabled("ratio".into(), false)
            .build()
    };
    let dir = tempfile::tempdir().unwrap();
    let all: Vec<usize> = (0..2000).collect();
    let path = write_file(dir.path(), "f.parquet", &[batch_of(&all)], props());
    let kept: Vec<usize> = all.iter().copied().filter(|&i| !victim(i)).collect();
    let expected_dir = tempfile::tempdir().unwrap();
    let expected = write_file(
        expected_dir.path(),
        "e.parquet",
        &[batch_of(&kept)],
        props(),
    );

    let outcome = Erase::new(root_of(&dir), "user_id")
        .subjects(["zz-victim"])
        .execute()
        .await
        .unwrap();
    assert_eq!(outcome.metrics.rows_removed, 6);
    let m = &outcome.metrics.surgery;
    assert!(
        m.pages_copied >= 3 * 19,
        "the float chunks' untouched pages are copied too: {m:?}"
    );

    let open = |p: &std::path::Path| {
        let options = ReadOptionsBuilder::new().with_page_index().build();
        SerializedFileReader::new_with_options(std::fs::File::open(p).unwrap(), options).unwrap()
    };
    let (got, want) = (open(&path), open(&expected));
    for column in [1, 2] {
        let (g, w) = (
            got.metadata().row_group(0).column(column),
            want.metadata().row_group(0).column(column),
        );
        assert_eq!(
            g.statistics(),
            w.statistics(),
            "column {column}: the statistics the parquet crate writes for the rows kept"
        );
        assert_eq!(
            g.encodings().collect::<Vec<_>>(),
            w.encodings().collect::<Vec<_>>()
        );
    }
    match got.metadata().row_group(0).column(1).statistics() {
        Some(Statistics::Double(s)) => {
            assert_eq!(s.min_opt(), Some(&-0.0));
            assert!(s.min_opt().unwrap().is_sign_negative());
            assert_eq!(s.max_opt(), Some(&12.25));
            assert_eq!(
                s.nan_count_opt(),
                Some(kept.iter().filter(|&&i| i.is_multiple_of(37)).count() as u64)
            );
        }
        other => panic!("score statistics: {other:?}"),
    }
    // The page that lost the subject's rows is bounded by what it kept.
    match got.metadata().page_index_for_row_group(0).column_index(1) {
        Some(ColumnIndexMetaData::DOUBLE(ci)) => {
            let maxes: Vec<f64> = (0..ci.num_pages() as usize)
                .map(|p| *ci.max_value(p).unwrap())
                .collect();
            assert!(maxes.iter().all(|&m| m < 1e9), "{maxes:?}");
            let nans: i64 = (0..ci.num_pages() as usize)
                .map(|p| ci.nan_count(p).unwrap())
                .sum();
            assert_eq!(
                nans as usize,
                kept.iter().filter(|&&i| i.is_multiple_of(37)).count()
            );
        }
        other => panic!("score column index: {other:?}"),
    }
    let read = |p: &std::path::Path| {
        read_all(p)
            .iter()
            .flat_map(|b| {
                let s = b
                    .column(1)
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .unwrap()
                    .clone();
                let r = b
                    .column(2)
                    .as_any()
                    .downcast_ref::<Float32Array>()
                    .unwrap()
                    .clone();
                (0..b.num_rows())
                    .map(move |i| (s.value(i).to_bits(), r.value(i).to_bits()))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        read(&path),
        read(&expected),
        "every kept value, bit for bit"
    );
}

#[tokio::test]
async fn pages_encoded_again_keep_every_codec_the_page_filter_writes() {
    use parquet::basic::{BrotliLevel, GzipLevel, ZstdLevel};
    let rows: Vec<(String, i64)> = (0..1500)
        .map(|i| {
            let user = if i == 5 || i == 1205 {
                "victim".to_string()
            } else {
                format!("u{:03}", i % 40)
            };
            (user, i)
        })
        .collect();
    let rows: Vec<(&str, i64)> = rows.iter().map(|(u, i)| (u.as_str(), *i)).collect();
    for compression in [
        Compression::UNCOMPRESSED,
        Compression::GZIP(GzipLevel::default()),
        Compression::BROTLI(BrotliLevel::default()),
        Compression::LZ4_RAW,
        Compression::ZSTD(ZstdLevel::try_new(3).unwrap()),
        Compression::SNAPPY,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let props = props(10_000)
            .set_compression(compression)
            .set_column_compression("notes".into(), compression)
            .set_data_page_row_count_limit(100)
            .set_write_batch_size(50)
            .build();
        let path = write_file(dir.path(), "f.parquet", &[events(&rows)], props);
        let before = pairs(&path);
        let outcome = Erase::new(root_of(&dir), "user_id")
            .subjects(["victim"])
            .execute()
            .await
            .unwrap();
        let m = &outcome.metrics.surgery;
        assert!(
            m.pages_reencoded > 0 && m.pages_copied > 0,
            "{compression:?}: {m:?}"
        );
        assert_eq!(
            pairs(&path),
            without(before, &["victim"]),
            "{compression:?}"
        );
        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        let column = reader.metadata().row_group(0).column(0);
        // Levels are not recorded in a file: the codec is.
        assert_eq!(
            std::mem::discriminant(&column.compression()),
            std::mem::discriminant(&compression),
            "the chunk keeps its codec"
        );
    }
}
