//! Registering a dataset: a lake written by others (its root and subject column), a
//! Lethe-managed dataset (with a schema, starting empty), or a Delta or Iceberg table, after
//! checking that its roots are allowed (`storage.allowed_roots`), reachable, free (no other
//! dataset's root overlaps them) and, for a managed dataset, empty; a table must load and have
//! the subject column.

use serde_json::json;

use super::table::{TableError, open_iceberg};
use super::{DatasetError, ROOT_LIST_TIMEOUT, list_root};
use crate::audit::NewAuditEntry;
use crate::config::Settings;
use crate::domain::{DatasetFormat, DatasetName, DatasetSchema};
use crate::lake::LakeRoot;
use crate::lake::table::Table;
use crate::lake::table::delta::DeltaTable;
use crate::store::{Dataset, IcebergTableRef, NewDataset, Store, StoreError};

/// A dataset to register, as an admin sent it.
#[derive(Debug, Clone)]
pub struct Register {
    /// Unique name: `[a-z][a-z0-9_-]{0,63}`.
    pub name: String,
    /// Parquet folders (default), a Delta table or an Iceberg table.
    pub format: DatasetFormat,
    /// Root: `s3://bucket/prefix`, `file:///…` or a local path; a Delta table's root.
    /// Required except for Iceberg, whose root is the table's location.
    pub root_url: Option<String>,
    /// An Iceberg table's catalog: a name configured under `[iceberg.catalogs]`.
    pub catalog: Option<String>,
    /// An Iceberg table's identifier, `NAMESPACE.TABLE`.
    pub table: Option<String>,
    /// Subject column (required without a schema; defaults to the schema's first).
    pub subject_column: Option<String>,
    /// Partition keys in path order (discovered from the files when absent).
    pub partition_columns: Option<Vec<String>>,
    /// The declared schema of a Lethe-managed dataset.
    pub schema: Option<DatasetSchema>,
}

/// Registers `cmd` as `actor`, audited as `dataset.registered`.
///
/// # Errors
/// [`DatasetError::Invalid`]: `validation` (name, schema, missing root, a table format's
/// root, a non-empty root for a schema), `root_unreachable`, `root_not_allowed`.
/// [`DatasetError::Conflict`]: `dataset_exists`, `root_taken`. Store errors.
pub async fn register(
    store: &Store,
    settings: &Settings,
    actor: &str,
    cmd: Register,
) -> Result<Dataset, DatasetError> {
    if cmd.format.is_table() {
        return register_table(store, settings, actor, cmd).await;
    }
    if cmd.catalog.is_some() || cmd.table.is_some() {
        return Err(DatasetError::validation(
            "catalog and table are for datasets of format iceberg",
        ));
    }
    let name = DatasetName::parse(cmd.name)?;
    let root_url = cmd
        .root_url
        .ok_or_else(|| DatasetError::validation("root_url is required"))?;
    let (subject_column, declared_partitions) = match &cmd.schema {
        Some(schema) => columns_of_schema(schema, cmd.subject_column, cmd.partition_columns)?,
        None => {
            let column = cmd.subject_column.ok_or_else(|| {
                DatasetError::validation(
                    "subject_column is required for a dataset without a schema",
                )
            })?;
            if column.trim().is_empty() {
                return Err(DatasetError::validation("subject_column must not be empty"));
            }
            (column, cmd.partition_columns)
        }
    };
    check_root(settings, &root_url)?;
    if let Some(schema) = &cmd.schema {
        for url in schema.region_roots.values() {
            check_root(settings, url)?;
        }
    }
    if cmd.schema.is_some() {
        create_local_root(&root_url).await?;
    }
    let root = LakeRoot::parse(&root_url).map_err(|e| DatasetError::validation(e.to_string()))?;
    let files = list_root(&root, &root_url).await?;
    if cmd.schema.is_some() && !files.is_empty() {
        return Err(DatasetError::validation(format!(
            "a dataset with a schema starts empty (Lethe writes every file of it), but {} already holds {} files",
            root_url,
            files.len()
        )));
    }
    if let Some(schema) = &cmd.schema {
        prepare_region_roots(&root_url, schema).await?;
    }
    check_root_is_free(store, name.as_str(), &root_url, cmd.schema.as_ref()).await?;
    let partition_columns = match declared_partitions {
        Some(columns) => columns,
        None => files
            .first()
            .map(|f| f.partition.iter().map(|(k, _)| k.clone()).collect())
            .unwrap_or_default(),
    };
    let audit = NewAuditEntry::new(actor, "dataset.registered").details(json!({
        "name": name.as_str(),
        "root_url": &root_url,
        "subject_column": subject_column,
        "files": files.len(),
        "managed": cmd.schema.is_some(),
        "region_roots": cmd.schema.as_ref().map(|s| &s.region_roots),
    }));
    let new = NewDataset {
        name: name.as_str().to_string(),
        root_url,
        subject_column,
        partition_columns,
        created_by: actor.to_string(),
        schema: cmd.schema,
        format: DatasetFormat::Parquet,
        iceberg: None,
    };
    create(store, new, audit).await
}

