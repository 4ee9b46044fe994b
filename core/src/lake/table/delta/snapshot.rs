//! A Delta table's current snapshot, read through `delta_kernel`: the log replay (JSON
//! commits, Parquet checkpoints, `_last_checkpoint`), the protocol, the table's `metaData`
//! and the live `add` actions with their statistics and deletion vectors.
//!
//! Source: Delta protocol, PROTOCOL.md "Delta Log Entries", "Checkpoints", "Action
//! Reconciliation". The kernel is synchronous (it drives its own I/O runtime), so every
//! call runs on tokio's blocking pool.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow_array::{Array, Int32Array, Int64Array, StringArray, StructArray};
use delta_kernel::engine::arrow_data::ArrowEngineData;
use delta_kernel::engine_data::FilteredEngineData;
use delta_kernel::expressions::Scalar;
use delta_kernel::scan::state::{DvInfo, ScanFile};
use delta_kernel::schema::DataType as KernelType;
use delta_kernel::{Expression, Predicate, Snapshot, SnapshotRef};
use delta_kernel_default_engine::DefaultEngine;
use delta_kernel_default_engine::executor::tokio::TokioBackgroundExecutor;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

use crate::lake::error::LakeError;
use crate::lake::rewrite::DeletedRows;
use crate::lake::root::LakeRoot;
use crate::lake::run_blocking;
use crate::lake::store::StoreKind;

/// The kernel's engine on a table's store.
type Engine = DefaultEngine<TokioBackgroundExecutor>;

/// A Delta table: its root (the folder holding `_delta_log/`) and the kernel engine reading it.
///
/// Cheap to clone.
#[derive(Clone)]
pub struct DeltaTable {
    root: LakeRoot,
    url: url::Url,
    engine: Arc<Engine>,
}

impl std::fmt::Debug for DeltaTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeltaTable")
            .field("root", &self.root.url())
            .finish()
    }
}

/// One live `add` action of a snapshot (PROTOCOL.md "Add File and Remove File").
#[derive(Debug, Clone)]
pub struct AddFile {
    /// The action's `path`: relative to the table root, percent-encoded as in the log.
    pub path: String,
    /// The `partitionValues`: partition column → value as a string (`None`: null).
    pub partition_values: BTreeMap<String, Option<String>>,
    /// `size` in bytes.
    pub size: u64,
    /// `modificationTime`, milliseconds since the epoch.
    pub modification_time: i64,
    /// `stats.numRecords`, when the action has statistics.
    pub num_records: Option<u64>,
    /// The action's `deletionVector`: rows of the file deleted without rewriting it
    /// (PROTOCOL.md "Deletion Vectors").
    pub deletion_vector: Option<DeletionVector>,
}

impl AddFile {
    /// Whether rows of the file are deleted by a deletion vector.
    pub fn has_deletion_vector(&self) -> bool {
        self.deletion_vector.is_some()
    }
}

/// A deletion vector of an `add` action (PROTOCOL.md "Deletion Vector Descriptor Schema").
#[derive(Debug, Clone)]
pub struct DeletionVector {
    /// The kernel's handle, to read the deleted row positions.
    info: DvInfo,
    /// The descriptor as the log holds it (`storageType`, `pathOrInlineDv`, `offset`,
    /// `sizeInBytes`, `cardinality`), repeated in the `remove` action of the file: a file
    /// is identified by its path *and* its deletion vector (PROTOCOL.md "Action
    /// Reconciliation").
    pub descriptor: serde_json::Value,
}

