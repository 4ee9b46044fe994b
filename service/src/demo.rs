//! The quick-start demo: a generated running-app lake, registered, with demo accounts.
//!
//! On first start it writes `<data_dir>/lake/running_events/` (2,000 subjects × 30 days ×
//! 3 regions by default), registers it, creates an admin, an auditor and a subject account
//! linked to one of the lake's subjects, and keeps their credentials in
//! `<data_dir>/demo-credentials.json` (mode 0600) so later starts print the same ones.

use std::path::{Path, PathBuf};

use anyhow::Context;
use lethe_core::audit::NewAuditEntry;
use lethe_core::demo::{DemoLakeOptions, generate_lake};
use lethe_core::domain::{Email, Role, SubjectId};
use lethe_core::store::{NewDataset, NewUser};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::state::AppState;

/// Demo credentials and the demo subject.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoAccounts {
    /// Admin login and password.
    pub admin: (String, String),
    /// Auditor login and password.
    pub auditor: (String, String),
    /// Subject login and password.
    pub subject: (String, String),
    /// The lake `user_id` the subject account is linked to.
    pub subject_id: String,
    /// Where the demo lake lives.
    pub lake: PathBuf,
}

/// A random 20-character password from an unambiguous alphabet.
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    (0..20)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

fn credentials_path(state: &AppState) -> PathBuf {
    state
        .settings
        .storage
        .data_dir
        .join("demo-credentials.json")
}

/// Creates whatever part of the demo is missing and returns the demo accounts.
///
/// # Errors
/// When the lake cannot be generated or the database refuses a write.
pub async fn ensure_demo(
    state: &AppState,
    subjects: usize,
    days: u32,
) -> anyhow::Result<DemoAccounts> {
    let path = credentials_path(state);
    let existing = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| serde_json::from_str::<DemoAccounts>(&text).ok());
    if let Some(accounts) = existing.filter(|a| a.lake.exists()) {
        return Ok(accounts);
    }
    let lake = std::path::absolute(
        state
            .settings
            .storage
            .data_dir
            .join("lake")
            .join("running_events"),
    )
    .context("resolving the demo lake path")?;
    let summary = if lake.exists() {
        anyhow::bail!(
            "{} exists but {} does not: remove the data folder to start the demo afresh",
            lake.display(),
            path.display()
        );
    } else {
        eprintln!(
            "generating the demo lake ({subjects} subjects × {days} days × 3 regions) in {} …",
            lake.display()
        );
        let options = DemoLakeOptions {
            subjects,
            days,
            ..DemoLakeOptions::default()
        };
        let dir = lake.clone();
        tokio::task::spawn_blocking(move || generate_lake(&dir, &options))
            .await
            .context("demo lake task")?
            .context("generating the demo lake")?
    };
    eprintln!(
        "demo lake: {} files, {} rows, {} bytes",
        summary.files, summary.rows, summary.bytes
    );
    let subject = summary
        .subjects
        .first()
        .context("the demo lake has no subjects")?
        .clone();

    let admin = ("admin@lethe.local".to_string(), random_password());
    let auditor = ("auditor@lethe.local".to_string(), random_password());
    let subject_login = (subject.email.clone(), random_password());
    let store = &state.store;
    let mut admin_id = String::new();
    for (login, role) in [
        (&admin, Role::Admin),
        (&auditor, Role::Auditor),
        (&subject_login, Role::Subject),
    ] {
        let hash = crate::auth::hash_password(login.1.clone()).await?;
        let user = store
            .create_user(
                NewUser {
                    email: Email::parse(login.0.clone())?,
                    password_hash: hash,
                    role,
                },
                NewAuditEntry::new("system:demo", "account.created")
                    .details(json!({ "role": role })),
            )
            .await
            .with_context(|| format!("creating the demo {} account", role.as_str()))?;
        match role {
            Role::Admin => admin_id = user.id,
            Role::Subject => {
                let id = SubjectId::parse(subject.user_id.clone())?;
                store
                    .link_subject(
                        &user.id,
                        &id,
                        NewAuditEntry::new("system:demo", "account.subject_linked")
                            .subject(state.pseudonyms.pseudonym(&id))
                            .details(
                                json!({ "user_id": user.id, "verification_note": "demo account" }),
                            ),
                    )
                    .await?;
            }
            Role::Auditor | Role::Producer => {}
        }
    }
    store
        .create_dataset(
            NewDataset {
                name: "running_events".into(),
                root_url: format!("file://{}", lake.display()),
                subject_column: "user_id".into(),
                partition_columns: vec!["date".into(), "region".into()],
                created_by: format!("user:{admin_id}"),
                schema: None,
                format: Default::default(),
                iceberg: None,
            },
            NewAuditEntry::new(format!("user:{admin_id}"), "dataset.registered")
                .details(json!({ "name": "running_events", "demo": true })),
        )
        .await?;
    let accounts = DemoAccounts {
        admin,
        auditor,
        subject: subject_login,
        subject_id: subject.user_id,
        lake,
    };
    write_private(&path, &serde_json::to_string_pretty(&accounts)?)?;
    Ok(accounts)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// The text printed when the demo starts: the credentials, and a walk-through of an access
