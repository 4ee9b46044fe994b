//! The state every handler shares ([`AppState`]) and how it is opened from settings
//! ([`open_state`]): the store, the keyring, token keys, pseudonyms, audit signing, throttles
//! and mail. Handlers import it from here; the wiring that builds the server is
//! [`crate::startup`].

use std::sync::Arc;

use anyhow::Context;
use lethe_core::audit::Pseudonymizer;
use lethe_core::config::{Settings, load_or_create_secret};
use lethe_core::keyring::{Keyring, keyring_from_settings};
use lethe_core::requests::reapply_tombstones;
use lethe_core::store::Store;

use crate::auth::{AuthThrottle, TokenKeys, TrustedIssuers};
use crate::checkpoints::AuditCheckpoints;

/// Shared state of every handler.
pub struct AppState {
    /// The database.
    pub store: Arc<Store>,
    /// Token keys.
    pub tokens: TokenKeys,
    /// Issuers of the company's own app whose JWTs identify data subjects.
    pub issuers: TrustedIssuers,
    /// Subject-id pseudonyms for the audit log.
    pub pseudonyms: Pseudonymizer,
    /// Settings as loaded.
    pub settings: Settings,
    /// Per-subject data keys (crypto-shredding).
    pub keyring: Arc<Keyring>,
    /// The audit signing key, its public keys and the external checkpoint sink.
    pub audit: Arc<AuditCheckpoints>,
    /// Rate limits, lockouts and the hashing bound of sign-in and sign-up.
    pub throttle: AuthThrottle,
    /// Outgoing mail (verification codes).
    pub mailer: Arc<crate::mail::Mailer>,
}

/// Opens the store and loads (or creates) the secrets named in `settings`.
///
/// # Errors
/// When a configured secret is weak ([`Settings::check_secrets`]), a trusted issuer is misconfigured or its key cannot be read, the database is
/// unreachable, migrations fail, or a secret file cannot be written.
pub async fn open_state(settings: &Settings) -> anyhow::Result<AppState> {
    settings
        .check_secrets()
        .context("checking the configured secrets")?;
    let issuers = TrustedIssuers::load_with_egress(
        &settings.auth.trusted_issuers,
        settings.webhooks.allow_private_networks,
    )
    .context("loading the trusted issuers (auth.trusted_issuers)")?;
    let store = Store::connect(&settings.database.url, settings.database.max_connections)
        .await
        .context("opening the database")?;
    let data_dir = &settings.storage.data_dir;
    let jwt_secret = match &settings.auth.jwt_secret {
        Some(secret) => secret.clone(),
        None => load_or_create_secret(&data_dir.join("jwt.key"))?,
    };
    let pseudonym_key = match &settings.auth.pseudonym_key {
        Some(key) => key.clone(),
        None => load_or_create_secret(&data_dir.join("pseudonym.key"))?,
    };
    let store = Arc::new(store);
    let keyring = keyring_from_settings(settings, store.clone()).context("opening the keyring")?;
    let report = reapply_tombstones(store.as_ref(), &keyring, "system:start")
        .await
        .context("re-applying journaled tombstones")?;
    if report.keys_destroyed > 0 {
        tracing::warn!(
            keys_destroyed = report.keys_destroyed,
            "destroyed keys of erased subjects found alive in a restored database"
        );
    }
    // Webhook secrets written before they were sealed, or sealed under a previous KEK, are
    // sealed under the current one.
    let sealing = lethe_core::webhooks::reseal_secrets(store.as_ref(), &keyring)
        .await
        .context("sealing webhook secrets under the KEK")?;
    if sealing.resealed > 0 {
        tracing::info!(
            resealed = sealing.resealed,
            "webhook secrets sealed under the current KEK"
        );
    }
    for failure in &sealing.failed {
        tracing::warn!(endpoint = %failure, "a webhook secret does not open with the configured KEKs; its deliveries fail until the endpoint is registered again");
    }
    let audit = AuditCheckpoints::from_settings(settings)
        .context("opening the audit signing key and checkpoint sink (audit.*)")?;
    let mailer =
        crate::mail::Mailer::from_settings(settings).context("setting up outgoing mail")?;
    Ok(AppState {
        mailer: Arc::new(mailer),
        audit: Arc::new(audit),
        keyring: Arc::new(keyring),
        store,
        tokens: TokenKeys::new(&jwt_secret, settings.auth.access_token_ttl_s),
        issuers,
        pseudonyms: Pseudonymizer::new(pseudonym_key),
        throttle: AuthThrottle::new(&settings.auth),
        settings: settings.clone(),
    })
}
