//! Reading the list of subjects to erase: one subject id per line.

use std::collections::BTreeSet;
use std::path::Path;

/// Why a subject list cannot be used. Both are usage errors (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum SubjectListError {
    /// The file cannot be read (missing, unreadable, not UTF-8).
    #[error("cannot read subjects file {path}")]
    Read {
        /// The file as given.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no subject id (only blank lines and comments, or nothing).
    #[error("subjects file {0} lists no subject id")]
    Empty(String),
}

/// Reads a subject list from `path`; see [`parse`] for the format.
///
/// # Errors
/// [`SubjectListError::Read`] when the file cannot be read, [`SubjectListError::Empty`] when it
/// lists no id.
pub fn read(path: &Path) -> Result<BTreeSet<String>, SubjectListError> {
    let text = std::fs::read_to_string(path).map_err(|source| SubjectListError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let ids = parse(&text);
    if ids.is_empty() {
        return Err(SubjectListError::Empty(path.display().to_string()));
    }
    Ok(ids)
}

/// Parses a subject list: one id per line, surrounding whitespace trimmed, blank lines and lines
/// starting with `#` ignored, duplicates merged. The result is sorted.
pub fn parse(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_lines_comments_and_duplicates_are_ignored() {
        let ids = parse("# erase batch 7\n\n  u-2 \nu-1\r\nu-2\n   # indented comment\n");
        assert_eq!(ids.into_iter().collect::<Vec<_>>(), ["u-1", "u-2"]);
    }

    #[test]
    fn a_file_of_only_comments_is_empty_and_a_missing_file_is_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.txt");
        std::fs::write(&path, "# nobody\n\n").unwrap();
        assert!(matches!(read(&path), Err(SubjectListError::Empty(_))));
        assert!(matches!(
            read(&dir.path().join("missing.txt")),
            Err(SubjectListError::Read { .. })
        ));
    }
}