/// Registers a Delta or Iceberg table: it must load within [`ROOT_LIST_TIMEOUT`], use no
/// feature Lethe cannot honour, have the subject column in its current schema, and lie where
/// datasets may (its root, or the Iceberg table's location and catalog).
///
/// # Errors
/// As [`register`]; `table_unusable` when the table cannot be read or uses such a feature.
async fn register_table(
    store: &Store,
    settings: &Settings,
    actor: &str,
    cmd: Register,
) -> Result<Dataset, DatasetError> {
    let name = DatasetName::parse(cmd.name)?;
    let format = cmd.format;
    if cmd.schema.is_some() {
        return Err(DatasetError::validation(format!(
            "a dataset of format {} is written by others and has no schema; Lethe-managed datasets are Parquet",
            format.as_str()
        )));
    }
    let subject_column = cmd
        .subject_column
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| DatasetError::validation("subject_column is required for a table"))?;
    let (table, iceberg) = match format {
        DatasetFormat::Iceberg => {
            let (Some(catalog), Some(table)) = (cmd.catalog, cmd.table) else {
                return Err(DatasetError::validation(
                    "a dataset of format iceberg needs catalog (a name configured under [iceberg.catalogs]) and table (NAMESPACE.TABLE)",
                ));
            };
            if cmd.root_url.is_some() {
                return Err(DatasetError::validation(
                    "omit root_url for an Iceberg table: its root is the table's location, read from the catalog",
                ));
            }
            let reference = IcebergTableRef { catalog, table };
            let table = timed(open_iceberg(settings, &reference)).await?;
            (table, Some(reference))
        }
        _ => {
            if cmd.catalog.is_some() || cmd.table.is_some() {
                return Err(DatasetError::validation(
                    "catalog and table are for datasets of format iceberg",
                ));
            }
            let root_url = cmd.root_url.ok_or_else(|| {
                DatasetError::validation("root_url (the table's root) is required")
            })?;
            check_root(settings, &root_url)?;
            let root =
                LakeRoot::parse(&root_url).map_err(|e| DatasetError::validation(e.to_string()))?;
            let table = Table::Delta(
                DeltaTable::new(root).map_err(|e| DatasetError::validation(e.to_string()))?,
            );
            (table, None)
        }
    };
    let info = timed(async { Ok(table.describe().await?) }).await?;
    check_root(settings, &info.location)?;
    if !info.columns.contains(&subject_column) {
        return Err(DatasetError::validation(format!(
            "the table has no column {subject_column:?} in its current schema (columns: {})",
            info.columns.join(", ")
        )));
    }
    if info.partition_columns.contains(&subject_column) {
        return Err(DatasetError::validation(format!(
            "the subject column {subject_column:?} is a partition column of the table; erasing whole partitions is not implemented"
        )));
    }
    if let Some(given) = cmd
        .partition_columns
        .filter(|given| *given != info.partition_columns)
    {
        return Err(DatasetError::validation(format!(
            "partition_columns {given:?} differ from the table's {:?}; omit them",
            info.partition_columns
        )));
    }
    check_root_is_free(store, name.as_str(), &info.location, None).await?;
    let audit = NewAuditEntry::new(actor, "dataset.registered").details(json!({
        "name": name.as_str(),
        "format": format.as_str(),
        "root_url": &info.location,
        "catalog": iceberg.as_ref().map(|t| &t.catalog),
        "table": iceberg.as_ref().map(|t| &t.table),
        "version": info.version,
        "subject_column": subject_column,
        "managed": false,
    }));
    let new = NewDataset {
        name: name.as_str().to_string(),
        root_url: info.location,
        subject_column,
        partition_columns: info.partition_columns,
        created_by: actor.to_string(),
        schema: None,
        format,
        iceberg,
    };
    create(store, new, audit).await
}

