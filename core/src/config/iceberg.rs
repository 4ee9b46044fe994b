//! Apache Iceberg catalogs (`[iceberg]`): the catalogs a dataset of format `iceberg` names,
//! with their credentials. A dataset row holds the catalog's name and the table identifier
//! only, never a URI with a password or a token.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::Deserialize;

/// `[iceberg]`: catalogs by name, and whether they may be on private addresses.
#[derive(Clone, Default, Deserialize)]
pub struct IcebergSettings {
    /// Catalogs by the name datasets use, e.g. `[iceberg.catalogs.lake]`
    /// (`LETHE__ICEBERG__CATALOGS__LAKE__URI=…`).
    #[serde(default)]
    pub catalogs: BTreeMap<String, IcebergCatalogSettings>,
    /// Allow catalogs (REST or PostgreSQL) on loopback, private and link-local addresses
    /// (default false: a catalog URI is checked like a webhook's, against server-side request
    /// forgery).
    #[serde(default)]
    pub allow_private_networks: bool,
}

/// One Iceberg catalog.
#[derive(Clone, Deserialize)]
pub struct IcebergCatalogSettings {
    /// A SQL catalog in the JDBC schema (`sqlite:///path/catalog.db`, `postgres://user:pw@host/db`)
    /// or an Iceberg REST catalog (`https://…`). Secret: it may hold a password.
    pub uri: SecretString,
    /// The SQL catalog's `catalog_name`, or the REST catalog's `warehouse`. Default: the
    /// catalog's name in this section.
    pub warehouse: Option<String>,
    /// Bearer token for a REST catalog (default: `LETHE_ICEBERG_REST_TOKEN`, else none).
    pub token: Option<SecretString>,
}

impl std::fmt::Debug for IcebergSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IcebergSettings")
            .field("catalogs", &self.catalogs.keys().collect::<Vec<_>>())
            .field("allow_private_networks", &self.allow_private_networks)
            .finish()
    }
}

impl std::fmt::Debug for IcebergCatalogSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IcebergCatalogSettings")
            .field("uri", &"***")
            .field("warehouse", &self.warehouse)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}
