//! The command line: serve, demo, account and audit commands, OpenAPI output.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lethe_core::audit::{
    AuditEntry, ExportScope, NewAuditEntry, PublicKeys, parse_checkpoints, verify_document,
    verify_entries, verify_with_checkpoints,
};
use lethe_core::config::Settings;
use lethe_core::domain::{Email, Role};
use lethe_core::store::NewUser;
use serde_json::json;

use crate::startup::Application;
use crate::state::open_state;

/// Lethe: GDPR data subject requests over Parquet data lakes.
#[derive(Debug, Parser)]
#[command(name = "lethe-service", version, about)]
pub struct Args {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (and, when `worker.in_process` is true, run the worker).
    Serve,
    /// Quick start: generate and register a demo lake and demo accounts on first start, print
    /// credentials and example calls, then serve.
    Demo {
        /// Subjects in the generated demo lake.
        #[arg(long, default_value_t = 2000)]
        subjects: usize,
        /// Days of events in the demo lake.
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// Manage accounts.
    User {
        /// Account command.
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API tokens of pipelines (the producer role).
    Token {
        /// Token command.
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Audit log tools.
    Audit {
        /// Audit command.
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Key management (crypto-shredding).
    Keys {
        /// Key command.
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print the OpenAPI document (JSON) to stdout.
    Openapi,
    /// Secrets of a deployment.
    Secrets {
        /// Secrets command.
        #[command(subcommand)]
        command: SecretsCommand,
    },
}

/// Secrets commands.
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Write a `.env` file (mode 0600) with fresh random values for every secret
    /// `docker-compose.yml` requires: the database and MinIO passwords, the JWT secret, the
    /// pseudonym key, the KEK and the subject key. Never overwrites an existing file.
    Generate {
        /// Where to write it.
        #[arg(long, default_value = ".env")]
        output: PathBuf,
    },
}

/// Key commands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-wrap every subject's data key under a new key encryption key (KEK); the lake is not
    /// touched. The new KEK is read from (or generated into) `--new-kek-file`; afterwards
    /// point `crypto.kek_file` (or `LETHE__CRYPTO__KEK`) at it on every replica.
    RotateKek {
        /// File holding the new KEK (one line of base64; created with mode 0600 if missing).
        #[arg(long)]
        new_kek_file: PathBuf,
    },
}

/// Account commands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account; the first admin and auditor are created this way.
    Create {
        /// Login e-mail.
        #[arg(long)]
        email: String,
        /// Role: admin, auditor or subject (producers are API tokens: `token create`).
        #[arg(long)]
        role: String,
        /// Read the password from stdin instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
}

/// API token commands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a producer token for a pipeline and print it, once: only its hash is kept.
    Create {
        /// What the token is for, e.g. the pipeline's name.
        #[arg(long)]
        name: String,
        /// Id of a dataset the token may ingest into (repeat for several).
        #[arg(long = "dataset")]
        datasets: Vec<String>,
        /// Let the token read the list of restricted subjects (GDPR Art. 18).
        #[arg(long)]
        list_restricted: bool,
    },
}

/// Audit commands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain: of the database (default, also against the external
    /// checkpoints) or of an exported JSON Lines file (offline; with `--checkpoints` and
    /// `--public-key`, against the signed checkpoints). Exit code 0 when intact, 1 when broken
    /// (the first bad entry is named).
    Verify {
        /// An export from `GET /v1/audit/export` to verify offline.
        #[arg(long)]
        file: Option<PathBuf>,
        /// The signed checkpoints (`GET /v1/audit/checkpoints`, downloaded after the export).
        #[arg(long, requires = "file", requires = "public_key")]
        checkpoints: Option<PathBuf>,
        /// The public keys (`GET /v1/audit/public-keys`, or one base64 key per line).
        #[arg(long, requires = "checkpoints")]
        public_key: Option<PathBuf>,
        /// The export is a slice (a time range or other filter), not the whole log: verify it
        /// against the checkpoints it spans, without requiring entries up to the last one.
        #[arg(long, requires = "checkpoints", conflicts_with = "strict")]
        range: bool,
        /// A whole-log export must end exactly at the last checkpoint: nothing unsigned (true of
        /// `GET /v1/audit/export` when the checkpoints are downloaded right after it).
        #[arg(long, requires = "checkpoints")]
        strict: bool,
    },
    /// Print the audit public keys (JSON, as `GET /v1/audit/public-keys`) from the configured
    /// signing key and `audit.previous_public_keys`, without the database: hand them to
    /// auditors through a channel other than the API.
    PublicKeys,
    /// Verify a signed erasure certificate (`GET /v1/requests/{id}/certificate`) offline.
    /// Exit code 0 when the signature holds, 1 when not.
    VerifyCertificate {
        /// The certificate (JSON).
        #[arg(long)]
        file: PathBuf,
        /// The public keys (`GET /v1/audit/public-keys`, or one base64 key per line).
        #[arg(long)]
        public_key: PathBuf,
    },
}

/// Runs a parsed command line and returns the process exit code.
pub async fn run(args: Args) -> ExitCode {
    // Needs no configuration, so that it works before any secret is set.
    if let Some(Command::Secrets {
        command: SecretsCommand::Generate { output },
    }) = &args.command
    {
        return match crate::secrets::generate(output) {
            Ok(()) => {
                eprintln!(
                    "wrote fresh secrets to {} (mode 0600); back it up, and keep it out of version control",
                    output.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init(&settings.log.format, &settings.log.filter);
    let result = match args.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Demo { subjects, days } => demo(settings, subjects, days).await,
        Command::User {
            command:
                UserCommand::Create {
                    email,
                    role,
                    password_stdin,
                },
        } => create_user(settings, email, role, password_stdin).await,
        Command::Token {
            command:
                TokenCommand::Create {
                    name,
                    datasets,
                    list_restricted,
                },
        } => {
            let scope = lethe_core::store::TokenScope {
                datasets,
                list_restricted,
            };
            create_token(settings, name, scope).await
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    file,
                    checkpoints,
                    public_key,
                    range,
                    strict,
                },
        } => audit_verify(settings, file, checkpoints, public_key, range, strict).await,
        Command::Audit {
            command: AuditCommand::VerifyCertificate { file, public_key },
        } => verify_certificate(file, public_key),
        Command::Audit {
            command: AuditCommand::PublicKeys,
        } => print_public_keys(&settings),
        Command::Keys {
            command: KeysCommand::RotateKek { new_kek_file },
        } => rotate_kek(settings, new_kek_file).await,
        Command::Openapi => {
            println!("{}", crate::openapi::openapi_json());
            Ok(ExitCode::SUCCESS)
        }
        Command::Secrets { .. } => unreachable!("handled before the settings are loaded"),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

async fn serve(settings: Settings) -> anyhow::Result<ExitCode> {
    let app = Application::build(settings).await?;
    tracing::info!(port = app.port(), "listening");
    app.run_until_stopped().await?;
    Ok(ExitCode::SUCCESS)
}

async fn demo(settings: Settings, subjects: usize, days: u32) -> anyhow::Result<ExitCode> {
    let app = Application::build(settings.clone()).await?;
    let state = app.state();
    let demo = crate::demo::ensure_demo(&state, subjects, days).await?;
    let base = format!("http://{}:{}", settings.server.host, app.port());
    // The walk-through names this binary by its absolute path, so it runs from any folder.
    let binary = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .unwrap_or_else(|_| std::path::PathBuf::from("lethe-service"));
    println!("{}", crate::demo::instructions(&demo, &base, &binary));
    app.run_until_stopped().await?;
    Ok(ExitCode::SUCCESS)
}

async fn create_user(
    settings: Settings,
    email: String,
    role: String,
    password_stdin: bool,
) -> anyhow::Result<ExitCode> {
    let email = Email::parse(email)?;
    let role = Role::parse(&role)?;
    if !role.is_account_role() {
        anyhow::bail!(
            "accounts cannot have the role {}: it belongs to API tokens of pipelines; create one with `lethe-service token create --name <name>`",
            role.as_str()
        );
    }
    let state = open_state(&settings).await?;
    let (password, generated) = if password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the password from stdin")?;
        (text.trim_end_matches(['\r', '\n']).to_string(), false)
    } else {
        (crate::demo::random_password(), true)
    };
    let password_hash = crate::auth::hash_password(password.clone()).await?;
    let audit =
        NewAuditEntry::new("system:cli", "account.created").details(json!({ "role": role }));
    let user = state
        .store
        .create_user(
            NewUser {
                email,
                password_hash,
                role,
            },
            audit,
        )
        .await?;
    println!(
        "created {} account {} ({})",
        role.as_str(),
        user.email,
        user.id
    );
    if generated {
        println!("password: {password}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Creates a producer token named `name` with `scope` and prints it, once.
///
/// # Errors
/// When the name or a dataset id is invalid or the store fails.
async fn create_token(
    settings: Settings,
    name: String,
    scope: lethe_core::store::TokenScope,
) -> anyhow::Result<ExitCode> {
    let state = open_state(&settings).await?;
    let (token, secret) =
        crate::routes::tokens::issue(state.store.as_ref(), &name, scope, "system:cli").await?;
    println!("created producer token {} ({})", token.name, token.id);
    println!("token: {}", secret.expose());
    eprintln!(
        "store the token in the pipeline's secret store now: it cannot be shown again (revoke it with DELETE /v1/tokens/{})",
        token.id
    );
    Ok(ExitCode::SUCCESS)
}

/// Re-wraps every data key, the key of every sealed export and every webhook secret under the
/// KEK in `new_kek_file` and prints the report (JSON).
///
/// # Errors
/// When the current or new KEK cannot be loaded, or the key store fails.
pub async fn rotate_kek(settings: Settings, new_kek_file: PathBuf) -> anyhow::Result<ExitCode> {
    let state = open_state(&settings).await?;
    let new = lethe_core::keyring::Kek::load_or_create(&new_kek_file)
        .with_context(|| format!("loading the new KEK from {}", new_kek_file.display()))?;
    let old_id = state.keyring.kek_id();
    let report = state
        .keyring
        .rotate_kek(new)
        .await
        .context("rotating the KEK")?;
    // The keys of sealed exports live in the archives' headers, not in the key store: re-wrap
    // them with a keyring holding the new KEK as current and the old one to unwrap.
    let exports_url = settings.storage.exports_location();
    let rewrapping = lethe_core::keyring::Keyring::new(
        lethe_core::keyring::Kek::load_or_create(&new_kek_file)
            .with_context(|| format!("loading the new KEK from {}", new_kek_file.display()))?,
        // Blob keys only: no data key is read or written through this keyring.
        std::sync::Arc::new(lethe_core::keyring::MemoryKeyStore::new()),
        lethe_core::keyring::subject_hasher_from_settings(&settings)?,
    )
    .with_previous_kek(lethe_core::keyring::kek_from_settings(&settings)?);
    let exports = lethe_core::exports::rewrap_exports(&rewrapping, &exports_url)
        .await
        .with_context(|| format!("re-wrapping the keys of the exports in {exports_url}"))?;
    let webhook_secrets = lethe_core::webhooks::reseal_secrets(state.store.as_ref(), &rewrapping)
        .await
        .context("re-sealing the webhook secrets")?;
    state
        .store
        .append_audit(
            NewAuditEntry::new("system:cli", "keys.kek_rotated").details(json!({
                "old_kek_id": old_id,
                "new_kek_id": report.new_kek_id,
                "rewrapped": report.rewrapped,
                "exports_rewrapped": exports.rewrapped,
                "exports_failed": exports.failed.len(),
                "webhook_secrets_resealed": webhook_secrets.resealed,
                "webhook_secrets_failed": webhook_secrets.failed.len(),
            })),
        )
        .await?;
    println!(
        "{}",
        serde_json::to_string_pretty(
            &json!({ "keys": report, "exports": exports, "webhook_secrets": webhook_secrets })
        )?
    );
    if !exports.failed.is_empty() {
        eprintln!(
            "{} export(s) could not be re-wrapped and still need the old KEK until they expire: {}",
            exports.failed.len(),
            exports.failed.join("; ")
        );
        return Ok(ExitCode::from(1));
    }
    if !webhook_secrets.failed.is_empty() {
        eprintln!(
            "{} webhook secret(s) could not be re-sealed (register those endpoints again): {}",
            webhook_secrets.failed.len(),
            webhook_secrets.failed.join("; ")
        );
        return Ok(ExitCode::from(1));
    }
    eprintln!(
        "every data key, {} export(s) and every webhook secret are now wrapped by KEK {}; set crypto.kek_file = {} (or LETHE__CRYPTO__KEK) on every replica, then retire the old KEK",
        exports.rewrapped,
        report.new_kek_id,
        new_kek_file.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn read_text(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

async fn audit_verify(
    settings: Settings,
    file: Option<PathBuf>,
    checkpoints: Option<PathBuf>,
    public_key: Option<PathBuf>,
    range: bool,
    strict: bool,
) -> anyhow::Result<ExitCode> {
    let report = match file {
        Some(path) => {
            let text = read_text(&path)?;
            let mut entries = Vec::new();
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let entry: AuditEntry = serde_json::from_str(line).with_context(|| {
                    format!("{} line {}: not an audit entry", path.display(), i + 1)
                })?;
                entries.push(entry);
            }
            match (checkpoints, public_key) {
                (Some(checkpoints), Some(public_key)) => {
                    let checkpoints = parse_checkpoints(&read_text(&checkpoints)?)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", checkpoints.display()))?;
                    let keys = PublicKeys::parse(&read_text(&public_key)?)
                        .with_context(|| public_key.display().to_string())?;
                    let scope = match (range, strict) {
                        (true, _) => ExportScope::Range,
                        (false, true) => ExportScope::WholeAnchored,
                        (false, false) => ExportScope::Whole,
                    };
                    let last = entries.last().map_or(0, |e| e.seq);
                    let report = verify_with_checkpoints(entries, &checkpoints, &keys, scope);
                    let anchored = report.anchored_through_seq.unwrap_or(0);
                    if report.is_intact() && last > anchored {
                        eprintln!(
                            "warning: entries {}..{last} come after the last signed checkpoint: no signature covers them (download the checkpoints after the export)",
                            anchored + 1
                        );
                    }
                    report
                }
                _ => {
                    eprintln!(
                        "warning: without --checkpoints and --public-key only the links between entries are checked; a cut-off tail or a rewritten chain cannot be detected"
                    );
                    verify_entries(entries, None)
                }
            }
        }
        None => {
            let state = open_state(&settings).await?;
            state.audit.verify_store(state.store.as_ref()).await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(match &report.problem {
        None => {
            eprintln!("audit chain intact: {} entries", report.entries_checked);
            ExitCode::SUCCESS
        }
        Some(p) => {
            eprintln!("audit chain BROKEN at entry {}: {}", p.seq, p.detail);
            ExitCode::from(1)
        }
    })
}

/// Verifies a signed erasure certificate against the public keys.
fn verify_certificate(file: PathBuf, public_key: PathBuf) -> anyhow::Result<ExitCode> {
    let document: serde_json::Value = serde_json::from_str(&read_text(&file)?)
        .with_context(|| format!("{}: not JSON", file.display()))?;
    let keys = PublicKeys::parse(&read_text(&public_key)?)
        .with_context(|| public_key.display().to_string())?;
    Ok(match verify_document(&document, &keys) {
        Ok(()) => {
            eprintln!("certificate signature valid");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("certificate INVALID: {e}");
            ExitCode::from(1)
        }
    })
}

/// Prints the audit public keys of the configured signing key (generated if missing).
fn print_public_keys(settings: &Settings) -> anyhow::Result<ExitCode> {
    let audit = crate::checkpoints::AuditCheckpoints::from_settings(settings)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({ "keys": audit.public_keys().list() }))?
    );
    Ok(ExitCode::SUCCESS)
}
