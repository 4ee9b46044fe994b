//! [`IcebergTable`]: a table of a SQL or REST catalog, and [`LoadedTable`]: one version of it (its
//! metadata file, read through object_store at the table's `location`).
//!
//! Every file a table names (metadata, manifest lists, manifests, data files) is an absolute
//! URI; Lethe reads and writes only those under the table's `location`, through the store of
//! that location (`file://`, `s3://`).

use object_store::ObjectStoreExt;
use object_store::path::Path;
use object_store::{PutMode, PutOptions, PutPayload};

use super::catalog::{Catalog, SqlCatalog};
use super::manifest::{Manifest, ManifestFile, ManifestList, parse_list, parse_manifest};
use super::metadata::{LoadedTable, TableMetadata};
use super::rest::Change;
use crate::lake::error::LakeError;
use crate::lake::root::LakeRoot;
use crate::lake::run_blocking;

/// A table of an Iceberg catalog (SQL or REST): `namespace`.`name`. Nothing is read until
/// [`IcebergTable::load`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct IcebergTable {
    catalog: Catalog,
    namespace: String,
    name: String,
}

impl IcebergTable {
    /// The table `identifier` (`NS.TABLE`; the namespace may itself hold dots, the table
    /// name is after the last one) of `catalog`.
    ///
    /// # Errors
    /// [`LakeError::Table`] when the identifier has no namespace.
    pub fn new(catalog: SqlCatalog, identifier: &str) -> Result<Self, LakeError> {
        Self::of(Catalog::Sql(catalog), identifier)
    }

