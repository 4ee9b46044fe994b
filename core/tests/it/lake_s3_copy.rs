//! Server-side copies of untouched row groups on S3 (multipart `UploadPartCopy`), against a
//! real S3 API server (moto, `.ci/s3.sh`); skipped unless `LETHE_TEST_S3_ENDPOINT` is set.
//!
//! The file: 10 row groups of 32 rows × 64 KiB of random bytes (about 2 MiB each, 20 MiB in
//! all, incompressible), so runs of untouched row groups pass S3's 5 MiB part minimum.
//!
//! moto 5.2 honours `x-amz-copy-source-range` on `UploadPartCopy` but ignores
//! `x-amz-copy-source-if-match` (it copies whatever the source holds): the changed-original
//! test therefore fails at the conditional ranged `GET` that tops a part up (`If-Match`, which
//! moto honours); on S3 the copy itself would answer `412` as well.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow_array::{ArrayRef, BinaryArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use lethe_core::lake::{
    Erase, EraseSubjects, FileStatus, LakeError, LakeRoot, RowEdits, RowFilter,
};
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::ParquetMetaDataReader;
use parquet::file::properties::{BloomFilterPosition, WriterProperties};
use rand::RngCore;

use super::lake_s3::{
    create_bucket, get, key, outcome_of, put, s3_endpoint, s3_root, temp_objects,
};

const ROW_GROUPS: usize = 10;
const ROWS_PER_GROUP: usize = 32;
const PAYLOAD: usize = 64 * 1024;
const FILE: &str = "date=2025-01-07/region=EU/part-0.parquet";

/// The subject of row `i` of row group `rg`.
fn user(rg: usize, i: usize) -> String {
    format!("u-{rg:02}-{i:02}")
}

/// The test file: `user_id` (string) and `payload` (64 KiB of random bytes) per row; with
/// `blooms`, a bloom filter on `user_id` in every row group, at that position (after the last
/// row group as parquet-mr and Arrow C++ write them, or after each as the parquet crate does).
fn big_file(blooms: Option<BloomFilterPosition>) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("payload", DataType::Binary, false),
    ]));
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(ROWS_PER_GROUP))
        .set_dictionary_enabled(false)
        .set_column_bloom_filter_enabled("user_id".into(), blooms.is_some())
        .set_bloom_filter_position(blooms.unwrap_or(BloomFilterPosition::End))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, Arc::clone(&schema), Some(props)).unwrap();
    let mut rng = rand::thread_rng();
    for rg in 0..ROW_GROUPS {
        let users: Vec<String> = (0..ROWS_PER_GROUP).map(|i| user(rg, i)).collect();
        let payloads: Vec<Vec<u8>> = (0..ROWS_PER_GROUP)
            .map(|_| {
                let mut b = vec![0u8; PAYLOAD];
                rng.fill_bytes(&mut b);
                b
            })
            .collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(users)),
            Arc::new(BinaryArray::from_iter_values(payloads.iter())),
        ];
        writer
            .write(&RecordBatch::try_new(Arc::clone(&schema), columns).unwrap())
            .unwrap();
        writer.flush().unwrap();
    }
    writer.close().unwrap();
    out
}

/// The byte ranges of each row group's column chunks.
fn chunk_ranges(file: &bytes::Bytes) -> Vec<Vec<std::ops::Range<usize>>> {
    let md = ParquetMetaDataReader::new().parse_and_finish(file).unwrap();
    md.row_groups()
        .iter()
        .map(|rg| {
            rg.columns()
                .iter()
                .map(|c| {
                    let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset()) as usize;
                    start..start + c.compressed_size() as usize
                })
                .collect()
        })
        .collect()
}

/// The `user_id`s of a file, in order.
fn users_of(file: bytes::Bytes) -> Vec<String> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let users = batch
            .column_by_name("user_id")
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .clone();
        out.extend(users.iter().map(|u| u.unwrap().to_string()));
    }
    out
}

async fn lake_with_big_file(
    endpoint: &str,
    blooms: Option<BloomFilterPosition>,
) -> (LakeRoot, bytes::Bytes) {
    let bucket = create_bucket(endpoint);
    // Parts of 5 MiB, S3's minimum.
    let root = s3_root(endpoint, &bucket, "events", Some(5 * 1024 * 1024));
    let bytes = big_file(blooms);
    assert!(bytes.len() > 18 * 1024 * 1024, "{} bytes", bytes.len());
    put(&root, FILE, bytes.clone()).await;
    (root, bytes::Bytes::from(bytes))
}

#[tokio::test]
async fn untouched_row_groups_on_s3_are_copied_server_side_byte_for_byte() {
    let Some(endpoint) = s3_endpoint("untouched_row_groups_on_s3_are_copied_server_side") else {
        return;
    };
    erase_one_row_of_row_group_3(&endpoint, None).await;
}

