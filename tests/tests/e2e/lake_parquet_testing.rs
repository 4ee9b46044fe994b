//! The lake engine against Apache's parquet-testing files (`../shared/testdata/parquet-testing`):
//! every file it can read must be rewritten faithfully (same Arrow schema, same Parquet schema,
//! the same rows minus the erased ones, in order); every file it cannot must be refused with a
//! clear error and left byte-identical. `bad_data/` files must all be refused.

use std::path::{Path, PathBuf};

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, SchemaRef};
use lethe_core::lake::{Erase, FileStatus, LakeRoot};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::statistics::Statistics;
use parquet::schema::types::Type;
use std::fmt::Write as _;

/// `bad_data/` files that parquet-rs reads consistently, so rewriting them is not a silent change.
const ALLOWED_BAD_DATA: &[(&str, &str)] = &[(
    "ARROW-GH-43605.parquet",
    "dictionary indices with RLE bit width 0 decode as all zeros, as in DuckDB; the copy is valid",
)];

fn testing_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/parquet-testing")
}

fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let p = entry.path();
        if p.is_dir() {
            parquet_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "parquet") {
            out.push(p);
        }
    }
}

/// A file as read by the plain synchronous reader.
struct Contents {
    schema: SchemaRef,
    parquet_root: Type,
    batches: Vec<RecordBatch>,
}

fn read(path: &Path) -> Result<Contents, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
    let schema = builder.schema().clone();
    let parquet_root = builder.parquet_schema().root_schema().clone();
    let batches = builder
        .build()
        .map_err(|e| e.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Ok(Contents {
        schema,
        parquet_root,
        batches,
    })
}

/// The batches that decode before the first error.
fn read_partial(path: &Path) -> Option<Contents> {
    let file = std::fs::File::open(path).ok()?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).ok()?;
    let schema = builder.schema().clone();
    let parquet_root = builder.parquet_schema().root_schema().clone();
    let batches = builder.build().ok()?.map_while(Result::ok).collect();
    Some(Contents {
        schema,
        parquet_root,
        batches,
    })
}

/// A top-level primitive column and the minimum of its first row group, from the footer.
fn subject_from_footer(path: &Path) -> (String, String) {
    let fallback = || subject_from_pyarrow(path).unwrap_or(("id".to_string(), "0".to_string()));
    let Some(reader) = std::fs::File::open(path)
        .ok()
        .and_then(|f| SerializedFileReader::new(f).ok())
    else {
        return fallback();
    };
    let md = reader.metadata();
    let schema = md.file_metadata().schema_descr();
    let Some(leaf) =
        (0..schema.num_columns()).find(|i| schema.column(*i).path().parts().len() == 1)
    else {
        return fallback();
    };
    let name = schema.column(leaf).name().to_string();
    let min = md
        .row_groups()
        .first()
        .and_then(|rg| rg.column(leaf).statistics())
        .and_then(|s| match s {
            Statistics::Boolean(v) => v.min_opt().map(|m| m.to_string()),
            Statistics::Int32(v) => v.min_opt().map(|m| m.to_string()),
            Statistics::Int64(v) => v.min_opt().map(|m| m.to_string()),
            Statistics::ByteArray(v) => v
                .min_opt()
                .and_then(|m| m.as_utf8().ok().map(str::to_string)),
            _ => None,
        });
    (name, min.unwrap_or_else(|| "0".into()))
}

/// The first top-level primitive column and its first value, as pyarrow reads them, for a file
/// whose footer the parquet crate cannot decode; `None` without pyarrow or such a column.
fn subject_from_pyarrow(path: &Path) -> Option<(String, String)> {
    const PICK: &str = "import sys, pyarrow as pa, pyarrow.compute as pc, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
for name in t.column_names:
    c = t.column(name)
    if pa.types.is_nested(c.type):
        continue
    v = pc.drop_null(pc.cast(c, pa.string()))
    if len(v):
        print(name); print(v[0].as_py()); break";
    let out = std::process::Command::new("python3")
        .args(["-c", PICK])
        .arg(path)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let mut lines = text.lines();
    Some((lines.next()?.to_string(), lines.next()?.to_string()))
}

