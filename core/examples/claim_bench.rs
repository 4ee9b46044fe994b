//! Job-queue throughput: how many jobs per second concurrent workers can claim and finish.
//!
//! ```sh
//! LETHE_BENCH_DATABASE_URL=postgres://user@host:port/postgres \
//!   cargo run --release -p lethe-core --example claim_bench
//! LETHE_BENCH_DATABASE_URL=sqlite: cargo run --release -p lethe-core --example claim_bench
//! ```
//!
//! PostgreSQL: creates a fresh database `lethe_bench_<uuid>` on that server (the user must be
//! allowed to create databases) and drops it afterwards (`BENCH_KEEP_DB=1` keeps it). SQLite:
//! a fresh file in a temporary folder (any `sqlite:` URL; its path is ignored). Then it enqueues
//! `BENCH_JOBS` (20000) `access` jobs without a request by batched `INSERT`s, and starts
//! `BENCH_CLAIMERS` (8) tokio tasks that each loop `claim_job` + `finish_job(Succeeded)` until the
//! queue is empty, over one pool of as many connections as claimers. It reports claims per
//! second (claim + finish), claim and finish latency percentiles, and checks that every job was
//! claimed exactly once (no job seen twice, every job `succeeded` with `attempts = 1`). The last
//! stdout line is a JSON summary. Exit code 1 when the check fails.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use lethe_core::domain::to_db;
use lethe_core::store::{JobFinish, JobOutcome, Store};
use secrecy::SecretString;
use serde_json::json;
use sqlx::{AnyPool, AssertSqlSafe, Row};

/// Rows per `INSERT` when enqueueing (9 binds each: well under SQLite's and PostgreSQL's limits).
const INSERT_BATCH: usize = 500;

fn env_usize(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v} is not a number")),
        Err(_) => Ok(default),
    }
}

