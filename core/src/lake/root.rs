//! The lake root: where a Hive-partitioned folder of Parquet files lives, and how to list it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, local::LocalFileSystem};
use serde::{Serialize, Serializer};

use super::error::LakeError;

/// A lake root: an object store plus the prefix under which the lake's files live.
///
/// Cheap to clone (the store is shared).
#[derive(Clone, Debug)]
pub struct LakeRoot {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
}

/// One data file of the lake, as listed (not yet opened).
#[derive(Clone, Debug, Serialize)]
pub struct DataFile {
    /// Full object key in the store.
    #[serde(serialize_with = "path_as_str")]
    pub location: Path,
    /// Key relative to the lake root, e.g. `date=2025-01-07/region=EU/part-0001.parquet`.
    pub relative: String,
    /// Size in bytes.
    pub size: u64,
    /// Hive partition values from the `key=value` folders of `relative`, outermost first.
    pub partition: Vec<(String, String)>,
    /// Entity tag reported by the store, if any.
    pub e_tag: Option<String>,
    /// Last modification time reported by the store.
    pub last_modified: DateTime<Utc>,
}

fn path_as_str<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(path.as_ref())
}

/// Builds the object store for a lake URL: the one place where timeouts, retries and
/// credentials are (and will be) configured.
///
/// Accepts `memory://` (a fresh, empty in-memory store), `file:///absolute/path` and plain local
/// paths (absolute or relative to the working directory). Returns the store and the prefix of
/// the lake inside it (always the store's root for these schemes).
///
/// # Errors
/// [`LakeError::InvalidRoot`] for an unknown scheme, a URL that does not parse, or a local
/// folder that does not exist or is not a folder (roots are never created).
pub fn object_store_for_url(url: &str) -> Result<(Arc<dyn ObjectStore>, Path), LakeError> {
    let invalid = |reason: String| LakeError::InvalidRoot {
        url: url.to_string(),
        reason,
    };
    if url.starts_with("memory://") {
        return Ok((Arc::new(InMemory::new()), Path::default()));
    }
    let local = if url.starts_with("file://") {
        let parsed = url::Url::parse(url).map_err(|e| invalid(format!("not a valid URL: {e}")))?;
        parsed
            .to_file_path()
            .map_err(|()| invalid("a file:// URL must hold an absolute local path".into()))?
    } else if let Some((scheme, _)) = url.split_once("://") {
        return Err(invalid(format!(
            "unsupported scheme {scheme:?} (supported: file://, memory://, a local path)"
        )));
    } else {
        std::path::PathBuf::from(url)
    };
    let meta = std::fs::metadata(&local)
        .map_err(|e| invalid(format!("cannot open {}: {e}", local.display())))?;
    if !meta.is_dir() {
        return Err(invalid(format!("{} is not a folder", local.display())));
    }
    let local = local
        .canonicalize()
        .map_err(|e| invalid(format!("cannot resolve {}: {e}", local.display())))?;
    let store = LocalFileSystem::new_with_prefix(&local)
        .map_err(|e| invalid(format!("cannot use {} as a store: {e}", local.display())))?;
    Ok((Arc::new(store), Path::default()))
}

impl LakeRoot {
    /// Parses a lake root from a URL or local path (see [`object_store_for_url`]).
    ///
    /// # Errors
    /// [`LakeError::InvalidRoot`] when the root cannot be used.
    pub fn parse(url_or_path: &str) -> Result<Self, LakeError> {
        let (store, prefix) = object_store_for_url(url_or_path)?;
        Ok(Self {
            store,
            prefix,
            url: url_or_path.to_string(),
        })
    }

    /// A lake root on an already built store (e.g. S3), under `prefix`; `url` is only used in
    /// messages and reports.
    pub fn from_store(store: Arc<dyn ObjectStore>, prefix: Path, url: String) -> Self {
        Self { store, prefix, url }
    }