fn is_nested(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Struct(_)
            | DataType::List(_)
            | DataType::LargeList(_)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
            | DataType::FixedSizeList(_, _)
            | DataType::Map(_, _)
            | DataType::Union(_, _)
            | DataType::RunEndEncoded(_, _)
    )
}

fn as_strings(col: &ArrayRef) -> Option<StringArray> {
    let cast = arrow_cast::cast(col, &DataType::Utf8).ok()?;
    cast.as_any().downcast_ref::<StringArray>().cloned()
}

/// The first top-level primitive column castable to Utf8 with a non-null value, and the first
/// such value (row 0 when it is not null).
fn pick_subject(c: &Contents) -> Option<(String, String)> {
    'fields: for (i, field) in c.schema.fields().iter().enumerate() {
        if is_nested(field.data_type()) {
            continue;
        }
        for batch in &c.batches {
            let Some(values) = as_strings(batch.column(i)) else {
                continue 'fields;
            };
            if let Some(v) = values.iter().flatten().next() {
                return Some((field.name().clone(), v.to_string()));
            }
        }
    }
    None
}

/// Rows of `batches` as (batch, row) positions.
fn positions(batches: &[RecordBatch]) -> impl Iterator<Item = (&RecordBatch, usize)> {
    batches
        .iter()
        .flat_map(|b| (0..b.num_rows()).map(move |i| (b, i)))
}

/// Compares `after` with `before` minus the rows whose `column` equals `subject`, in order, cell
/// by cell. Returns the positions of the rows removed or a description of the first difference.
fn compare_rows(
    before: &Contents,
    after: &Contents,
    column: &str,
    subject: &str,
) -> Result<Vec<usize>, String> {
    let index = before.schema.index_of(column).map_err(|e| e.to_string())?;
    let mut removed = Vec::new();
    let mut kept = positions(&after.batches);
    let mut subject_values = None::<(usize, StringArray)>;
    for (n, (batch, i)) in positions(&before.batches).enumerate() {
        let key = batch as *const RecordBatch as usize;
        if subject_values.as_ref().is_none_or(|(k, _)| *k != key) {
            subject_values = Some((key, as_strings(batch.column(index)).ok_or("cast failed")?));
        }
        let values = &subject_values.as_ref().ok_or("no values")?.1;
        if values.is_valid(i) && values.value(i) == subject {
            removed.push(n);
            continue;
        }
        let Some((new_batch, j)) = kept.next() else {
            return Err(format!(
                "row {n} of the original is missing after the rewrite"
            ));
        };
        for c in 0..batch.num_columns() {
            let (a, b) = (batch.column(c).slice(i, 1), new_batch.column(c).slice(j, 1));
            if a.as_ref() != b.as_ref() {
                return Err(format!(
                    "row {n}, column {:?} differs: {a:?} became {b:?}",
                    before.schema.field(c).name()
                ));
            }
        }
    }
    if kept.next().is_some() {
        return Err("the rewritten file has more rows than expected".into());
    }
    Ok(removed)
}

/// What happened to one test file.
enum Verdict {
    /// Rewritten, checked faithful; the rewritten copy and the positions of the rows removed
    /// are kept for pyarrow's check.
    Faithful(String, Option<(PathBuf, Vec<usize>)>),
    /// Rewritten from a footer Lethe mended, which the parquet crate cannot read: the copy, the
    /// subject column and value, for pyarrow to check against its reading of the original.
    Mended(String, PathBuf, String, String),
    /// Refused by the engine with this error (file byte-identical).
    Refused(String),
    /// Not run (with the reason).
    Skipped(String),
    /// A violation of the contract (silent change, panic, wrong rows…).
    Broken(String),
}