/// A snapshot: one version of the table, with what Lethe needs of its protocol and metadata.
#[derive(Clone)]
pub struct DeltaSnapshot {
    inner: SnapshotRef,
    /// The version (the number of the last commit replayed).
    pub version: u64,
    /// `protocol.minReaderVersion`.
    pub min_reader_version: u32,
    /// `protocol.minWriterVersion`.
    pub min_writer_version: u32,
    /// Table features named by the protocol (`readerFeatures` ∪ `writerFeatures`).
    pub features: BTreeSet<String>,
    /// `metaData.configuration`.
    pub configuration: HashMap<String, String>,
    /// `metaData.partitionColumns`.
    pub partition_columns: Vec<String>,
    /// Top-level column names of the table schema (`metaData.schemaString`), in order.
    pub columns: Vec<String>,
    /// Top-level string columns of the schema (data skipping on them compares strings).
    string_columns: BTreeSet<String>,
}

impl std::fmt::Debug for DeltaSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeltaSnapshot")
            .field("version", &self.version)
            .field("features", &self.features)
            .field("partition_columns", &self.partition_columns)
            .finish()
    }
}

impl DeltaTable {
    /// The Delta table at `root`. Nothing is read yet.
    ///
    /// # Errors
    /// [`LakeError::InvalidRoot`] when the root's folder cannot be turned into a URL.
    pub fn new(root: LakeRoot) -> Result<Self, LakeError> {
        let invalid = |reason: String| LakeError::InvalidRoot {
            url: root.url().to_string(),
            reason,
        };
        // The kernel resolves every path against the table URL and hands the store the URL's
        // path: a local table is read through a store rooted at `/` with its absolute path, a
        // remote one through the root's own store with the root's prefix as path.
        let (url, store) = match root.kind() {
            StoreKind::Local => {
                let folder = crate::lake::local_folder(root.url())
                    .map(std::path::PathBuf::from)
                    .and_then(|p| p.canonicalize().ok())
                    .ok_or_else(|| invalid("not a local folder".into()))?;
                let url = url::Url::from_directory_path(&folder)
                    .map_err(|()| invalid("not an absolute path".into()))?;
                (
                    url,
                    Arc::new(LocalFileSystem::new()) as Arc<dyn object_store::ObjectStore>,
                )
            }
            _ => {
                let prefix = root.prefix().as_ref();
                let url = if prefix.is_empty() {
                    "lethe-table:///".to_string()
                } else {
                    format!("lethe-table:///{prefix}/")
                };
                let url = url::Url::parse(&url).map_err(|e| invalid(e.to_string()))?;
                (url, Arc::clone(root.store()))
            }
        };
        let engine = DefaultEngine::builder(store).build();
        Ok(Self {
            root,
            url,
            engine: Arc::new(engine),
        })
    }

    /// The table's root.
    pub fn root(&self) -> &LakeRoot {
        &self.root
    }

    /// The store location of an `add` / `remove` action's `path` (relative, percent-encoded).
    ///
    /// # Errors
    /// [`LakeError::Table`] for an absolute path (a file outside the table root) or a path
    /// that does not decode.
    pub fn location_of(&self, action_path: &str) -> Result<Path, LakeError> {
        if action_path.contains("://") || action_path.starts_with('/') {
            return Err(self.error(format!(
                "the log names a data file by an absolute path ({action_path:?}); Lethe only rewrites files under the table root"
            )));
        }
        let relative = Path::from_url_path(action_path)
            .map_err(|e| self.error(format!("invalid data file path {action_path:?}: {e}")))?;
        Ok(relative
            .parts()
            .fold(self.root.prefix().clone(), |p, part| p.join(part)))
    }

    pub(crate) fn error(&self, reason: String) -> LakeError {
        LakeError::Table {
            root: self.root.url().to_string(),
            reason,
        }
    }

    /// Reads the latest snapshot (PROTOCOL.md "Action Reconciliation").
    ///
    /// # Errors
    /// [`LakeError::Table`] when there is no readable log, or the kernel refuses the table (a
    /// reader feature it does not know).
    pub async fn snapshot(&self) -> Result<DeltaSnapshot, LakeError> {
        let url = self.url.clone();
        let engine = Arc::clone(&self.engine);
        let root = self.root.url().to_string();
        run_blocking(move || {
            let snapshot = Snapshot::builder_for(url.as_str())
                .build(engine.as_ref())
                .map_err(|e| LakeError::Table {
                    root,
                    reason: format!("cannot read the Delta log: {e}"),
                })?;
            Ok(DeltaSnapshot::of(snapshot))
        })
        .await?
    }

