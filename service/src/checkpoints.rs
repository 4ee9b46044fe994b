//! Signed checkpoints of the audit log, made by the service and kept outside the database.
//!
//! [`AuditCheckpoints::run_until_stopped`] signs the chain's head every
//! `audit.checkpoint_every_entries` entries or `audit.checkpoint_every_s` seconds (whichever
//! comes first, and only when entries were appended) and writes the checkpoint to the sink
//! (`audit.checkpoint_url`). Before signing, it checks that the new entries link to the last
//! checkpoint, so a chain changed behind Lethe's back is never signed.
//!
//! [`AuditCheckpoints::compare`] (at start and at every verification) holds the database
//! against the sink: a database behind the last external checkpoint (restored from an older
//! backup) or one whose entry differs from what a checkpoint signed is reported four ways —
//! an audit entry `audit.checkpoint_mismatch`, the gauge `lethe_audit_checkpoint_mismatch`,
//! `"audit_checkpoints"` in `/readyz`, and an error log line — and checkpointing stops until
//! an operator looks.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use lethe_core::audit::{
    AuditEntry, AuditSigner, Checkpoint, CheckpointSink, CheckpointSinkOptions, ExportScope,
    GENESIS_HASH, NewAuditEntry, ProblemKind, PublicKeys, SinkError, VerifyReport,
    verify_checkpoints, verify_entries, verify_with_checkpoints,
};
use lethe_core::config::Settings;
use lethe_core::store::{AuditFilter, Store};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;

/// How the database's chain compares with the checkpoints in the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SinkState {
    /// Not compared yet.
    Unknown,
    /// Every checkpoint compared matches the database.
    Consistent,
    /// The database ends before the last external checkpoint: restored from an older backup,
    /// or its tail was removed.
    Behind,
    /// An entry differs from what a checkpoint signed, or the checkpoints themselves do not
    /// verify.
    Diverged,
    /// The sink could not be read.
    Unavailable,
}

impl SinkState {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkState::Unknown => "unknown",
            SinkState::Consistent => "consistent",
            SinkState::Behind => "behind",
            SinkState::Diverged => "diverged",
            SinkState::Unavailable => "unavailable",
        }
    }

    /// Whether this is a finding about the log's integrity (not a transient state).
    pub fn is_mismatch(self) -> bool {
        matches!(self, SinkState::Behind | SinkState::Diverged)
    }
}

/// The outcome of one comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SinkComparison {
    /// The verdict.
    pub state: SinkState,
    /// A sentence for the operator.
    pub detail: String,
    /// The last checkpoint in the sink (its `n` and `seq`), if any.
    pub last_checkpoint: Option<(i64, i64)>,
    /// The database's recorded head sequence number.
    pub database_head_seq: i64,
}

/// The last checkpoint this process knows of and when it was made.
struct Last {
    checkpoint: Option<Checkpoint>,
    made: Instant,
    loaded: bool,
}

/// The signer, the sink and the checkpointing policy of one service process.
pub struct AuditCheckpoints {
    signer: AuditSigner,
    keys: PublicKeys,
    sink: CheckpointSink,
    every_entries: i64,
    every: Duration,
    last: tokio::sync::Mutex<Last>,
    state: Mutex<SinkComparison>,
}