async fn check_file(path: &Path, relative: &str, keep: &Path) -> Verdict {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = path.file_name().expect("file name");
    let copy = dir.path().join(name);
    let original_bytes = std::fs::read(path).expect("read test file");
    std::fs::write(&copy, &original_bytes).expect("copy test file");

    let before = read(&copy);
    let (column, subject) = match &before {
        Ok(c) => match pick_subject(c) {
            Some(pick) => pick,
            None => return Verdict::Skipped("no top-level primitive column with a value".into()),
        },
        // Unreadable: erase a value the engine has to look for in the data (from the rows that
        // still decode, else from the footer statistics), so it cannot skip the broken part.
        Err(_) => match read_partial(&copy).as_ref().and_then(pick_subject) {
            Some(pick) => pick,
            None => subject_from_footer(&copy),
        },
    };

    let root = LakeRoot::parse(&dir.path().display().to_string()).expect("root");
    let erase = Erase::new(root, column.clone())
        .subjects([subject.clone()])
        .concurrency(1);
    let outcome = match tokio::spawn(erase.execute()).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => return Verdict::Broken(format!("root-level error: {e}")),
        Err(panic) => return Verdict::Broken(format!("the engine panicked: {panic}")),
    };
    let Some(file) = outcome.files.first() else {
        return Verdict::Broken("no outcome for the file".into());
    };
    let now_bytes = std::fs::read(&copy).expect("read back");
    let leftovers = std::fs::read_dir(dir.path())
        .map(|d| d.count())
        .unwrap_or(0);
    if leftovers != 1 {
        return Verdict::Broken(format!("{leftovers} objects in the folder after the run"));
    }
    match (&file.status, before) {
        (FileStatus::Failed { error }, before) => {
            if now_bytes != original_bytes {
                return Verdict::Broken(format!("refused ({error}) but the file changed"));
            }
            if !error.contains(relative_name(relative)) || error.len() < 30 {
                return Verdict::Broken(format!("unclear error: {error}"));
            }
            let readable = if before.is_ok() {
                "readable by parquet-rs; "
            } else {
                ""
            };
            Verdict::Refused(format!("{readable}{error}"))
        }
        (FileStatus::Unchanged, Err(read_error)) => {
            if now_bytes != original_bytes {
                return Verdict::Broken("unchanged but the file changed".into());
            }
            if relative.starts_with("bad_data/") {
                return Verdict::Broken(format!(
                    "bad file not refused: {column}={subject:?} not found (reader says: {read_error})"
                ));
            }
            Verdict::Skipped(format!(
                "unreadable ({read_error}); subject not found, untouched"
            ))
        }
        (FileStatus::Unchanged, Ok(_)) => {
            Verdict::Broken(format!("subject {column}={subject:?} of row 0 not found"))
        }
        (FileStatus::Rewritten, Err(read_error)) => {
            // The parquet crate cannot read the original, Lethe mended its footer (as
            // parquet-mr and Arrow C++ do): its rewrite must read, and pyarrow's reading of the
            // original decides which rows had to go ([`pyarrow_agrees`]).
            if relative.starts_with("bad_data/") {
                return Verdict::Broken("a bad_data file was rewritten".into());
            }
            let after = match read(&copy) {
                Ok(after) => after,
                Err(e) => return Verdict::Broken(format!("rewritten file unreadable: {e}")),
            };
            let rows: usize = after.batches.iter().map(RecordBatch::num_rows).sum();
            let kept = keep.join(format!("{}.parquet", relative.replace('/', "__")));
            std::fs::write(&kept, &now_bytes).expect("keep rewritten copy");
            Verdict::Mended(
                format!(
                    "{rows} rows left; the parquet crate cannot read the original \
                     ({read_error}), pyarrow checks it"
                ),
                kept,
                column,
                subject,
            )
        }
        (FileStatus::Rewritten, Ok(before)) => {
            let allowed = ALLOWED_BAD_DATA
                .iter()
                .find(|(name, _)| relative.ends_with(name));
            if relative.starts_with("bad_data/") && allowed.is_none() {
                return Verdict::Broken("a bad_data file was rewritten".into());
            }
            let after = match read(&copy) {
                Ok(after) => after,
                Err(e) => return Verdict::Broken(format!("rewritten file unreadable: {e}")),
            };
            // A rewrite records the original writer under one added key-value entry.
            let mut after = after;
            let mut metadata = after.schema.metadata().clone();
            let original = metadata.remove("lethe.original_created_by");
            let created_by = created_by_of(path);
            if original != created_by {
                return Verdict::Broken(format!(
                    "lethe.original_created_by is {original:?}, the original says {created_by:?}"
                ));
            }
            after.schema =
                std::sync::Arc::new(after.schema.as_ref().clone().with_metadata(metadata));
            if after.schema != before.schema {
                return Verdict::Broken(format!(
                    "Arrow schema changed: {:?} became {:?}",
                    before.schema, after.schema
                ));
            }
            if after.parquet_root != before.parquet_root {
                return Verdict::Broken(format!(
                    "Parquet schema changed: {:?} became {:?}",
                    before.parquet_root, after.parquet_root
                ));
            }
            match compare_rows(&before, &after, &column, &subject) {
                Ok(removed) if removed.len() as u64 == file.rows_removed && !removed.is_empty() => {
                    let kept = keep.join(format!("{}.parquet", relative.replace('/', "__")));
                    std::fs::copy(&copy, &kept).expect("keep the rewritten copy");
                    Verdict::Faithful(
                        format!(
                            "{column}: {} of {} rows removed",
                            removed.len(),
                            file.rows_before
                        ),
                        Some((kept, removed)),
                    )
                }
                Ok(removed) => Verdict::Broken(format!(
                    "engine removed {} rows, the original has {} with that value",
                    file.rows_removed,
                    removed.len()
                )),
                Err(diff) => Verdict::Broken(diff),
            }
        }
    }
}

