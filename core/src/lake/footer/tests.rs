//! Erasures from files whose footers only parquet-mr and Arrow C++ forgive, written by the
//! parquet crate and then given, byte for byte, the mistake a known writer makes.

use std::collections::BTreeMap;
use std::path::Path;

use parquet::basic::LogicalType;
use parquet::file::metadata::ParquetMetaDataReader;
use parquet::file::reader::{FileReader, SerializedFileReader};

use super::compact::{Struct, Value, read_struct, wire, write_struct};
use crate::lake::open::LakeFileReader;
use crate::lake::testlake::{events, pairs, props, write_file};
use crate::lake::{Erase, FileStatus, LakeRoot};

const FILE: &str = "part-0.parquet";

/// A file of 4 users × 10 events in 2 row groups; returns its path.
fn file(dir: &Path) -> std::path::PathBuf {
    let rows: Vec<(String, i64)> = (0..40).map(|i| (format!("u{}", i % 4), i)).collect();
    let rows: Vec<(&str, i64)> = rows.iter().map(|(u, i)| (u.as_str(), *i)).collect();
    write_file(dir, FILE, &[events(&rows)], props(20).build())
}

/// Rewrites the footer of `path` through `edit`, which also sees the file's bytes.
fn patch(path: &Path, edit: impl FnOnce(&mut Struct, &[u8])) {
    let bytes = std::fs::read(path).unwrap();
    let n = bytes.len();
    let len = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().unwrap()) as usize;
    let start = n - 8 - len;
    let (mut footer, _) = read_struct(&bytes[start..n - 8]).unwrap();
    edit(&mut footer, &bytes);
    let new = write_struct(&footer);
    let mut out = bytes[..start].to_vec();
    out.extend_from_slice(&new);
    out.extend_from_slice(&(new.len() as u32).to_le_bytes());
    out.extend_from_slice(b"PAR1");
    std::fs::write(path, out).unwrap();
}

fn list_mut(s: &mut Struct, id: i16) -> &mut Vec<Value> {
    match s.get_mut(id) {
        Some(Value::List(_, _, items)) => items,
        other => panic!("field {id} is {other:?}"),
    }
}

fn as_struct(v: &mut Value) -> &mut Struct {
    match v {
        Value::Struct(s) => s,
        other => panic!("{other:?}"),
    }
}

/// Every `ColumnMetaData` of the footer.
fn for_each_column(footer: &mut Struct, mut f: impl FnMut(&mut Struct)) {
    for rg in list_mut(footer, 4) {
        for chunk in list_mut(as_struct(rg), 1) {
            f(as_struct(as_struct(chunk).get_mut(3).unwrap()));
        }
    }
}

async fn erase_u1(dir: &Path) -> crate::lake::EraseOutcome {
    let root = LakeRoot::parse(&dir.display().to_string()).unwrap();
    Erase::new(root, "user_id")
        .subjects(["u1"])
        .execute()
        .await
        .unwrap()
}

/// The test file in `dir`, and its `(user_id, id)` pairs but u1's.
fn file_without_u1(dir: &Path) -> (std::path::PathBuf, BTreeMap<(String, i64), usize>) {
    let path = file(dir);
    let mut expected = pairs(&path);
    expected.retain(|(u, _), _| u != "u1");
    (path, expected)
}

/// Erases u1 from the file in `dir`, which must then hold exactly `expected`.
async fn u1_erased_exactly(dir: &Path, expected: &BTreeMap<(String, i64), usize>) {
    let outcome = erase_u1(dir).await;
    assert_eq!(
        outcome.files[0].status,
        FileStatus::Rewritten,
        "{outcome:?}"
    );
    assert_eq!(outcome.files[0].rows_removed, 10);
    assert_eq!(&pairs(&dir.join(FILE)), expected);
}