/// The store under test plus what to clean up afterwards.
struct Target {
    store: Store,
    label: String,
    /// PostgreSQL: (maintenance URL, database name) to drop at the end.
    drop_db: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

async fn open(url: &str, pool_size: u32) -> anyhow::Result<Target> {
    if url.starts_with("sqlite:") {
        let dir = tempfile::tempdir().context("creating a temporary folder")?;
        let path = dir.path().join("claim_bench.db");
        let store = Store::connect(
            &SecretString::from(format!("sqlite://{}", path.display())),
            pool_size,
        )
        .await
        .context("opening SQLite")?;
        return Ok(Target {
            store,
            label: format!("sqlite ({}, WAL, synchronous=NORMAL)", path.display()),
            drop_db: None,
            _dir: Some(dir),
        });
    }
    if !(url.starts_with("postgres:") || url.starts_with("postgresql:")) {
        bail!("LETHE_BENCH_DATABASE_URL must start with postgres: or sqlite:");
    }
    let name = format!("lethe_bench_{}", uuid::Uuid::new_v4().simple());
    let admin = Store::connect_raw(url)
        .await
        .context("connecting to PostgreSQL")?;
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .context("creating the bench database")?;
    admin.close().await;
    let (prefix, _) = url
        .split('?')
        .next()
        .unwrap_or(url)
        .rsplit_once('/')
        .context("the PostgreSQL URL must end in /<database>")?;
    let store = Store::connect(&SecretString::from(format!("{prefix}/{name}")), pool_size)
        .await
        .context("opening the bench database")?;
    let version: String = sqlx::query("SELECT version()")
        .fetch_one(store.pool())
        .await?
        .try_get(0)?;
    let version = version.split(" on ").next().unwrap_or(&version).to_string();
    Ok(Target {
        store,
        label: format!("{version}, database {name}"),
        drop_db: Some((url.to_string(), name)),
        _dir: None,
    })
}

/// Inserts `n` queued `access` jobs without a request, due now, in batched multi-row INSERTs
/// inside one transaction.
async fn enqueue(pool: &AnyPool, n: usize) -> anyhow::Result<()> {
    let base = chrono::Utc::now() - chrono::Duration::seconds(60);
    let mut tx = pool.begin().await?;
    let mut i = 0;
    while i < n {
        let rows = INSERT_BATCH.min(n - i);
        let mut sql = String::from(
            "INSERT INTO jobs (id, kind, request_id, parent_id, payload, status, attempts, \
             max_attempts, run_at, created_at, updated_at) VALUES ",
        );
        for r in 0..rows {
            let p = r * 3;
            if r > 0 {
                sql.push(',');
            }
            // id, created_at (= run_at = updated_at), payload
            sql.push_str(&format!(
                "(${}, 'access', NULL, NULL, ${}, 'queued', 0, 5, ${}, ${}, ${})",
                p + 1,
                p + 3,
                p + 2,
                p + 2,
                p + 2
            ));
        }
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for k in i..i + rows {
            // Distinct creation instants, so the claim order is the insertion order.
            let at = base + chrono::Duration::microseconds(k as i64);
            query = query
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(to_db(at))
                .bind(json!({ "bench": k }).to_string());
        }
        query.execute(&mut *tx).await.context("enqueueing jobs")?;
        i += rows;
    }
    tx.commit().await?;
    Ok(())
}

/// What one claimer saw.
#[derive(Default)]
struct Claimed {
    ids: Vec<String>,
    claim: Vec<Duration>,
    finish: Vec<Duration>,
    empty_claims: u64,
}

async fn claimer(store: Arc<Store>, worker: String) -> anyhow::Result<Claimed> {
    let mut seen = Claimed::default();
    let lease = Duration::from_secs(300);
    loop {
        let t = Instant::now();
        let job = store.claim_job(&worker, lease).await?;
        let claim = t.elapsed();
        let Some(job) = job else {
            seen.empty_claims += 1;
            return Ok(seen);
        };
        seen.claim.push(claim);
        let token = job
            .lease_token
            .clone()
            .context("a claimed job has a lease token")?;
        let t = Instant::now();
        let ok = store
            .finish_job(&job.id, &token, JobFinish::new(JobOutcome::Succeeded))
            .await?;
        seen.finish.push(t.elapsed());
        if !ok {
            bail!("job {} lost its lease while {worker} held it", job.id);
        }
        seen.ids.push(job.id);
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("LETHE_BENCH_DATABASE_URL")
        .context("set LETHE_BENCH_DATABASE_URL to postgres://user@host:port/db or sqlite:")?;
    let jobs = env_usize("BENCH_JOBS", 20_000)?;
    let claimers = env_usize("BENCH_CLAIMERS", 8)?.max(1);
    let target = open(&url, u32::try_from(claimers)?).await?;
    let store = Arc::new(target.store.clone());
    let backend = format!("{:?}", store.backend()).to_lowercase();
    eprintln!("== {}: enqueueing {jobs} jobs", target.label);

    let t = Instant::now();
    enqueue(store.pool(), jobs).await?;
    let enqueue_s = t.elapsed().as_secs_f64();
    eprintln!("   enqueued in {enqueue_s:.2} s; {claimers} claimers start");

    let t = Instant::now();
    let handles: Vec<_> = (0..claimers)
        .map(|c| tokio::spawn(claimer(store.clone(), format!("bench-{c}"))))
        .collect();
    let mut all = Claimed::default();
    let mut per_claimer = Vec::new();
    for h in handles {
        let c = h.await??;
        per_claimer.push(c.ids.len());
        all.ids.extend(c.ids);
        all.claim.extend(c.claim);
        all.finish.extend(c.finish);
        all.empty_claims += c.empty_claims;
    }
    let elapsed = t.elapsed().as_secs_f64();

    // Exactly once: no id twice in what the claimers saw, and the table agrees.
    let distinct: HashSet<&String> = all.ids.iter().collect();
    let duplicates = all.ids.len() - distinct.len();
    let row = sqlx::query(
        "SELECT \
           COUNT(*) AS total, \
           SUM(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END) AS succeeded, \
           SUM(CASE WHEN attempts <> 1 THEN 1 ELSE 0 END) AS not_once \
         FROM jobs",
    )
    .fetch_one(store.pool())
    .await?;
    let total: i64 = row.try_get("total")?;
    let succeeded: i64 = row.try_get("succeeded")?;
    let not_once: i64 = row.try_get("not_once")?;
    let ok = duplicates == 0
        && all.ids.len() == jobs
        && usize::try_from(succeeded)? == jobs
        && usize::try_from(total)? == jobs
        && not_once == 0;

    all.claim.sort();
    all.finish.sort();
    let summary = json!({
        "backend": backend,
        "database": target.label,
        "jobs": jobs,
        "claimers": claimers,
        "pool_connections": claimers,
        "enqueue_s": enqueue_s,
        "elapsed_s": elapsed,
        "claims_per_s": jobs as f64 / elapsed,
        "claim_ms": { "p50": pct(&all.claim, 0.50), "p90": pct(&all.claim, 0.90),
                      "p99": pct(&all.claim, 0.99), "max": pct(&all.claim, 1.0) },
        "finish_ms": { "p50": pct(&all.finish, 0.50), "p99": pct(&all.finish, 0.99),
                       "max": pct(&all.finish, 1.0) },
        "per_claimer": per_claimer,
        "claimed": all.ids.len(),
        "duplicates": duplicates,
        "succeeded": succeeded,
        "attempts_not_1": not_once,
        "empty_claims": all.empty_claims,
        "exactly_once": ok,
    });
    eprintln!(
        "   {} jobs in {elapsed:.2} s: {:.0} claims/s (claim+finish); claim p50 {:.2} ms, p99 {:.2} ms; exactly once: {ok}",
        jobs,
        jobs as f64 / elapsed,
        pct(&all.claim, 0.5),
        pct(&all.claim, 0.99),
    );

    store.pool().close().await;
    if let Some((admin_url, name)) = &target.drop_db
        && std::env::var("BENCH_KEEP_DB").as_deref() != Ok("1")
    {
        let admin = Store::connect_raw(admin_url).await?;
        sqlx::query(AssertSqlSafe(format!("DROP DATABASE {name}")))
            .execute(&admin)
            .await
            .context("dropping the bench database")?;
    }
    println!("{summary}");
    if !ok {
        eprintln!("exactly-once check FAILED");
        std::process::exit(1);
    }
    Ok(())
}