    /// The table `identifier` of a SQL or REST `catalog` (see [`IcebergTable::new`]).
    ///
    /// # Errors
    /// [`LakeError::Table`] when the identifier has no namespace.
    pub fn of(catalog: Catalog, identifier: &str) -> Result<Self, LakeError> {
        let (namespace, name) = identifier
            .rsplit_once('.')
            .filter(|(ns, t)| !ns.is_empty() && !t.is_empty())
            .ok_or_else(|| LakeError::Table {
                root: identifier.to_string(),
                reason: "a table identifier is NAMESPACE.TABLE".into(),
            })?;
        Ok(Self {
            catalog,
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }

    /// `NS.TABLE`, for messages.
    pub fn identifier(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }

    pub(crate) fn error(&self, reason: impl Into<String>) -> LakeError {
        LakeError::Table {
            root: self.identifier(),
            reason: reason.into(),
        }
    }

    /// Reads the catalog's current metadata location, then that metadata file.
    ///
    /// # Errors
    /// [`LakeError::Table`] when the catalog or the metadata cannot be read,
    /// [`LakeError::InvalidRoot`] for a table location Lethe cannot open.
    pub async fn load(&self) -> Result<LoadedTable, LakeError> {
        let location = match &self.catalog {
            Catalog::Sql(c) => c.metadata_location(&self.namespace, &self.name).await?,
            Catalog::Rest(c) => c.metadata_location(&self.namespace, &self.name).await?,
        };
        let bytes = read_uri(&location).await?;
        let metadata =
            TableMetadata::parse(&bytes).map_err(|e| self.error(format!("{location}: {e}")))?;
        let root = LakeRoot::parse(&normalize(metadata.location()))?;
        Ok(LoadedTable {
            metadata_location: location,
            metadata,
            root,
        })
    }

    /// Commits the version following `base`: `metadata` is that version, `change` what it
    /// changes. SQL catalog: writes `metadata` to a new metadata file
    /// `metadata/<n+1>-<uuid>.metadata.json` (create-only), then swaps the catalog's pointer.
    /// REST catalog: sends `change` as updates with the requirements that `main` and the
    /// table are still those of `base`; the catalog writes the metadata file. Returns the new
    /// location, or `None` when another writer committed first (nothing committed; a new
    /// metadata file is deleted).
    ///
    /// # Errors
    /// [`LakeError::ObjectStore`] when writing fails (nothing committed), [`LakeError::Table`]
    /// when the catalog update fails: the commit's state is then unknown and the new metadata
    /// file is left in place.
    pub async fn commit(
        &self,
        base: &LoadedTable,
        metadata: &TableMetadata,
        change: &Change,
    ) -> Result<Option<String>, LakeError> {
        let catalog = match &self.catalog {
            Catalog::Sql(c) => c,
            Catalog::Rest(c) => return c.commit(&self.namespace, &self.name, base, change).await,
        };
        let name = super::names::next_metadata_name(&base.metadata_location);
        let relative = format!("metadata/{name}");
        let uri = format!("{}/{relative}", base.metadata.location());
        let at = base.root.location(&relative);
        base.root
            .store()
            .put_opts(
                &at,
                PutPayload::from(metadata.to_bytes()),
                PutOptions::from(PutMode::Create),
            )
            .await
            .map_err(|e| LakeError::store(&at, e))?;
        let swapped = catalog
            .swap(&self.namespace, &self.name, &base.metadata_location, &uri)
            .await;
        match swapped {
            Ok(true) => Ok(Some(uri)),
            Ok(false) => {
                if let Err(e) = base.root.store().delete(&at).await {
                    tracing::warn!(object = %at, error = %e, "uncommitted metadata file not removed");
                }
                Ok(None)
            }
            // The update may have been applied before the error (a lost connection): the new
            // metadata file may be the table's now, so it stays (Java's
            // `CommitStateUnknownException`).
            Err(e) => Err(e),
        }
    }
}

/// A table URI in the form Lethe's stores read: `file:/x` (Java's form) as `file:///x`, and
/// Hadoop's `s3a://` / `s3n://` (Spark on EMR) as `s3://`.
pub(crate) fn normalize(uri: &str) -> String {
    if let Some(rest) = uri
        .strip_prefix("s3a://")
        .or_else(|| uri.strip_prefix("s3n://"))
    {
        return format!("s3://{rest}");
    }
    match uri.strip_prefix("file:") {
        Some(rest) if !rest.starts_with("//") => format!("file://{rest}"),
        _ => uri.to_string(),
    }
}

/// Reads a whole object given by URI (metadata files, before the root is known).
async fn read_uri(uri: &str) -> Result<Vec<u8>, LakeError> {
    let uri = normalize(uri);
    let (folder, name) = uri.rsplit_once('/').ok_or_else(|| LakeError::Table {
        root: uri.clone(),
        reason: "not a file URI".into(),
    })?;
    let root = LakeRoot::parse(folder)?;
    let at = root.location(name);
    let got = root
        .store()
        .get(&at)
        .await
        .map_err(|e| LakeError::store(&at, e))?;
    Ok(got
        .bytes()
        .await
        .map_err(|e| LakeError::store(&at, e))?
        .to_vec())
}

impl LoadedTable {
    /// The path of `uri` relative to the table location.
    ///
    /// # Errors
    /// [`LakeError::Table`] when the file is not under the table location.
    pub fn relative(&self, uri: &str) -> Result<String, LakeError> {
        let uri = normalize(uri);
        let base = normalize(self.metadata.location());
        uri.strip_prefix(&base)
            .and_then(|r| r.strip_prefix('/'))
            .map(str::to_string)
            .ok_or_else(|| LakeError::Table {
                root: base.clone(),
                reason: format!(
                    "file {uri:?} is outside the table location; Lethe only rewrites files under it"
                ),
            })
    }

    /// The URI of `relative` (under the table location).
    pub fn uri(&self, relative: &str) -> String {
        format!("{}/{relative}", normalize(self.metadata.location()))
    }

    /// The store path of `uri`.
    pub(crate) fn path(&self, uri: &str) -> Result<Path, LakeError> {
        Ok(self.root.location(&self.relative(uri)?))
    }

    /// Reads a whole file of the table.
    pub(crate) async fn read(&self, uri: &str) -> Result<bytes::Bytes, LakeError> {
        let at = self.path(uri)?;
        let got = self
            .root
            .store()
            .get(&at)
            .await
            .map_err(|e| LakeError::store(&at, e))?;
        got.bytes().await.map_err(|e| LakeError::store(&at, e))
    }

    /// Writes a new file of the table (create-only).
    pub(crate) async fn write_new(&self, relative: &str, bytes: Vec<u8>) -> Result<(), LakeError> {
        let at = self.root.location(relative);
        self.root
            .store()
            .put_opts(
                &at,
                PutPayload::from(bytes),
                PutOptions::from(PutMode::Create),
            )
            .await
            .map(|_| ())
            .map_err(|e| LakeError::store(&at, e))
    }

    fn error(&self, reason: String) -> LakeError {
        LakeError::Table {
            root: self.metadata.location().to_string(),
            reason,
        }
    }

    /// Reads the manifest list at `uri` (decoded on the blocking pool).
    pub(crate) async fn manifest_list(&self, uri: &str) -> Result<ManifestList, LakeError> {
        let bytes = self.read(uri).await?;
        run_blocking(move || parse_list(&bytes))
            .await?
            .map_err(|e| self.error(format!("manifest list {uri}: {e}")))
    }

    /// Reads the manifest `listed` (decoded on the blocking pool: a manifest of a large
    /// table holds thousands of entries).
    pub(crate) async fn manifest(&self, listed: &ManifestFile) -> Result<Manifest, LakeError> {
        let bytes = self.read(&listed.path).await?;
        let owned = listed.clone();
        run_blocking(move || parse_manifest(&bytes, &owned))
            .await?
            .map_err(|e| self.error(format!("manifest {}: {e}", listed.path)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_uris_are_read_in_one_form() {
        assert_eq!(
            normalize("file:/tmp/t/data/a.parquet"),
            "file:///tmp/t/data/a.parquet"
        );
        assert_eq!(normalize("file:///tmp/t"), "file:///tmp/t");
        assert_eq!(normalize("s3a://b/w/t"), "s3://b/w/t");
        assert_eq!(normalize("s3://b/w/t"), "s3://b/w/t");
    }
}