    /// The URL or path the root was made from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The object store holding the lake.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The prefix of the lake inside the store (empty for local roots).
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// Lists the lake's data files recursively, sorted by path.
    ///
    /// Skips hidden objects: any path segment (below the root) starting with `.` or `_`
    /// (`_SUCCESS`, `.part-0.parquet.crc`, Lethe's own temporary files). Non-Parquet files are
    /// *not* filtered out: the readers refuse them with [`LakeError::NotParquet`] so an
    /// operator sees them.
    ///
    /// # Errors
    /// [`LakeError::TableFormat`] when the root holds `_delta_log/` (Delta Lake) or
    /// `metadata/*.metadata.json` (Apache Iceberg); [`LakeError::ObjectStore`] when listing fails.
    pub async fn list_files(&self) -> Result<Vec<DataFile>, LakeError> {
        self.refuse_table_formats().await?;
        let objects: Vec<_> = self
            .store
            .list(Some(&self.prefix))
            .try_collect()
            .await
            .map_err(|e| LakeError::store(&self.prefix, e))?;
        let mut files: Vec<DataFile> = objects
            .into_iter()
            .filter_map(|meta| {
                let parts: Vec<String> = meta
                    .location
                    .prefix_match(&self.prefix)?
                    .map(|p| p.as_ref().to_string())
                    .collect();
                if parts.is_empty() || parts.iter().any(|p| is_hidden(p)) {
                    return None;
                }
                let partition = parts[..parts.len() - 1]
                    .iter()
                    .filter_map(|p| p.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                Some(DataFile {
                    relative: parts.join("/"),
                    location: meta.location,
                    size: meta.size,
                    partition,
                    e_tag: meta.e_tag,
                    last_modified: meta.last_modified,
                })
            })
            .collect();
        files.sort_by(|a, b| a.relative.cmp(&b.relative));
        tracing::debug!(root = %self.url, files = files.len(), "listed lake");
        Ok(files)
    }

    async fn refuse_table_formats(&self) -> Result<(), LakeError> {
        let top = self
            .store
            .list_with_delimiter(Some(&self.prefix))
            .await
            .map_err(|e| LakeError::store(&self.prefix, e))?;
        let has_dir = |name: &str| {
            top.common_prefixes
                .iter()
                .any(|p| p.filename() == Some(name))
        };
        if has_dir("_delta_log") {
            return Err(LakeError::TableFormat {
                root: self.url.clone(),
                format: "Delta Lake",
            });
        }
        if has_dir("metadata") {
            let metadata = self.prefix.clone().join("metadata");
            let inside = self
                .store
                .list_with_delimiter(Some(&metadata))
                .await
                .map_err(|e| LakeError::store(&metadata, e))?;
            if inside.objects.iter().any(|o| {
                o.location
                    .filename()
                    .is_some_and(|f| f.ends_with(".metadata.json"))
            }) {
                return Err(LakeError::TableFormat {
                    root: self.url.clone(),
                    format: "Apache Iceberg",
                });
            }
        }
        Ok(())
    }
}

/// True for names Hadoop/Spark and Lethe treat as hidden (`.x`, `_x`).
pub(crate) fn is_hidden(segment: &str) -> bool {
    segment.starts_with('.') || segment.starts_with('_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::{ObjectStoreExt, PutPayload};

    #[tokio::test]
    async fn listing_skips_hidden_objects_and_reads_partitions() {
        let root = LakeRoot::parse("memory://").unwrap();
        for key in [
            "date=2025-01-07/region=EU/part-1.parquet",
            "date=2025-01-07/region=EU/.part-1.parquet.crc",
            "date=2025-01-07/_SUCCESS",
            "_tmp/x.parquet",
            "a.parquet",
        ] {
            root.store()
                .put(&Path::from(key), PutPayload::from_static(b"x"))
                .await
                .unwrap();
        }
        let files = root.list_files().await.unwrap();
        let names: Vec<_> = files.iter().map(|f| f.relative.as_str()).collect();
        assert_eq!(
            names,
            ["a.parquet", "date=2025-01-07/region=EU/part-1.parquet"]
        );
        assert_eq!(
            files[1].partition,
            vec![
                ("date".to_string(), "2025-01-07".to_string()),
                ("region".to_string(), "EU".to_string())
            ]
        );
    }

    #[tokio::test]
    async fn delta_and_iceberg_roots_are_refused() {
        let root = LakeRoot::parse("memory://").unwrap();
        root.store()
            .put(
                &Path::from("_delta_log/00000.json"),
                PutPayload::from_static(b"{}"),
            )
            .await
            .unwrap();
        let err = root.list_files().await.unwrap_err();
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

        let root = LakeRoot::parse("memory://").unwrap();
        root.store()
            .put(
                &Path::from("metadata/v1.metadata.json"),
                PutPayload::from_static(b"{}"),
            )
            .await
            .unwrap();
        let err = root.list_files().await.unwrap_err();
        assert!(
            matches!(
                err,
                LakeError::TableFormat {
                    format: "Apache Iceberg",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn missing_folders_and_unknown_schemes_are_invalid_roots() {
        let err = LakeRoot::parse("/definitely/not/here/lethe").unwrap_err();
        assert!(matches!(err, LakeError::InvalidRoot { .. }), "{err}");
        let err = LakeRoot::parse("gopher://x").unwrap_err();
        assert!(matches!(err, LakeError::InvalidRoot { .. }), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        assert!(LakeRoot::parse(&url).is_ok());
        assert!(LakeRoot::parse(&dir.path().display().to_string()).is_ok());
    }
}
