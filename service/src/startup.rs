//! Wiring: state, routes and the HTTP server, built once and run until stopped.
//!
//! Tests call [`Application::build`] with port 0 and talk to the real server.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use lethe_core::config::Settings;
use lethe_core::jobs::{Worker, WorkerConfig};
use lethe_core::webhooks::{Dispatcher, DispatcherConfig};
use tokio::sync::watch;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::problem_response;
use crate::metrics::Metrics;
use crate::routes;
use crate::state::{AppState, open_state};
use crate::{metrics, telemetry};

/// A built, bound, not yet running service (and its in-process worker and webhook dispatcher,
/// if enabled).
pub struct Application {
    port: u16,
    server: Server,
    worker: Option<(Worker, watch::Sender<bool>, watch::Receiver<bool>)>,
    dispatcher: Option<Dispatcher>,
    state: web::Data<AppState>,
    metrics: web::Data<Metrics>,
}

impl Application {
    /// Opens the store, binds the listener (port 0 picks a free one) and prepares the worker.
    ///
    /// # Errors
    /// When the store cannot be opened or the port cannot be bound.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let state = web::Data::new(open_state(&settings).await?);
        // A database restored from an older copy, or a log rewritten while Lethe was down,
        // is reported before the first request is served.
        let comparison = state.audit.compare(state.store.as_ref()).await;
        tracing::info!(
            state = comparison.state.as_str(),
            detail = %comparison.detail,
            "audit log compared with its external checkpoints"
        );
        let prefetch = state.clone();
        tokio::spawn(async move { prefetch.issuers.prefetch().await });
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&address).with_context(|| format!("binding {address}"))?;
        let port = listener.local_addr()?.port();
        let metrics = web::Data::new(Metrics::new());
        let server = run(listener, state.clone(), metrics.clone())?;
        let worker = settings.worker.in_process.then(|| {
            let (tx, rx) = watch::channel(false);
            (
                Worker::new(state.store.clone(), WorkerConfig::from_settings(&settings))
                    .with_keyring(state.keyring.clone()),
                tx,
                rx,
            )
        });
        let dispatcher = if settings.worker.in_process {
            let config = DispatcherConfig::from_settings(&settings);
            let dispatcher = Dispatcher::new(state.store.clone(), state.keyring.clone(), config)
                .context("building the webhook HTTP client")?;
            Some(dispatcher)
        } else {
            None
        };
        Ok(Self {
            port,
            server,
            worker,
            dispatcher,
            state,
            metrics,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state (store, keys), e.g. to seed accounts before serving.
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until the server stops (SIGINT/SIGTERM), then stops the worker after its
    /// current job and the webhook dispatcher after its current pass.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let dispatcher = self.dispatcher;
        let worker_task = self.worker.map(|(worker, tx, rx)| {
            let dispatching = dispatcher.map(|d| tokio::spawn(d.run_until_stopped(rx.clone())));
            (tokio::spawn(worker.run_until_stopped(rx)), dispatching, tx)
        });
        let metrics = self.metrics.clone();
        let upkeep = tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                every.tick().await;
                metrics.run_upkeep();
            }
        });
        let (stop_checkpoints, stopped) = watch::channel(false);
        let checkpointing = tokio::spawn(
            self.state
                .audit
                .clone()
                .run_until_stopped(self.state.store.clone(), stopped),
        );
        let served = self.server.await;
        upkeep.abort();
        let _ = stop_checkpoints.send(true);
        let _ = checkpointing.await;
        if let Some((task, dispatching, tx)) = worker_task {
            let _ = tx.send(true);
            let _ = task.await;
            if let Some(dispatching) = dispatching {
                let _ = dispatching.await;
            }
        }
        served.context("HTTP server failed")
    }
}

fn run(
    listener: TcpListener,
    state: web::Data<AppState>,
    metrics: web::Data<Metrics>,
) -> anyhow::Result<Server> {
    let max_body = state.settings.server.max_body_bytes;
    let body_timeout = std::time::Duration::from_secs(state.settings.server.body_timeout_s.max(1));
    let cors_origins = Arc::new(
        state
            .settings
            .server
            .cors_allowed_origins
            .clone()
            .unwrap_or_default(),
    );
    let server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(move |req, next| {
                crate::guards::body_deadline(body_timeout, req, next)
            }))
            .wrap(actix_web::middleware::from_fn({
                let origins = cors_origins.clone();
                move |req, next| crate::guards::cors(origins.clone(), req, next)
            }))
            .wrap(actix_web::middleware::from_fn(
                crate::guards::security_headers,
            ))
            .wrap(actix_web::middleware::from_fn(telemetry::trace_request))
            .app_data(state.clone())
            .app_data(metrics.clone())
            .app_data(json_config(max_body))
            .app_data(query_config())
            .app_data(path_config())
            .configure(routes::configure)
            .service(metrics::metrics_endpoint)
            .service(
                SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", crate::openapi::document()),
            )
            // The printed link has no trailing slash; the UI's relative assets need one.
            .route(
                "/docs",
                web::get().to(|| async {
                    actix_web::HttpResponse::PermanentRedirect()
                        .insert_header((actix_web::http::header::LOCATION, "/docs/"))
                        .finish()
                }),
            )
            .default_service(web::to(crate::guards::no_route))
    })
    .listen(listener)?
    .shutdown_timeout(30)
    .run();
    Ok(server)
}

fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|err, _req| {
            let (status, code) = match &err {
                actix_web::error::JsonPayloadError::Overflow { .. }
                | actix_web::error::JsonPayloadError::OverflowKnownLength { .. } => {
                    (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
                }
                actix_web::error::JsonPayloadError::ContentType => {
                    (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
                }
                actix_web::error::JsonPayloadError::Payload(e)
                    if crate::guards::is_body_timeout(e) =>
                {
                    (StatusCode::REQUEST_TIMEOUT, "request_timeout")
                }
                _ => (StatusCode::BAD_REQUEST, "malformed_json"),
            };
            let detail = err.to_string();
            actix_web::error::InternalError::from_response(
                err,
                problem_response(status, code, detail),
            )
            .into()
        })
}

fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        let detail = format!("invalid query string: {err}");
        actix_web::error::InternalError::from_response(
            err,
            problem_response(StatusCode::BAD_REQUEST, "validation", detail),
        )
        .into()
    })
}

fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, _req| {
        let detail = format!("invalid path: {err}");
        actix_web::error::InternalError::from_response(
            err,
            problem_response(StatusCode::NOT_FOUND, "not_found", detail),
        )
        .into()
    })
}
