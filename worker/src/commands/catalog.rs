//! The database and keyring of a deployment, for the commands that work on registered datasets
//! (`ingest`, `compact`, `locate --dataset`). Configured like the service (`lethe.toml`,
//! `LETHE__…`).

use std::sync::Arc;

use anyhow::Context;
use lethe_core::config::Settings;
use lethe_core::keyring::{Keyring, keyring_from_settings};
use lethe_core::requests::reapply_tombstones;
use lethe_core::store::{Dataset, Store};

use super::CommandError;

/// The opened database and keyring.
pub(crate) struct Catalog {
    pub store: Arc<Store>,
    pub keyring: Arc<Keyring>,
}

impl Catalog {
    /// Opens the configured database and keyring, and re-applies journaled tombstones (so a
    /// restored backup cannot bring an erased subject back through this command).
    pub(crate) async fn open() -> Result<Self, CommandError> {
        let settings = Settings::load().map_err(|e| CommandError::Usage(e.into()))?;
        let sql = Arc::new(
            Store::connect(&settings.database.url, settings.database.max_connections)
                .await
                .context("opening the database")
                .map_err(CommandError::Failed)?,
        );
        let keyring = keyring_from_settings(&settings, sql.clone())
            .context("opening the keyring (crypto.kek / crypto.kek_file)")
            .map_err(CommandError::Usage)?;
        reapply_tombstones(sql.as_ref(), &keyring, "system:worker-cli")
            .await
            .context("re-applying journaled tombstones")
            .map_err(CommandError::Failed)?;
        Ok(Self {
            store: sql,
            keyring: Arc::new(keyring),
        })
    }

    /// The dataset registered as `name`.
    pub(crate) async fn dataset(&self, name: &str) -> Result<Dataset, CommandError> {
        let all = self
            .store
            .list_datasets()
            .await
            .context("listing datasets")
            .map_err(CommandError::Failed)?;
        all.into_iter().find(|d| d.name == name).ok_or_else(|| {
            CommandError::Usage(anyhow::anyhow!(
                "no dataset named {name} is registered (POST /v1/datasets)"
            ))
        })
    }
}