/// request and an erasure as one shell block (bash, curl, jq) that runs as printed from any
/// folder: every call is `curl -f` inside `set -euo pipefail`, so it stops at the first failing
/// step; it waits on each request's status instead of sleeping; and it verifies the audit
/// export with this very binary, named by its absolute path.
pub fn instructions(d: &DemoAccounts, base: &str, binary: &Path) -> String {
    format!(
        r#"
Lethe demo is up at {base}   (API docs: {base}/docs)

  admin    {admin_email}  /  {admin_pw}
  auditor  {auditor_email}  /  {auditor_pw}
  subject  {subject_email}  /  {subject_pw}   (linked to user_id {subject_id})
  lake     {lake}

Walk an erasure through (bash, curl and jq; paste the block as is, from any folder):

(
  set -euo pipefail
  API={base}
  login() {{ curl -fsS "$API/v1/auth/login" -H 'content-type: application/json' \
      -d "{{\"email\":\"$1\",\"password\":\"$2\"}}" | jq -er .access_token; }}
  SUBJECT=$(login '{subject_email}' '{subject_pw}')
  ADMIN=$(login '{admin_email}' '{admin_pw}')
  AUDITOR=$(login '{auditor_email}' '{auditor_pw}')
  # waits until request $1 is final and prints its status
  wait_final() {{
    for _ in $(seq 1 600); do
      status=$(curl -fsS "$API/v1/requests/$1" -H "authorization: Bearer $ADMIN" | jq -er .status)
      case $status in completed|partially_completed|failed|rejected|cancelled) echo "$status"; return;; esac
      sleep 0.5
    done
    echo "request $1 is still $status after 5 minutes" >&2; return 1
  }}

  # the subject asks for a copy of their data, then for erasure
  ACCESS=$(curl -fsS "$API/v1/requests" -H "authorization: Bearer $SUBJECT" -H 'content-type: application/json' -d '{{"type":"access"}}' | jq -er .id)
  ERASE=$(curl -fsS "$API/v1/requests" -H "authorization: Bearer $SUBJECT" -H 'content-type: application/json' -d '{{"type":"erasure"}}' | jq -er .id)

  # the admin approves the access request; the in-process worker exports the rows
  curl -fsS -X POST "$API/v1/requests/$ACCESS/approve" -H "authorization: Bearer $ADMIN" | jq -r .status
  wait_final "$ACCESS"
  curl -fsS "$API/v1/requests/$ACCESS/export" -H "authorization: Bearer $SUBJECT" -o my-data.zip
  echo "export: $(wc -c < my-data.zip) bytes in my-data.zip"

  # then the erasure: every file holding the subject is rewritten without their rows
  curl -fsS -X POST "$API/v1/requests/$ERASE/approve" -H "authorization: Bearer $ADMIN" | jq -r .status
  wait_final "$ERASE"
  curl -fsS "$API/v1/requests/$ERASE" -H "authorization: Bearer $SUBJECT" | jq '{{status, result}}'

  # the subject's signed erasure certificate
  curl -fsS "$API/v1/requests/$ERASE/certificate" -H "authorization: Bearer $SUBJECT" -o certificate.json

  # the auditor exports the hash-chained log with its signed checkpoints and verifies it offline
  curl -fsS "$API/v1/audit/export" -H "authorization: Bearer $AUDITOR" -o audit.jsonl
  curl -fsS "$API/v1/audit/checkpoints" -H "authorization: Bearer $AUDITOR" -o checkpoints.jsonl
  curl -fsS "$API/v1/audit/public-keys" -H "authorization: Bearer $AUDITOR" -o audit.pub
  '{binary}' audit verify --file audit.jsonl --checkpoints checkpoints.jsonl --public-key audit.pub
  '{binary}' audit verify-certificate --file certificate.json --public-key audit.pub
)

Credentials are kept in {creds}.
"#,
        admin_email = d.admin.0,
        admin_pw = d.admin.1,
        auditor_email = d.auditor.0,
        auditor_pw = d.auditor.1,
        subject_email = d.subject.0,
        subject_pw = d.subject.1,
        subject_id = d.subject_id,
        lake = d.lake.display(),
        binary = binary.display(),
        creds = "lethe-data/demo-credentials.json",
    )
}
