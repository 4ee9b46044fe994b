//! The lake root: where a Hive-partitioned folder of Parquet files lives, and how to list it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use serde::{Serialize, Serializer};

use super::error::LakeError;
use super::s3::S3Client;
use super::store::{DEFAULT_UPLOAD_PART_SIZE, StoreKind, StoreOptions, build};

/// A lake root: an object store plus the prefix under which the lake's files live.
///
/// Cheap to clone (the store is shared).
#[derive(Clone, Debug)]
pub struct LakeRoot {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
    kind: StoreKind,
    upload_part_size: usize,
    s3: Option<Arc<S3Client>>,
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

impl LakeRoot {
    /// Parses a lake root from a URL or local path with the default [`StoreOptions`] (S3
    /// settings from the AWS environment variables); see
    /// [`object_store_for_url_with`](super::object_store_for_url_with).
    ///
    /// # Errors
    /// [`LakeError::InvalidRoot`] when the root cannot be used.
    pub fn parse(url_or_path: &str) -> Result<Self, LakeError> {
        Self::parse_with(url_or_path, &StoreOptions::default())
    }

    /// Parses a lake root from a URL (`s3://bucket/prefix`, `file://…`, `memory://`) or local
    /// path, building its store with `options`.
    ///
    /// # Errors
    /// [`LakeError::InvalidRoot`] when the root cannot be used.
    pub fn parse_with(url_or_path: &str, options: &StoreOptions) -> Result<Self, LakeError> {
        let built = build(url_or_path, options)?;
        Ok(Self {
            store: built.store,
            prefix: built.prefix,
            url: url_or_path.to_string(),
            kind: built.kind,
            upload_part_size: built.upload_part_size,
            s3: built.s3,
        })
    }

    /// A lake root on an already built store, under `prefix`; `url` is only used in messages
    /// and reports. Rewritten files are swapped in with the store's `rename` (atomic on local
    /// file systems, copy-then-delete on S3) after checking the original did not change.
    pub fn from_store(store: Arc<dyn ObjectStore>, prefix: Path, url: String) -> Self {
        Self {
            store,
            prefix,
            url,
            kind: StoreKind::Other,
            upload_part_size: DEFAULT_UPLOAD_PART_SIZE,
            s3: None,
        }
    }

    /// The same root with another multipart part size in bytes (see
    /// [`StoreOptions::upload_part_size`]); values below 5 MiB are raised to 5 MiB on S3.
    pub fn with_upload_part_size(mut self, bytes: usize) -> Self {
        self.upload_part_size = match self.kind {
            StoreKind::S3 => bytes.max(super::store::MIN_S3_PART_SIZE),
            _ => bytes.max(1),
        };
        self
    }

    /// Size in bytes of one part of a multipart upload of a rewritten file.
    pub fn upload_part_size(&self) -> usize {
        self.upload_part_size
    }

    pub(crate) fn kind(&self) -> StoreKind {
        self.kind
    }

    /// The signed S3 requests object_store lacks (server-side part copies, Object Lock), on
    /// an `s3://` root; `None` elsewhere.
    pub fn s3(&self) -> Option<&Arc<S3Client>> {
        self.s3.as_ref()
    }

    /// The keys of the incomplete multipart uploads under the root's prefix (S3 only: empty
    /// elsewhere). A rewrite aborts its upload on every error; one killed mid-way leaves its
    /// upload until the bucket's `AbortIncompleteMultipartUpload` lifecycle rule removes it.
    ///
    /// # Errors
    /// [`LakeError::ObjectStore`] when `ListMultipartUploads` fails.
    pub async fn incomplete_uploads(&self) -> Result<Vec<String>, LakeError> {
        match &self.s3 {
            Some(s3) => s3
                .incomplete_uploads(&self.prefix)
                .await
                .map_err(|e| LakeError::store(&self.prefix, e)),
            None => Ok(Vec::new()),
        }
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

    /// The store location of `relative` (`date=2025-01-07/region=EU/part-0.parquet`, or a
    /// bookkeeping object such as `_lethe/compaction-<tag>.json`).
    pub fn location(&self, relative: &str) -> Path {
        relative
            .split('/')
            .filter(|part| !part.is_empty())
            .fold(self.prefix.clone(), |p, part| p.join(part))
    }

    /// Writes `value` as JSON to `relative` (one PUT: the object appears whole or not at all).
    /// Used for the manifests of multi-file operations (compaction, residency remediation).
    ///
    /// # Errors
    /// [`LakeError::ObjectStore`] when the store refuses.
    pub async fn put_json(&self, relative: &str, value: &impl Serialize) -> Result<(), LakeError> {
        let at = self.location(relative);
        let body = serde_json::to_vec(value).expect("a manifest serialises");
        self.store
            .put(&at, object_store::PutPayload::from(body))
            .await
            .map_err(|e| LakeError::store(&at, e))?;
        Ok(())
    }

    /// Deletes `relative`; an object already gone is fine (idempotent recovery).
    ///
    /// # Errors
    /// [`LakeError::ObjectStore`] for any other store error.
    pub async fn delete_if_exists(&self, relative: &str) -> Result<(), LakeError> {
        let at = self.location(relative);
        match self.store.delete(&at).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(LakeError::store(&at, e)),
        }
    }

