//! Reads a whole lake into comparable form: file bytes, and rows as text per file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// One data file: its bytes and its rows rendered as text lines (`col=value|…`).
pub struct FileSnapshot {
    pub bytes: Vec<u8>,
    pub rows: Vec<String>,
}

/// All visible Parquet files under `root`, by relative path.
pub fn snapshot(root: &Path) -> BTreeMap<String, FileSnapshot> {
    let mut out = BTreeMap::new();
    for path in walk(root) {
        let relative = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let bytes = std::fs::read(&path).unwrap();
        let rows = read_rows(&path);
        out.insert(relative, FileSnapshot { bytes, rows });
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

pub fn read_rows(path: &Path) -> Vec<String> {
    let file = std::fs::File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        rows.extend(render(&batch.unwrap()));
    }
    rows
}

pub fn render(batch: &RecordBatch) -> Vec<String> {
    let options = FormatOptions::default().with_null("∅");
    let formatters: Vec<_> = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
        .collect();
    let names: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    (0..batch.num_rows())
        .map(|row| {
            names
                .iter()
                .zip(&formatters)
                .map(|(n, f)| format!("{n}={}", f.value(row)))
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

/// Whether a rendered row belongs to `subject` (the `user_id` column).
pub fn is_subject_row(row: &str, subject: &str) -> bool {
    row.split('|')
        .any(|cell| cell == format!("user_id={subject}"))
}
