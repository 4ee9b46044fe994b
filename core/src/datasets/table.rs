//! The table behind a dataset of format `delta` or `iceberg`: opened from the dataset row and
//! the configured catalogs (`[iceberg.catalogs.NAME]`), after checking that a catalog on the
//! network is on a public address (unless `iceberg.allow_private_networks`) and that a SQLite
//! catalog file lies where datasets may (`storage.allowed_roots`).

use crate::config::{IcebergSettings, Settings};
use crate::domain::DatasetFormat;
use crate::lake::table::Table;
use crate::lake::table::delta::DeltaTable;
use crate::lake::table::iceberg::{Catalog, IcebergTable};
use crate::lake::{LakeError, LakeRoot};
use crate::store::{Dataset, IcebergTableRef};
use secrecy::ExposeSecret;

/// Why a dataset's table could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The dataset names a catalog the configuration does not have, or is not a table.
    #[error("{0}")]
    Invalid(String),
    /// The catalog's address is not allowed (a private address, a SQLite file outside
    /// `storage.allowed_roots`).
    #[error("{0}")]
    NotAllowed(String),
    /// The catalog, log or metadata could not be read, or the table uses a feature Lethe
    /// cannot honour.
    #[error(transparent)]
    Lake(#[from] LakeError),
}

/// The table of `dataset` (format `delta` or `iceberg`).
///
/// # Errors
/// [`TableError::Invalid`] for a Parquet dataset or an unknown catalog,
/// [`TableError::NotAllowed`], [`TableError::Lake`] when the catalog cannot be reached.
pub async fn open_table(settings: &Settings, dataset: &Dataset) -> Result<Table, TableError> {
    match (dataset.format, &dataset.iceberg) {
        (DatasetFormat::Delta, _) => Ok(Table::Delta(DeltaTable::new(LakeRoot::parse(
            &dataset.root_url,
        )?)?)),
        (DatasetFormat::Iceberg, Some(table)) => open_iceberg(settings, table).await,
        (DatasetFormat::Iceberg, None) => Err(TableError::Invalid(format!(
            "dataset {} is an Iceberg dataset without a catalog and table",
            dataset.name
        ))),
        (DatasetFormat::Parquet, _) => Err(TableError::Invalid(format!(
            "dataset {} is not a table",
            dataset.name
        ))),
    }
}

/// Table `table.table` of configured catalog `table.catalog`.
///
/// # Errors
/// As [`open_table`].
pub async fn open_iceberg(
    settings: &Settings,
    table: &IcebergTableRef,
) -> Result<Table, TableError> {
    let catalog = connect_catalog(settings, &table.catalog).await?;
    Ok(Table::Iceberg(IcebergTable::of(catalog, &table.table)?))
}

/// Connects to configured catalog `name` after the address checks.
async fn connect_catalog(settings: &Settings, name: &str) -> Result<Catalog, TableError> {
    let IcebergSettings {
        catalogs,
        allow_private_networks,
    } = &settings.iceberg;
    let Some(config) = catalogs.get(name) else {
        return Err(TableError::Invalid(format!(
            "no Iceberg catalog {name:?} is configured (configured: {}); add [iceberg.catalogs.{name}] with its uri",
            if catalogs.is_empty() {
                "none".to_string()
            } else {
                catalogs.keys().cloned().collect::<Vec<_>>().join(", ")
            }
        )));
    };
    let uri = config.uri.expose_secret();
    if let Some(path) = uri.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        settings.check_dataset_root(path).map_err(|e| {
            TableError::NotAllowed(format!("the SQLite file of Iceberg catalog {name}: {e}"))
        })?;
    } else {
        crate::webhooks::egress::check_url_as(
            uri,
            *allow_private_networks,
            "iceberg.allow_private_networks",
        )
        .await
        .map_err(|e| TableError::NotAllowed(format!("Iceberg catalog {name}: {e}")))?;
    }
    let warehouse = config.warehouse.clone().unwrap_or_else(|| name.to_string());
    let token = config
        .token
        .as_ref()
        .map(|t| t.expose_secret().to_string())
        .or_else(|| std::env::var("LETHE_ICEBERG_REST_TOKEN").ok());
    Ok(Catalog::connect_with(uri, &warehouse, token).await?)
}