/// Runs `work` (opening or reading a table) within [`ROOT_LIST_TIMEOUT`], mapping its
/// errors to what the API answers.
async fn timed<T>(
    work: impl std::future::Future<Output = Result<T, TableError>>,
) -> Result<T, DatasetError> {
    match tokio::time::timeout(ROOT_LIST_TIMEOUT, work).await {
        Err(_) => Err(DatasetError::Invalid {
            code: "root_unreachable",
            detail: format!(
                "the table did not answer within {} s",
                ROOT_LIST_TIMEOUT.as_secs()
            ),
        }),
        Ok(Ok(value)) => Ok(value),
        Ok(Err(TableError::Invalid(detail))) => Err(DatasetError::validation(detail)),
        Ok(Err(TableError::NotAllowed(detail))) => Err(DatasetError::Invalid {
            code: "root_not_allowed",
            detail,
        }),
        Ok(Err(TableError::Lake(e))) => Err(DatasetError::Invalid {
            code: "table_unusable",
            detail: e.to_string(),
        }),
    }
}

/// Inserts `new` with its `audit` entry.
///
/// # Errors
/// [`DatasetError::Conflict`] `dataset_exists` when the name is taken; store errors.
async fn create(
    store: &Store,
    new: NewDataset,
    audit: NewAuditEntry,
) -> Result<Dataset, DatasetError> {
    let name = new.name.clone();
    store.create_dataset(new, audit).await.map_err(|e| match e {
        StoreError::Conflict(_) => DatasetError::Conflict {
            code: "dataset_exists",
            detail: format!("a dataset named {name} already exists"),
        },
        other => other.into(),
    })
}

/// The subject column and partition keys of a dataset with `schema`, after validating the
/// schema and checking that the `subject_column` and `partition_columns` given beside it, if
/// any, agree with it.
///
/// # Errors
/// [`DatasetError::Invalid`] (`validation`) naming the problem.
fn columns_of_schema(
    schema: &DatasetSchema,
    subject_column: Option<String>,
    partition_columns: Option<Vec<String>>,
) -> Result<(String, Option<Vec<String>>), DatasetError> {
    schema
        .validate()
        .map_err(|e| DatasetError::validation(e.to_string()))?;
    let primary = schema.primary_subject();
    if let Some(given) = subject_column.filter(|given| given != primary) {
        return Err(DatasetError::validation(format!(
            "subject_column {given} differs from the schema's first subject column {primary}; omit it"
        )));
    }
    let keys: Vec<String> = schema.partition_by.iter().map(|p| p.name.clone()).collect();
    if let Some(given) = partition_columns.filter(|given| *given != keys) {
        return Err(DatasetError::validation(format!(
            "partition_columns {given:?} differ from the schema's partition_by {keys:?}; omit them"
        )));
    }
    Ok((primary.to_string(), Some(keys)))
}