    /// The live `add` actions of `snapshot`; with `subjects`, only those whose statistics on
    /// the string column `column` (minValues / maxValues), or whose partition value when it is
    /// a partition column, may hold one of them (the kernel's data skipping; files without
    /// statistics are always listed).
    ///
    /// # Errors
    /// [`LakeError::Table`] when the log's actions cannot be read.
    pub async fn files(
        &self,
        snapshot: &DeltaSnapshot,
        filter: Option<(&str, &BTreeSet<String>)>,
    ) -> Result<Vec<AddFile>, LakeError> {
        let predicate = filter.and_then(|(column, subjects)| {
            (snapshot.string_columns.contains(column) && !subjects.is_empty()).then(|| {
                Arc::new(Predicate::or_from(subjects.iter().map(|s| {
                    Predicate::eq(
                        Expression::column([column]),
                        Expression::literal(Scalar::String(s.clone())),
                    )
                })))
            })
        });
        let inner = Arc::clone(&snapshot.inner);
        let engine = Arc::clone(&self.engine);
        let this = self.clone();
        run_blocking(move || {
            let fail = |e: delta_kernel::KernelError| {
                this.error(format!("cannot list the snapshot's files: {e}"))
            };
            let scan = inner
                .scan_builder()
                .with_predicate(predicate)
                .build()
                .map_err(fail)?;
            let mut files: Vec<AddFile> = Vec::new();
            for metadata in scan.scan_metadata(engine.as_ref()).map_err(fail)? {
                let metadata = metadata.map_err(fail)?;
                let descriptors = dv_descriptors(&metadata.scan_files).map_err(|reason| {
                    this.error(format!(
                        "cannot read a deletion vector descriptor: {reason}"
                    ))
                })?;
                let first = files.len();
                files = metadata
                    .visit_scan_files(files, |files: &mut Vec<AddFile>, f: ScanFile| {
                        files.push(AddFile::from(f));
                    })
                    .map_err(fail)?;
                for file in &mut files[first..] {
                    if let Some(dv) = &mut file.deletion_vector {
                        dv.descriptor = descriptors.get(&file.path).cloned().ok_or_else(|| {
                            this.error(format!(
                                "the deletion vector of {:?} has no descriptor in the scan",
                                file.path
                            ))
                        })?;
                    }
                }
            }
            files.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(files)
        })
        .await?
    }
}

impl DeltaTable {
    /// The row positions `add`'s deletion vector deletes (empty without one).
    ///
    /// # Errors
    /// [`LakeError::Table`] when the deletion vector cannot be read (its file is missing,
    /// its checksum or magic is wrong).
    pub async fn deleted_rows(&self, add: &AddFile) -> Result<DeletedRows, LakeError> {
        let Some(dv) = &add.deletion_vector else {
            return Ok(DeletedRows::default());
        };
        let (info, engine, url, this) = (
            dv.info.clone(),
            Arc::clone(&self.engine),
            self.url.clone(),
            self.clone(),
        );
        let path = add.path.clone();
        run_blocking(move || {
            let rows = info.get_row_indexes(engine.as_ref(), &url).map_err(|e| {
                this.error(format!("cannot read the deletion vector of {path:?}: {e}"))
            })?;
            Ok(DeletedRows::new(rows.unwrap_or_default()))
        })
        .await?
    }
}