#[tokio::test]
async fn a_field_the_format_types_otherwise_is_skipped_and_the_file_erased() {
    let dir = tempfile::tempdir().unwrap();
    let (path, expected) = file_without_u1(dir.path());
    // What a Dremio build of parquet-mr wrote: a list under ColumnMetaData field 15, which
    // parquet.thrift declares as `i32 bloom_filter_length`.
    patch(&path, |footer, _| {
        for_each_column(footer, |meta| {
            let junk = Struct {
                fields: vec![(1, Value::Int(wire::I32, 0))],
            };
            meta.set(
                15,
                Value::List(wire::LIST, wire::STRUCT, vec![Value::Struct(junk)]),
            );
        })
    });
    let patched = bytes::Bytes::from(std::fs::read(&path).unwrap());
    assert!(
        ParquetMetaDataReader::new()
            .parse_and_finish(&patched)
            .is_err(),
        "the parquet crate refuses such a footer"
    );
    // A reader built from the lake's file reader gets the same mended footer.
    let store: std::sync::Arc<dyn object_store::ObjectStore> =
        std::sync::Arc::new(object_store::local::LocalFileSystem::new());
    let location = object_store::path::Path::from_filesystem_path(&path).unwrap();
    let mut reader = LakeFileReader::new(store, location, patched.len() as u64);
    let md = parquet::arrow::async_reader::AsyncFileReader::get_metadata(&mut reader, None)
        .await
        .unwrap();
    assert_eq!(md.file_metadata().num_rows(), 40);

    u1_erased_exactly(dir.path(), &expected).await;
}

#[tokio::test]
async fn chunks_sized_without_their_dictionary_header_are_read_to_their_real_end() {
    let dir = tempfile::tempdir().unwrap();
    let (path, expected) = file_without_u1(dir.path());
    // What parquet-mr before 1.2.9 wrote (PARQUET-816): the dictionary page where the data
    // pages start, and chunk sizes without its header.
    let mut shrunk = 0;
    patch(&path, |footer, bytes| {
        footer.set(6, Value::Binary(b"parquet-mr".to_vec()));
        for_each_column(footer, |meta| {
            let Some(dictionary) = meta.get(11).and_then(Value::as_int) else {
                return;
            };
            meta.fields.retain(|(id, _)| *id != 11);
            meta.set(9, Value::Int(wire::I64, dictionary));
            let (_, header) = read_struct(&bytes[dictionary as usize..]).unwrap();
            for size in [6, 7] {
                let stated = meta.get(size).and_then(Value::as_int).unwrap();
                meta.set(size, Value::Int(wire::I64, stated - header as i64));
            }
            shrunk += 1;
        })
    });
    assert!(shrunk > 0, "the file has dictionary-encoded chunks");
    let file = std::fs::File::open(&path).unwrap();
    let read = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .collect::<Result<Vec<_>, _>>();
    assert!(read.is_err(), "the parquet crate reads past a cut chunk");

    u1_erased_exactly(dir.path(), &expected).await;
}

/// Gives column `notes` (schema element 5) the logical type union `{2555: content}`, a type
/// the format does not define yet.
fn unknown_notes(path: &Path, content: Struct) {
    patch(path, |footer, _| {
        let element = as_struct(&mut list_mut(footer, 2)[5]);
        assert_eq!(element.get(4), Some(&Value::Binary(b"notes".to_vec())));
        element.fields.retain(|(id, _)| *id != 6); // the converted type UTF8
        element.set(
            10,
            Value::Struct(Struct {
                fields: vec![(2555, Value::Struct(content))],
            }),
        );
    });
}

#[tokio::test]
async fn a_logical_type_the_parquet_crate_cannot_write_is_kept_in_the_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let (path, expected) = file_without_u1(dir.path());
    unknown_notes(&path, Struct::default());

    u1_erased_exactly(dir.path(), &expected).await;
    let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let notes = reader.metadata().file_metadata().schema_descr().column(4);
    assert_eq!(notes.name(), "notes");
    assert_eq!(
        notes.logical_type_ref(),
        Some(&LogicalType::_Unknown { field_id: 2555 })
    );
    assert!(
        reader
            .metadata()
            .row_group(0)
            .column(4)
            .statistics()
            .is_none(),
        "no min/max for values whose order is unknown"
    );
}

#[tokio::test]
async fn a_file_whose_unknown_logical_type_has_parameters_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = file(dir.path());
    unknown_notes(
        &path,
        Struct {
            fields: vec![(1, Value::Int(wire::I32, 3))],
        },
    );
    let before = std::fs::read(&path).unwrap();

    let outcome = erase_u1(dir.path()).await;
    match &outcome.files[0].status {
        FileStatus::Failed { error } => {
            assert!(
                error.contains("logical type 2555 with parameters"),
                "{error}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), before);
}
