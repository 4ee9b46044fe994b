//! The names of the data files Lethe writes into a Delta table, and how to tell them apart
//! from the writers' own (the purge deletes only Lethe's uncommitted files).

/// The marker in the names of the data files Lethe writes into a table:
/// `<original name without .parquet>-lethe-<uuid>.parquet`.
pub const LETHE_FILE_MARKER: &str = "-lethe-";

/// The `add` path of the file replacing `path`: same folder, the name without `.parquet` and
/// without an earlier `-lethe-<uuid>`, then `-lethe-<new uuid>.parquet`.
pub(crate) fn new_file_path(path: &str) -> String {
    let (dir, name) = match path.rsplit_once('/') {
        Some((dir, name)) => (Some(dir), name),
        None => (None, path),
    };
    let stem = name.strip_suffix(".parquet").unwrap_or(name);
    let stem = match stem.rsplit_once(LETHE_FILE_MARKER) {
        Some((before, id)) if uuid::Uuid::parse_str(id).is_ok() => before,
        _ => stem,
    };
    let name = format!("{stem}{LETHE_FILE_MARKER}{}.parquet", uuid::Uuid::new_v4());
    match dir {
        Some(dir) => format!("{dir}/{name}"),
        None => name,
    }
}

/// True when `name` (a file name) is one of Lethe's new files: `…-lethe-<uuid>.parquet`.
pub(crate) fn is_lethe_file(name: &str) -> bool {
    name.strip_suffix(".parquet")
        .and_then(|stem| stem.rsplit_once(LETHE_FILE_MARKER))
        .is_some_and(|(_, id)| uuid::Uuid::parse_str(id).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_files_sit_beside_the_old_one_and_carry_one_marker() {
        let first = new_file_path("date=2025-01-07/region=EU/part-0.snappy.parquet");
        assert!(first.starts_with("date=2025-01-07/region=EU/part-0.snappy-lethe-"));
        assert!(is_lethe_file(first.rsplit('/').next().unwrap()));
        let second = new_file_path(&first);
        assert_eq!(second.matches(LETHE_FILE_MARKER).count(), 1);
        assert_ne!(first, second);
        assert!(!is_lethe_file("part-0.snappy.parquet"));
        assert!(!is_lethe_file("x-lethe-notauuid.parquet"));
    }
}