/// The `created_by` of the file at `path`.
fn created_by_of(path: &Path) -> Option<String> {
    let reader = SerializedFileReader::new(std::fs::File::open(path).ok()?).ok()?;
    reader
        .metadata()
        .file_metadata()
        .created_by()
        .map(str::to_string)
}

fn relative_name(relative: &str) -> &str {
    relative.rsplit('/').next().unwrap_or(relative)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_readable_file_is_rewritten_faithfully_and_every_other_is_refused_untouched() {
    let base = testing_dir();
    if !base.is_dir() {
        println!(
            "skipped: ../shared is absent ({} not found)",
            base.display()
        );
        return;
    }
    let mut files = Vec::new();
    parquet_files(&base, &mut files);
    files.sort();
    assert!(
        !files.is_empty(),
        "no .parquet files under {}",
        base.display()
    );

    let (mut faithful, mut refused, mut skipped, mut broken) = (0, 0, 0, Vec::new());
    let mut table = String::new();
    let kept = tempfile::tempdir().expect("tempdir");
    let mut manifest = Vec::new();
    for path in &files {
        let relative = path
            .strip_prefix(&base)
            .unwrap_or(path)
            .display()
            .to_string();
        let (label, detail) = match check_file(path, &relative, kept.path()).await {
            Verdict::Faithful(d, copy) => {
                faithful += 1;
                if let Some((rewritten, removed)) = copy {
                    manifest.push(serde_json::json!({
                        "name": relative,
                        "original": path,
                        "rewritten": rewritten,
                        "removed": removed,
                    }));
                }
                ("faithful", d)
            }
            Verdict::Mended(d, rewritten, column, subject) => {
                faithful += 1;
                manifest.push(serde_json::json!({
                    "name": relative,
                    "original": path,
                    "rewritten": rewritten,
                    "removed": null,
                    "column": column,
                    "subject": subject,
                }));
                ("faithful", d)
            }
            Verdict::Refused(d) => {
                refused += 1;
                manifest.push(serde_json::json!({
                    "name": relative,
                    "original": path,
                    "refused": d,
                }));
                ("refused", d)
            }
            Verdict::Skipped(d) => {
                skipped += 1;
                ("skipped", d)
            }
            Verdict::Broken(d) => {
                broken.push(format!("{relative}: {d}"));
                ("BROKEN", d)
            }
        };
        let _ = writeln!(table, "{relative:<70} {label:<9} {detail}");
    }
    println!("{table}");
    println!(
        "{} files: {faithful} rewritten faithfully, {refused} refused, {skipped} skipped, {} broken",
        files.len(),
        broken.len()
    );
    assert!(
        broken.is_empty(),
        "contract violations:\n{}",
        broken.join("\n")
    );
    assert!(
        faithful > 50,
        "only {faithful} files were rewritten faithfully"
    );
    pyarrow_agrees(kept.path(), &manifest);
}

/// Runs `tests/fixtures/corpus_check.py` on the rewritten copies: pyarrow's reading of each
/// original, minus the removed rows, must equal its reading of the rewrite (schema, Parquet
/// schema, rows). Required on CI; skipped elsewhere when pyarrow is missing.
fn pyarrow_agrees(dir: &Path, manifest: &[serde_json::Value]) {
    let path = dir.join("manifest.json");
    std::fs::write(&path, serde_json::to_vec(manifest).expect("manifest")).expect("write manifest");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/corpus_check.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(&path)
        .output();
    let on_ci = std::env::var_os("CI").is_some();
    match out {
        Ok(out) if out.status.success() => println!("{}", String::from_utf8_lossy(&out.stdout)),
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("No module named 'pyarrow'") && !on_ci {
                println!("skipped pyarrow's check: pyarrow is not installed");
            } else {
                panic!(
                    "pyarrow disagrees:\n{}\n{stderr}",
                    String::from_utf8_lossy(&out.stdout)
                );
            }
        }
        Err(e) if !on_ci => println!("skipped pyarrow's check: {e}"),
        Err(e) => panic!("python3 not found: {e}"),
    }
}