    /// The objects directly or indirectly under folder `dir` whose file name starts with
    /// `name_prefix`, as `(path relative to the root, bytes)`, sorted by path.
    ///
    /// # Errors
    /// [`LakeError::ObjectStore`] when listing or reading fails.
    pub async fn read_objects(
        &self,
        dir: &str,
        name_prefix: &str,
    ) -> Result<Vec<(String, bytes::Bytes)>, LakeError> {
        let at = self.location(dir);
        let mut listed: Vec<ObjectMeta> = self
            .store
            .list(Some(&at))
            .try_collect()
            .await
            .map_err(|e| LakeError::store(&at, e))?;
        listed.sort_by(|a, b| a.location.cmp(&b.location));
        let mut out = Vec::new();
        for meta in listed {
            if !meta
                .location
                .filename()
                .is_some_and(|n| n.starts_with(name_prefix))
            {
                continue;
            }
            let bytes = self
                .store
                .get(&meta.location)
                .await
                .map_err(|e| LakeError::store(&meta.location, e))?
                .bytes()
                .await
                .map_err(|e| LakeError::store(&meta.location, e))?;
            let relative = meta
                .location
                .prefix_match(&self.prefix)
                .map(|parts| {
                    parts
                        .map(|p| p.as_ref().to_string())
                        .collect::<Vec<_>>()
                        .join("/")
                })
                .unwrap_or_else(|| meta.location.to_string());
            out.push((relative, bytes));
        }
        Ok(out)
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
        Ok(self.list_files_and_temps().await?.0)
    }

    /// Lists the data files (as [`list_files`](Self::list_files)) and Lethe's temporary objects
    /// (`.<name>.lethe-tmp-<uuid>`, left by crashed rewrites), from one listing.
    pub(crate) async fn list_files_and_temps(
        &self,
    ) -> Result<(Vec<DataFile>, Vec<ObjectMeta>), LakeError> {
        self.refuse_table_formats().await?;
        let objects: Vec<_> = self
            .store
            .list(Some(&self.prefix))
            .try_collect()
            .await
            .map_err(|e| LakeError::store(&self.prefix, e))?;
        let (temps, objects): (Vec<_>, Vec<_>) = objects.into_iter().partition(|meta| {
            meta.location
                .filename()
                .is_some_and(|name| name.contains(TEMP_MARKER))
        });
        let mut files: Vec<DataFile> = objects
            .into_iter()
            .filter_map(|meta| self.data_file_of(meta))
            .collect();
        files.sort_by(|a, b| a.relative.cmp(&b.relative));
        tracing::debug!(root = %self.url, files = files.len(), temps = temps.len(), "listed lake");
        Ok((files, temps))
    }

    /// The [`DataFile`] of an object under the root, or `None` when it is hidden or the root
    /// itself.
    fn data_file_of(&self, meta: ObjectMeta) -> Option<DataFile> {
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
    }

    /// One data file by its path relative to the root (a HEAD request), and Lethe's temporary
    /// objects beside it (one listing of its folder, not recursive).
    ///
    /// # Errors
    /// [`LakeError::NotADataFile`] when the path is invalid or hidden; [`LakeError::ObjectStore`]
    /// when the file does not exist (`NotFound`) or a request fails.
    pub(crate) async fn file_and_temps(
        &self,
        relative: &str,
    ) -> Result<(DataFile, Vec<ObjectMeta>), LakeError> {
        let not_data = |reason: String| LakeError::NotADataFile {
            file: relative.to_string(),
            reason,
        };
        let rel = Path::parse(relative).map_err(|e| not_data(e.to_string()))?;
        let location = rel
            .parts()
            .fold(self.prefix.clone(), |path, part| path.join(part));
        let meta = self
            .store
            .head(&location)
            .await
            .map_err(|e| LakeError::store(&location, e))?;
        let file = self.data_file_of(meta).ok_or_else(|| {
            not_data("hidden objects (a segment starting with . or _) are not data files".into())
        })?;
        let folder = location.parent();
        let listed = self
            .store
            .list_with_delimiter(folder.as_ref())
            .await
            .map_err(|e| LakeError::store(folder.as_ref().map_or("", |p| p.as_ref()), e))?;
        let temps = listed
            .objects
            .into_iter()
            .filter(|o| {
                o.location
                    .filename()
                    .is_some_and(|n| n.contains(TEMP_MARKER))
            })
            .collect();
        Ok((file, temps))
    }

    pub(crate) async fn refuse_table_formats(&self) -> Result<(), LakeError> {
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

/// Marker in the names of Lethe's temporary objects (always hidden: they start with `.`):
/// `.<name>.lethe-tmp-<uuid>`.
pub(crate) const TEMP_MARKER: &str = ".lethe-tmp-";

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