/// Prepares the per-region roots of a managed dataset (data residency): each differs from
/// `root_url`, a missing local one is created, and each must be usable (not a table format)
/// and hold no data file yet, like the dataset's root.
///
/// # Errors
/// [`DatasetError::Invalid`] (`validation`) naming the region and the problem.
async fn prepare_region_roots(root_url: &str, schema: &DatasetSchema) -> Result<(), DatasetError> {
    for (region, url) in &schema.region_roots {
        if url.trim_end_matches('/') == root_url.trim_end_matches('/') {
            return Err(DatasetError::validation(format!(
                "region_roots: the root of {region} is the dataset's root_url; omit it (rows of regions without a root of their own go to root_url)"
            )));
        }
        create_local_root(url).await?;
        let root = LakeRoot::parse(url)
            .map_err(|e| DatasetError::validation(format!("region_roots: {region}: {e}")))?;
        let files = list_root(&root, url)
            .await
            .map_err(|e| match DatasetError::from(e) {
                DatasetError::Invalid { code, detail } => DatasetError::Invalid {
                    code,
                    detail: format!("region_roots: {region}: {detail}"),
                },
                other => other,
            })?;
        if !files.is_empty() {
            return Err(DatasetError::validation(format!(
                "region_roots: a dataset with a schema starts empty, but the root of {region} ({url}) already holds {} files",
                files.len()
            )));
        }
    }
    Ok(())
}

/// Refuses a root outside `storage.allowed_roots`, or over Lethe's own folders, before
/// anything touches it (not even a listing).
///
/// # Errors
/// [`DatasetError::Invalid`] with code `root_not_allowed`.
fn check_root(settings: &Settings, url: &str) -> Result<(), DatasetError> {
    settings
        .check_dataset_root(url)
        .map_err(|detail| DatasetError::Invalid {
            code: "root_not_allowed",
            detail,
        })
}

/// Refuses a root (or region root) that is, contains or lies in a root of another dataset:
/// two datasets over the same files would rewrite each other's files and count each row
/// twice. (A dataset of the same name is left to the store's own 409 `dataset_exists`.)
///
/// # Errors
/// [`DatasetError::Conflict`] with code `root_taken`; store errors.
async fn check_root_is_free(
    store: &Store,
    name: &str,
    root_url: &str,
    schema: Option<&DatasetSchema>,
) -> Result<(), DatasetError> {
    let mut new_roots = vec![root_url.to_string()];
    if let Some(schema) = schema {
        new_roots.extend(schema.region_roots.values().cloned());
    }
    for existing in store.list_datasets().await? {
        if existing.name == name {
            continue;
        }
        let mut taken = vec![existing.root_url.clone()];
        if let Some(schema) = &existing.schema {
            taken.extend(schema.region_roots.values().cloned());
        }
        for new in &new_roots {
            if taken
                .iter()
                .any(|old| crate::config::roots_overlap(new, old))
            {
                return Err(DatasetError::Conflict {
                    code: "root_taken",
                    detail: format!(
                        "{new} overlaps the root of dataset {}; a root belongs to one dataset only",
                        existing.name
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Creates the folder of a local root (`file:///…` or a path) when it is missing. Object store
/// roots need nothing, and a `file://` URL that is not a plain absolute path (a host, percent
/// escapes) is left for [`LakeRoot::parse`] to judge.
///
/// # Errors
/// [`DatasetError::Invalid`] (`validation`) when the folder cannot be created.
async fn create_local_root(root_url: &str) -> Result<(), DatasetError> {
    let path = match root_url.strip_prefix("file://") {
        Some(rest) if rest.starts_with('/') && !rest.contains('%') => rest,
        Some(_) => return Ok(()),
        None if root_url.contains("://") => return Ok(()),
        None => root_url,
    };
    tokio::fs::create_dir_all(path)
        .await
        .map_err(|e| DatasetError::validation(format!("cannot create the root folder {path}: {e}")))
}