impl AuditCheckpoints {
    /// The signing key (`audit.signing_key`, else the key file, generated when missing), the
    /// public keys (current and `audit.previous_public_keys`) and the sink.
    ///
    /// # Errors
    /// When a key is invalid, the key file cannot be read or created, or the sink is not
    /// usable.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let audit = &settings.audit;
        let signer = match &audit.signing_key {
            Some(key) => AuditSigner::from_base64(key.expose_secret())
                .context("reading audit.signing_key")?,
            None => {
                AuditSigner::load_or_create(&audit.signing_key_path(&settings.storage.data_dir))?
            }
        };
        let keys = PublicKeys::new(&signer, &audit.previous_public_keys)
            .context("reading audit.previous_public_keys")?;
        let sink = CheckpointSink::open_with(
            &audit.checkpoint_location(&settings.storage.data_dir),
            &CheckpointSinkOptions {
                retention_days: audit.checkpoint_retention_days,
                ..CheckpointSinkOptions::default()
            },
        )?;
        Ok(Self {
            signer,
            keys,
            sink,
            every_entries: audit.checkpoint_every_entries.max(1) as i64,
            every: Duration::from_secs(audit.checkpoint_every_s.max(1)),
            last: tokio::sync::Mutex::new(Last {
                checkpoint: None,
                made: Instant::now(),
                loaded: false,
            }),
            state: Mutex::new(SinkComparison {
                state: SinkState::Unknown,
                detail: "not compared yet".into(),
                last_checkpoint: None,
                database_head_seq: 0,
            }),
        })
    }

    /// The key that signs checkpoints and erasure certificates.
    pub fn signer(&self) -> &AuditSigner {
        &self.signer
    }

    /// The public keys that verify them.
    pub fn public_keys(&self) -> &PublicKeys {
        &self.keys
    }

    /// The last comparison with the sink.
    pub fn comparison(&self) -> SinkComparison {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every checkpoint in the sink, in order.
    ///
    /// # Errors
    /// When the sink cannot be read.
    pub async fn checkpoints(&self) -> Result<Vec<Checkpoint>, SinkError> {
        self.sink.list().await
    }

    /// Makes a checkpoint when one is due.
    ///
    /// # Errors
    /// Store or sink failures.
    pub async fn tick(&self, store: &Store) -> anyhow::Result<Option<Checkpoint>> {
        self.checkpoint(store, false).await
    }

    /// Signs the current head now (unless the last checkpoint already signs it) and returns
    /// the last checkpoint; `None` when the log is empty. Used before a whole-log export, so
    /// that the export ends at a checkpoint.
    ///
    /// # Errors
    /// Store or sink failures, or a database that no longer matches the checkpoints.
    pub async fn checkpoint_now(&self, store: &Store) -> anyhow::Result<Option<Checkpoint>> {
        self.checkpoint(store, true).await
    }

    async fn checkpoint(&self, store: &Store, force: bool) -> anyhow::Result<Option<Checkpoint>> {
        if self.comparison().state.is_mismatch() {
            anyhow::bail!(
                "the audit log does not match its external checkpoints; no checkpoint is made until this is resolved"
            );
        }
        let mut last = self.last.lock().await;
        if !last.loaded {
            let checkpoints = self.sink.list().await?;
            last.checkpoint = checkpoints.last().cloned();
            last.loaded = true;
        }
        let (head_seq, _) = store.audit_head().await?;
        let last_seq = last.checkpoint.as_ref().map_or(0, |c| c.seq);
        if head_seq <= last_seq {
            return Ok(last.checkpoint.clone());
        }
        let due =
            force || head_seq - last_seq >= self.every_entries || last.made.elapsed() >= self.every;
        if !due {
            return Ok(None);
        }
        // The new entries must link to what the last checkpoint signed.
        let (mut prev_seq, mut prev_hash) = last
            .checkpoint
            .as_ref()
            .map_or((0, GENESIS_HASH.to_string()), |c| {
                (c.seq, c.entry_hash.clone())
            });
        let mut newest: Option<AuditEntry> = None;
        // Small pages: each read holds a pooled connection only briefly, so requests being
        // served at the same time do not wait for one.
        let mut filter = AuditFilter {
            after_seq: Some(prev_seq),
            until_seq: Some(head_seq),
            limit: Some(250),
            ..Default::default()
        };
        loop {
            let page = store.audit_entries(&filter).await?;
            let Some(tail) = page.last() else { break };
            filter.after_seq = Some(tail.seq);
            let report = verify_chain_from(&page, prev_seq, &prev_hash);
            if let Some(problem) = report {
                let comparison = SinkComparison {
                    state: SinkState::Diverged,
                    detail: format!(
                        "entries after the last checkpoint do not link to it: {problem}"
                    ),
                    last_checkpoint: last.checkpoint.as_ref().map(|c| (c.n, c.seq)),
                    database_head_seq: head_seq,
                };
                drop(last);
                self.record(store, comparison).await;
                anyhow::bail!("the audit log does not link to its last checkpoint");
            }
            prev_seq = tail.seq;
            prev_hash = tail.hash.clone();
            newest = page.into_iter().last();
        }
        let Some(newest) = newest else {
            return Ok(last.checkpoint.clone());
        };
        let checkpoint = Checkpoint::sign(
            &self.signer,
            last.checkpoint.as_ref(),
            newest.seq,
            &newest.hash,
            chrono::Utc::now(),
        );
        match self.sink.append(&checkpoint).await {
            Ok(()) => {
                tracing::debug!(
                    n = checkpoint.n,
                    seq = checkpoint.seq,
                    "audit checkpoint written"
                );
                last.checkpoint = Some(checkpoint.clone());
                last.made = Instant::now();
                Ok(Some(checkpoint))
            }
            Err(SinkError::AlreadyExists(n)) => {
                // Another replica made checkpoint n first: take its chain and try next time.
                tracing::debug!(n, "another process wrote this checkpoint first");
                last.loaded = false;
                drop(last);
                if force {
                    return Box::pin(self.checkpoint(store, true)).await;
                }
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Compares the database with the sink: the checkpoints' own chain and signatures, then
    /// the last checkpoint's entry against the database (cheap; done at start). A mismatch is
    /// recorded ([`AuditCheckpoints::record`]).
    pub async fn compare(&self, store: &Store) -> SinkComparison {
        let comparison = match self.compare_inner(store).await {
            Ok(c) => c,
            Err(e) => SinkComparison {
                state: SinkState::Unavailable,
                detail: format!("{e:#}"),
                last_checkpoint: None,
                database_head_seq: 0,
            },
        };
        self.record(store, comparison.clone()).await;
        comparison
    }

    async fn compare_inner(&self, store: &Store) -> anyhow::Result<SinkComparison> {
        let checkpoints = self.sink.list().await?;
        let (head_seq, _) = store.audit_head().await?;
        let last = checkpoints.last().map(|c| (c.n, c.seq));
        let verdict = |state, detail: String| SinkComparison {
            state,
            detail,
            last_checkpoint: last,
            database_head_seq: head_seq,
        };
        if let Err((n, detail)) = verify_checkpoints(&checkpoints, &self.keys) {
            return Ok(verdict(
                SinkState::Diverged,
                format!("checkpoint {n} in the sink does not verify: {detail}"),
            ));
        }
        let Some(cp) = checkpoints.last() else {
            return Ok(verdict(SinkState::Consistent, "no checkpoint yet".into()));
        };
        if head_seq < cp.seq {
            return Ok(verdict(
                SinkState::Behind,
                format!(
                    "the database's audit log ends at entry {head_seq} but checkpoint {} signed entry {}: the database was restored from an older copy or its tail was removed",
                    cp.n, cp.seq
                ),
            ));
        }
        let entry = store
            .audit_entries(&AuditFilter {
                after_seq: Some(cp.seq - 1),
                limit: Some(1),
                ..Default::default()
            })
            .await?
            .into_iter()
            .next();
        Ok(match entry {
            Some(e)
                if e.seq == cp.seq && e.hash == cp.entry_hash && e.computed_hash() == e.hash =>
            {
                verdict(
                    SinkState::Consistent,
                    format!("entry {} matches checkpoint {}", cp.seq, cp.n),
                )
            }
            Some(e) if e.seq == cp.seq => verdict(
                SinkState::Diverged,
                format!(
                    "entry {} differs from what checkpoint {} signed: the log was altered or rewritten",
                    cp.seq, cp.n
                ),
            ),
            _ => verdict(
                SinkState::Behind,
                format!(
                    "entry {} signed by checkpoint {} is missing from the database",
                    cp.seq, cp.n
                ),
            ),
        })
    }

    /// Verifies the whole chain in the database against its recorded head and every
    /// checkpoint in the sink (`GET /v1/audit/verify`, `lethe-service audit verify`), and
    /// records the outcome of the comparison.
    ///
    /// # Errors
    /// Store or sink failures.
    pub async fn verify_store(&self, store: &Store) -> anyhow::Result<VerifyReport> {
        let (head_seq, head_hash) = store.audit_head().await?;
        let mut entries = Vec::new();
        let mut filter = AuditFilter {
            limit: Some(10_000),
            ..Default::default()
        };
        loop {
            let page = store.audit_entries(&filter).await?;
            let Some(last) = page.last() else { break };
            filter.after_seq = Some(last.seq);
            entries.extend(page);
        }
        let checkpoints = self.sink.list().await?;
        let db_last = entries.last().map_or(0, |e| e.seq);
        let mut report = verify_entries(entries.clone(), Some((head_seq, head_hash.as_str())));
        let against =
            verify_with_checkpoints(entries, &checkpoints, &self.keys, ExportScope::Range);
        report.checkpoints_checked = against.checkpoints_checked;
        report.anchored_through_seq = against.anchored_through_seq;
        if report.problem.is_none() {
            report.problem = against.problem;
        }
        if report.problem.is_none()
            && let Some(cp) = checkpoints.last()
            && cp.seq > db_last
        {
            report.problem = Some(lethe_core::audit::ChainProblem {
                seq: db_last + 1,
                kind: ProblemKind::Missing,
                detail: format!(
                    "the database's audit log ends at entry {db_last} but checkpoint {} signed entry {}: entries {}..{} are missing (a restored older copy, or a removed tail)",
                    cp.n,
                    cp.seq,
                    db_last + 1,
                    cp.seq
                ),
            });
        }
        let last = checkpoints.last().map(|c| (c.n, c.seq));
        let comparison = match &report.problem {
            None => SinkComparison {
                state: SinkState::Consistent,
                detail: format!(
                    "{} entries verified against {} checkpoints",
                    report.entries_checked,
                    checkpoints.len()
                ),
                last_checkpoint: last,
                database_head_seq: head_seq,
            },
            Some(p) => SinkComparison {
                state: if p.kind == ProblemKind::Missing {
                    SinkState::Behind
                } else {
                    SinkState::Diverged
                },
                detail: p.detail.clone(),
                last_checkpoint: last,
                database_head_seq: head_seq,
            },
        };
        self.record(store, comparison).await;
        Ok(report)
    }

    /// Keeps `comparison` as the current state. A new mismatch is never ignored: it is logged
    /// as an error, appended to the audit log (`audit.checkpoint_mismatch`), and shows in the
    /// gauge and in `/readyz` until a later comparison is consistent.
    async fn record(&self, store: &Store, comparison: SinkComparison) {
        let previous = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *state, comparison.clone())
        };
        match comparison.state {
            SinkState::Behind | SinkState::Diverged => {
                tracing::error!(
                    state = comparison.state.as_str(),
                    detail = %comparison.detail,
                    sink = %self.sink.url(),
                    "AUDIT LOG DOES NOT MATCH ITS EXTERNAL SIGNED CHECKPOINTS"
                );
                if previous.state != comparison.state || previous.detail != comparison.detail {
                    let entry =
                        NewAuditEntry::new("system", "audit.checkpoint_mismatch").details(json!({
                            "state": comparison.state.as_str(),
                            "detail": comparison.detail,
                            "last_checkpoint_n": comparison.last_checkpoint.map(|c| c.0),
                            "last_checkpoint_seq": comparison.last_checkpoint.map(|c| c.1),
                            "database_head_seq": comparison.database_head_seq,
                        }));
                    if let Err(e) = store.append_audit(entry).await {
                        tracing::error!(error = %e, "could not audit the checkpoint mismatch");
                    }
                }
            }
            SinkState::Unavailable => {
                tracing::warn!(detail = %comparison.detail, "the audit checkpoint sink could not be read");
            }
            SinkState::Consistent | SinkState::Unknown => {}
        }
    }

    /// Makes due checkpoints until `stop` turns true, polling every second (or every
    /// `checkpoint_every_s`, if shorter).
    pub async fn run_until_stopped(
        self: std::sync::Arc<Self>,
        store: std::sync::Arc<Store>,
        mut stop: watch::Receiver<bool>,
    ) {
        let period = self.every.min(Duration::from_secs(1));
        // A sink that stays unreachable is logged when the error changes and once a minute,
        // not on every poll.
        let mut last_warning: Option<(String, Instant)> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                break;
            }
            if self.comparison().state.is_mismatch() {
                continue;
            }
            match self.tick(store.as_ref()).await {
                Ok(_) => last_warning = None,
                Err(e) => {
                    let error = format!("{e:#}");
                    let repeat = last_warning.as_ref().is_some_and(|(previous, at)| {
                        *previous == error && at.elapsed() < Duration::from_secs(60)
                    });
                    if !repeat {
                        tracing::warn!(%error, "making an audit checkpoint failed");
                        last_warning = Some((error, Instant::now()));
                    }
                }
            }
        }
        // A last checkpoint of what was appended, so a clean stop leaves nothing unsigned.
        if !self.comparison().state.is_mismatch()
            && let Err(e) = self.checkpoint_now(store.as_ref()).await
        {
            tracing::warn!(error = %format!("{e:#}"), "the final audit checkpoint failed");
        }
    }
}

/// The first broken link of `page` when it should continue the chain after
/// `(prev_seq, prev_hash)`.
fn verify_chain_from(page: &[AuditEntry], mut prev_seq: i64, prev_hash: &str) -> Option<String> {
    let mut prev_hash = prev_hash.to_string();
    for e in page {
        if e.seq != prev_seq + 1 {
            return Some(format!("entry {} follows entry {prev_seq}", e.seq));
        }
        if e.prev_hash != prev_hash {
            return Some(format!("entry {} does not link to entry {prev_seq}", e.seq));
        }
        if e.computed_hash() != e.hash {
            return Some(format!("entry {} was altered", e.seq));
        }
        prev_seq = e.seq;
        prev_hash = e.hash.clone();
    }
    None
}