/// Bloom filters after the last row group (parquet-mr, Arrow C++) or after each (the parquet
/// crate) do not split the runs: the same copies as without, and the filters kept in place.
#[tokio::test]
async fn row_groups_with_bloom_filters_are_copied_server_side_in_runs_too() {
    let Some(endpoint) = s3_endpoint("row_groups_with_bloom_filters_are_copied_server_side") else {
        return;
    };
    for position in [BloomFilterPosition::End, BloomFilterPosition::AfterRowGroup] {
        let (original, new) = erase_one_row_of_row_group_3(&endpoint, Some(position)).await;
        blooms_kept(&original, &new, position);
    }
}

/// Every row group of `new` has a bloom filter that finds its first user; a copied row
/// group's filter is the original's, byte for byte, at the same place relative to its row
/// group.
fn blooms_kept(original: &bytes::Bytes, new: &bytes::Bytes, position: BloomFilterPosition) {
    use parquet::file::properties::ReaderProperties;
    use parquet::file::reader::FileReader;
    use parquet::file::serialized_reader::{ReadOptionsBuilder, SerializedFileReader};
    let old_md = ParquetMetaDataReader::new()
        .parse_and_finish(original)
        .unwrap();
    let md = ParquetMetaDataReader::new().parse_and_finish(new).unwrap();
    let options = ReadOptionsBuilder::new()
        .with_reader_properties(
            ReaderProperties::builder()
                .set_read_bloom_filter(true)
                .build(),
        )
        .build();
    let reader = SerializedFileReader::new_with_options(new.clone(), options).unwrap();
    let after_chunk = |c: &parquet::file::metadata::ColumnChunkMetaData| {
        c.bloom_filter_offset().unwrap() - (c.data_page_offset() + c.compressed_size())
    };
    for rg in 0..ROW_GROUPS {
        let bloom = reader
            .get_row_group(rg)
            .unwrap()
            .get_column_bloom_filter(0)
            .cloned()
            .expect("a bloom filter");
        assert!(bloom.check(&user(rg, 0).as_str()), "row group {rg}");
        if rg == 3 {
            continue;
        }
        let (a, b) = (old_md.row_group(rg).column(0), md.row_group(rg).column(0));
        let range = |c: &parquet::file::metadata::ColumnChunkMetaData| {
            let o = c.bloom_filter_offset().unwrap() as usize;
            o..o + c.bloom_filter_length().unwrap() as usize
        };
        assert_eq!(&original[range(a)], &new[range(b)], "row group {rg}");
        if position == BloomFilterPosition::AfterRowGroup {
            // user_id is column 0: the payload chunk lies between it and the filters.
            assert_eq!(
                after_chunk(a),
                after_chunk(b),
                "row group {rg}: filter moved"
            );
        }
    }
}