/// The `deletionVector` descriptors of the selected rows of a scan's file list, by `path`
/// (the kernel hands its typed view without the descriptor).
fn dv_descriptors(
    files: &FilteredEngineData,
) -> Result<HashMap<String, serde_json::Value>, String> {
    let data = files
        .data()
        .any_ref()
        .downcast_ref::<ArrowEngineData>()
        .ok_or("the engine's data is not Arrow")?;
    let batch = data.record_batch();
    let selected = files.selection_vector();
    let paths = batch
        .column_by_name("path")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or("no path column")?;
    let Some(dv) = batch
        .column_by_name("deletionVector")
        .and_then(|c| c.as_any().downcast_ref::<StructArray>())
    else {
        return Ok(HashMap::new());
    };
    let text = |name: &str, row: usize| {
        dv.column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .filter(|c| c.is_valid(row))
            .map(|c| c.value(row).to_string())
    };
    let int = |name: &str, row: usize| -> Option<i64> {
        let c = dv.column_by_name(name)?;
        if c.is_null(row) {
            return None;
        }
        if let Some(c) = c.as_any().downcast_ref::<Int32Array>() {
            return Some(i64::from(c.value(row)));
        }
        c.as_any()
            .downcast_ref::<Int64Array>()
            .map(|c| c.value(row))
    };
    let mut out = HashMap::new();
    for row in 0..batch.num_rows() {
        if !selected.get(row).copied().unwrap_or(true) || paths.is_null(row) || dv.is_null(row) {
            continue;
        }
        let Some(storage_type) = text("storageType", row) else {
            continue;
        };
        let mut descriptor = serde_json::json!({
            "storageType": storage_type,
            "pathOrInlineDv": text("pathOrInlineDv", row).ok_or("no pathOrInlineDv")?,
            "sizeInBytes": int("sizeInBytes", row).ok_or("no sizeInBytes")?,
            "cardinality": int("cardinality", row).ok_or("no cardinality")?,
        });
        if let Some(offset) = int("offset", row) {
            descriptor["offset"] = offset.into();
        }
        out.insert(paths.value(row).to_string(), descriptor);
    }
    Ok(out)
}

impl From<ScanFile> for AddFile {
    fn from(f: ScanFile) -> Self {
        Self {
            deletion_vector: f.dv_info.has_vector().then(|| DeletionVector {
                info: f.dv_info.clone(),
                descriptor: serde_json::Value::Null,
            }),
            path: f.path,
            partition_values: f
                .partition_values
                .into_iter()
                .map(|(k, v)| (k, Some(v)))
                .collect(),
            size: u64::try_from(f.size).unwrap_or(0),
            modification_time: f.modification_time,
            num_records: f.stats.map(|s| s.num_records),
        }
    }
}

impl DeltaSnapshot {
    fn of(inner: SnapshotRef) -> Self {
        let props = inner.get_protocol_derived_properties();
        let version_of = |key: &str| props.get(key).and_then(|v| v.parse().ok()).unwrap_or(0);
        // Named as in the protocol action (an unknown feature keeps its own name).
        let protocol = inner.table_configuration().protocol();
        let features = protocol
            .reader_features()
            .into_iter()
            .flatten()
            .chain(protocol.writer_features().into_iter().flatten())
            .filter_map(|f| match serde_json::to_value(f) {
                Ok(serde_json::Value::String(name)) => Some(name),
                _ => None,
            })
            .collect();
        let schema = inner.schema();
        let columns = schema.fields().map(|f| f.name().to_string()).collect();
        let string_columns = schema
            .fields()
            .filter(|f| f.data_type() == &KernelType::STRING)
            .map(|f| f.name().to_string())
            .collect();
        Self {
            version: inner.version(),
            min_reader_version: version_of("delta.minReaderVersion"),
            min_writer_version: version_of("delta.minWriterVersion"),
            features,
            configuration: inner.metadata_configuration().clone(),
            partition_columns: inner
                .table_configuration()
                .logical_partition_columns()
                .to_vec(),
            columns,
            string_columns,
            inner,
        }
    }
}
