//! Small lakes for the lake engine's unit tests, written with parquet's `ArrowWriter`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

/// The schema of test event files.
pub(crate) fn event_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("id", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("distance_km", DataType::Float64, true),
        Field::new("notes", DataType::Utf8, true),
    ]))
}

/// A batch of events, one per `(user_id, id)`.
pub(crate) fn events(rows: &[(&str, i64)]) -> RecordBatch {
    let users: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0)));
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1)));
    let ts: ArrayRef = Arc::new(
        TimestampMicrosecondArray::from_iter_values(
            rows.iter().map(|r| 1_736_208_000_000_000 + r.1),
        )
        .with_timezone("UTC"),
    );
    let distance: ArrayRef = Arc::new(Float64Array::from_iter(
        rows.iter()
            .map(|r| (r.1 % 3 != 0).then_some(r.1 as f64 / 10.0)),
    ));
    let notes: ArrayRef = Arc::new(StringArray::from_iter(
        rows.iter()
            .map(|r| (r.1 % 2 == 0).then(|| format!("note {}", r.1))),
    ));
    RecordBatch::try_new(event_schema(), vec![users, ids, ts, distance, notes]).unwrap()
}

/// Default properties of test files: ZSTD for all columns but SNAPPY for `notes`, custom
/// key-value metadata, `rows_per_group` rows per row group.
pub(crate) fn props(rows_per_group: usize) -> parquet::file::properties::WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_column_compression("notes".into(), Compression::SNAPPY)
        .set_max_row_group_row_count(Some(rows_per_group))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            "lethe.test".to_string(),
            "kept".to_string(),
        )]))
}

/// Writes `batches` to `root/relative` (folders created) and returns the path.
pub(crate) fn write_file(
    root: &Path,
    relative: &str,
    batches: &[RecordBatch],
    props: WriterProperties,
) -> PathBuf {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(&path).unwrap();
    let mut w = ArrowWriter::try_new(file, batches[0].schema(), Some(props)).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
    path
}

/// All rows of a Parquet file.
pub(crate) fn read_all(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// The multiset of `(user_id, id)` pairs in a file.
pub(crate) fn pairs(path: &Path) -> BTreeMap<(String, i64), usize> {
    let mut out = BTreeMap::new();
    for b in read_all(path) {
        let users = b
            .column_by_name("user_id")
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .clone();
        let ids = b
            .column_by_name("id")
            .unwrap()
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .clone();
        for i in 0..b.num_rows() {
            *out.entry((users.value(i).to_string(), ids.value(i)))
                .or_default() += 1;
        }
        assert!(users.null_count() == 0);
    }
    out
}

/// Every file under `root` (relative paths, including hidden ones), sorted.
pub(crate) fn all_files(root: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// A three-file lake: EU file with u1..u4 (4 row groups, sorted by user), US file with u5..u8,
/// APAC file with u1 and u9. 10 rows per user.
pub(crate) fn three_file_lake(root: &Path) {
    let rows = |users: &[&'static str], base: i64| -> Vec<(&'static str, i64)> {
        users
            .iter()
            .enumerate()
            .flat_map(|(u, name)| (0..10).map(move |i| (*name, base + u as i64 * 10 + i)))
            .collect()
    };
    write_file(
        root,
        "date=2025-01-07/region=EU/part-0.parquet",
        &[events(&rows(&["u1", "u2", "u3", "u4"], 0))],
        props(10).build(),
    );
    write_file(
        root,
        "date=2025-01-07/region=US/part-0.parquet",
        &[events(&rows(&["u5", "u6", "u7", "u8"], 100))],
        props(10).build(),
    );
    write_file(
        root,
        "date=2025-01-08/region=APAC/part-0.parquet",
        &[events(&rows(&["u1", "u9"], 200))],
        props(20).build(),
    );
}