/// Erases one row of row group 3 of the big file (with or without bloom filters) and checks
/// the copies; returns the original and the new file.
async fn erase_one_row_of_row_group_3(
    endpoint: &str,
    blooms: Option<BloomFilterPosition>,
) -> (bytes::Bytes, bytes::Bytes) {
    let (root, original) = lake_with_big_file(endpoint, blooms).await;
    let victim = user(3, 7);
    let outcome = Erase::new(root.clone(), "user_id")
        .subjects([victim.clone()])
        .execute()
        .await
        .unwrap();
    let done = outcome_of(&outcome, FILE);
    println!("{}", serde_json::to_string(done).unwrap());
    assert_eq!(done.status, FileStatus::Rewritten, "{done:?}");
    assert_eq!(done.rows_removed, 1);
    assert_eq!(done.surgery.row_groups_copied, 9, "{done:?}");
    assert_eq!(done.surgery.row_groups_rewritten, 1, "{done:?}");
    // Row groups 0–2 (6 MiB) follow the 4-byte magic both files start with: copied by S3
    // from offset 0 as part 1. Row groups 4–9 (12 MiB): their start tops the rewritten row
    // group 3 (2 MiB) up to 5 MiB, the rest (about 9 MiB) is copied by S3.
    let server_side = done.surgery.bytes_copied_server_side;
    assert!(
        server_side > 14 * 1024 * 1024 && server_side <= done.surgery.bytes_copied + 4,
        "{done:?}"
    );
    assert_eq!(
        outcome.metrics.surgery.bytes_copied_server_side,
        server_side
    );
    assert!(
        done.bytes_read + server_side <= original.len() as u64 + 64 * 1024,
        "the worker fetched what S3 copied: {done:?}"
    );
    assert!(done.upload_parts >= 3, "{done:?}");

    let new = get(&root, FILE).await;
    assert_eq!(new.len() as u64, done.bytes_written);
    let (old_ranges, new_ranges) = (chunk_ranges(&original), chunk_ranges(&new));
    assert_eq!(new_ranges.len(), ROW_GROUPS);
    for rg in (0..ROW_GROUPS).filter(|&rg| rg != 3) {
        for (old, new_range) in old_ranges[rg].iter().zip(&new_ranges[rg]) {
            assert_eq!(
                &original[old.clone()],
                &new[new_range.clone()],
                "row group {rg}: column chunk {old:?} not copied byte for byte"
            );
        }
    }
    let mut expected = users_of(original.clone());
    expected.retain(|u| *u != victim);
    assert_eq!(users_of(new.clone()), expected);
    assert_eq!(
        root.incomplete_uploads().await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(temp_objects(root.store()).await, Vec::<String>::new());
    (original, new)
}

/// Erases `inner`'s subjects, but re-uploads the original (same bytes, new ETag: a multipart
/// upload of one part) the first time the plan is asked: the file changed under the rewrite.
#[derive(Debug)]
struct ChangeTheOriginal {
    inner: EraseSubjects,
    root: LakeRoot,
    bytes: bytes::Bytes,
    done: AtomicBool,
}

impl RowFilter for ChangeTheOriginal {
    fn subjects(&self) -> &BTreeSet<String> {
        self.inner.subjects()
    }

    fn columns(&self) -> &[String] {
        self.inner.columns()
    }

    fn plan(&self, file: &str, batch: &RecordBatch) -> Result<RowEdits, LakeError> {
        if !self.done.swap(true, Ordering::SeqCst) {
            let (store, at, bytes) = (
                Arc::clone(self.root.store()),
                key(&self.root, FILE),
                self.bytes.clone(),
            );
            tokio::runtime::Handle::current().block_on(async move {
                let mut upload = store.put_multipart(&at).await.unwrap();
                upload.put_part(PutPayload::from(bytes)).await.unwrap();
                upload.complete().await.unwrap();
            });
        }
        self.inner.plan(file, batch)
    }
}

#[tokio::test]
async fn an_original_changed_during_the_copy_fails_the_file_and_leaves_no_upload() {
    let Some(endpoint) = s3_endpoint("an_original_changed_during_the_copy_fails_the_file") else {
        return;
    };
    let (root, original) = lake_with_big_file(&endpoint, None).await;
    let before = root.store().head(&key(&root, FILE)).await.unwrap();
    // Row groups 0–2 are rewritten first (6 MiB: part 1 goes out, the multipart upload
    // exists), then the fetch topping the 1 MiB left up to 5 MiB before the copy of row
    // groups 3–9 finds the original changed (`If-Match`; on S3 the copy's
    // `x-amz-copy-source-if-match` would refuse it as well).
    let victims = [user(0, 1), user(1, 1), user(2, 1)];
    let filter = Arc::new(ChangeTheOriginal {
        inner: EraseSubjects::new("user_id", victims),
        root: root.clone(),
        bytes: original.clone(),
        done: AtomicBool::new(false),
    });
    let outcome = Erase::new(root.clone(), "user_id")
        .row_filter(filter)
        .execute()
        .await
        .unwrap();
    let done = outcome_of(&outcome, FILE);
    let FileStatus::Failed { error } = &done.status else {
        panic!("a changed original was rewritten: {done:?}");
    };
    assert!(error.contains("changed"), "{error}");
    let after = root.store().head(&key(&root, FILE)).await.unwrap();
    assert_ne!(
        after.e_tag, before.e_tag,
        "the test did change the original"
    );
    assert_eq!(
        get(&root, FILE).await,
        original,
        "the original's bytes changed"
    );
    assert_eq!(
        root.incomplete_uploads().await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(temp_objects(root.store()).await, Vec::<String>::new());
}

/// A Hadoop `ChecksumFileSystem` sidecar of `data`: `crc\0`, bytes per checksum (512), one
/// big-endian CRC-32 per 512 bytes.
fn sidecar_for(data: &[u8]) -> Vec<u8> {
    let mut out = b"crc\0".to_vec();
    out.extend_from_slice(&512i32.to_be_bytes());
    for chunk in data.chunks(512) {
        out.extend_from_slice(&crc32fast::hash(chunk).to_be_bytes());
    }
    out
}

#[tokio::test]
async fn a_file_with_a_crc_sidecar_on_s3_is_fetched_whole_and_its_sidecar_rewritten() {
    let Some(endpoint) = s3_endpoint("a_file_with_a_crc_sidecar_on_s3_is_fetched_whole") else {
        return;
    };
    let (root, original) = lake_with_big_file(&endpoint, None).await;
    let sidecar = "date=2025-01-07/region=EU/.part-0.parquet.crc";
    put(&root, sidecar, sidecar_for(&original)).await;
    let outcome = Erase::new(root.clone(), "user_id")
        .subjects([user(3, 7)])
        .execute()
        .await
        .unwrap();
    let done = outcome_of(&outcome, FILE);
    assert_eq!(done.status, FileStatus::Rewritten, "{done:?}");
    assert_eq!(done.surgery.row_groups_copied, 9, "{done:?}");
    assert_eq!(done.surgery.bytes_copied_server_side, 0, "{done:?}");
    assert!(
        done.bytes_read >= original.len() as u64 - 64 * 1024,
        "{done:?}"
    );
    let new = get(&root, FILE).await;
    assert_eq!(get(&root, sidecar).await.to_vec(), sidecar_for(&new));
    assert_eq!(
        root.incomplete_uploads().await.unwrap(),
        Vec::<String>::new()
    );
}
