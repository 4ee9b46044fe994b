//! `lethe-worker run`: claim and execute jobs from the database queue until stopped, and send
//! webhook deliveries from the outbox beside them.
//!
//! Configuration is the service's (`lethe.toml`, `LETHE__…`): `database.url`, `worker.*`,
//! `webhooks.*`, `storage.exports_dir`, `log.*`. Several workers may run against one PostgreSQL
//! database; each claims with a lease and heartbeats, and a worker that dies is taken over when
//! its lease expires. SIGTERM or Ctrl-C stops claiming; the job in hand (and the webhook pass in
//! hand) is finished first.

use std::sync::Arc;

use anyhow::Context;
use lethe_core::config::Settings;
use lethe_core::jobs::{Worker, WorkerConfig};
use lethe_core::keyring::keyring_from_settings;
use lethe_core::requests::reapply_tombstones;
use lethe_core::store::Store;
use lethe_core::webhooks::{Dispatcher, DispatcherConfig};
use tokio::sync::watch;

use super::CommandError;
use crate::args::RunArgs;
use crate::output::{Exit, Output};

/// Runs the worker loop and the webhook dispatcher until a stop signal (or, with
/// `--until-idle`, until the queue is empty and every due webhook was attempted once).
///
/// # Errors
/// [`CommandError::Usage`] for bad configuration; [`CommandError::Failed`] when the database
/// cannot be reached.
pub fn run(args: &RunArgs, output: &mut Output<'_>) -> Result<Exit, CommandError> {
    let settings = Settings::load().map_err(|e| CommandError::Usage(e.into()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(CommandError::Failed)?;
    runtime.block_on(async {
        let store = Store::connect(&settings.database.url, settings.database.max_connections)
            .await
            .context("opening the database")
            .map_err(CommandError::Failed)?;
        let store = Arc::new(store);
        let keyring = keyring_from_settings(&settings, store.clone())
            .context("opening the keyring (crypto.kek / crypto.kek_file)")
            .map_err(CommandError::Usage)?;
        reapply_tombstones(store.as_ref(), &keyring, "system:worker-start")
            .await
            .context("re-applying journaled tombstones")
            .map_err(CommandError::Failed)?;
        let store: Arc<Store> = store;
        if let Some(addr) = args
            .metrics_addr
            .as_ref()
            .or(settings.worker.metrics_addr.as_ref())
        {
            serve_metrics(addr)?;
            let _ = writeln!(output.err, "metrics at http://{addr}/metrics");
        }
        let config = WorkerConfig::from_settings(&settings);
        let _ = writeln!(output.err, "worker {} started", config.worker_id);
        let keyring = Arc::new(keyring);
        let dispatcher = Dispatcher::new(
            store.clone(),
            keyring.clone(),
            DispatcherConfig::from_settings(&settings),
        )
        .context("building the webhook HTTP client")
        .map_err(CommandError::Failed)?;
        let worker = Worker::new(store, config).with_keyring(keyring);
        if args.until_idle {
            while worker
                .try_execute_job()
                .await
                .context("polling the queue")
                .map_err(CommandError::Failed)?
                .is_some()
            {}
            // Failed attempts are rescheduled into the future, so this ends.
            while dispatcher
                .dispatch_due()
                .await
                .context("polling the webhook outbox")
                .map_err(CommandError::Failed)?
                > 0
            {}
            return Ok(Exit::Success);
        }
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_stop_signal().await;
            tracing::info!("stop signal received; finishing the job in hand");
            let _ = tx.send(true);
        });
        let dispatching = tokio::spawn(dispatcher.run_until_stopped(rx.clone()));
        worker.run_until_stopped(rx).await;
        let _ = dispatching.await;
        Ok(Exit::Success)
    })
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Installs the Prometheus recorder with its HTTP listener on `addr` (it answers every path;
/// scrape `/metrics`). Must run inside the runtime.
fn serve_metrics(addr: &str) -> Result<(), CommandError> {
    let socket: std::net::SocketAddr = addr
        .parse()
        .with_context(|| format!("worker.metrics_addr / --metrics-addr {addr:?}: expected host:port, e.g. 0.0.0.0:9464"))
        .map_err(CommandError::Usage)?;
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(socket)
        .install()
        .with_context(|| format!("serving metrics at {addr}"))
        .map_err(CommandError::Failed)?;
    lethe_core::process_metrics::describe();
    Ok(())
}