/// `repeated_no_annotation.parquet` (an old parquet-rs) says `num_rows = 0` in its footer while
/// its one row group holds 6 rows: the row group is believed, the subject's row removed, and the
/// new footer counts the 5 rows left.
#[tokio::test]
async fn a_footer_that_says_zero_rows_does_not_hide_the_subjects_row() {
    let source = testing_dir().join("data/repeated_no_annotation.parquet");
    if !source.is_file() {
        println!("skipped: ../shared is absent");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("repeated_no_annotation.parquet");
    std::fs::copy(&source, &copy).unwrap();
    let footer_rows = SerializedFileReader::new(std::fs::File::open(&copy).unwrap())
        .unwrap()
        .metadata()
        .file_metadata()
        .num_rows();
    assert_eq!(footer_rows, 0, "the fixture still lies");

    let outcome = Erase::new(
        LakeRoot::parse(&dir.path().display().to_string()).unwrap(),
        "id",
    )
    .subjects(["1"])
    .execute()
    .await
    .unwrap();
    let file = &outcome.files[0];
    assert_eq!(file.status, FileStatus::Rewritten, "{file:?}");
    assert_eq!((file.rows_before, file.rows_removed), (6, 1));

    let reader = SerializedFileReader::new(std::fs::File::open(&copy).unwrap()).unwrap();
    assert_eq!(reader.metadata().file_metadata().num_rows(), 5);
    let after = read(&copy).unwrap();
    let ids: Vec<String> = after
        .batches
        .iter()
        .flat_map(|b| {
            as_strings(b.column(0))
                .unwrap()
                .iter()
                .map(|v| v.unwrap_or("null").to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(ids, ["2", "3", "4", "5", "6"]);
    assert_eq!(
        after.parquet_root,
        read_partial(&source).unwrap().parquet_root
    );
}
