//! What Lethe's own database keeps of a subject once their erasure completed (GDPR Art. 17),
//! in the erasure's completing transaction: accountability (Art. 5(2)) needs to show which
//! requests were received and answered, not whose they were, so the subject is named by
//! pseudonym only from then on.
//!
//! - `requests.subject_id` of every request of the subject becomes `pseudonym:<audit pseudonym>`;
//!   their `verification_note` (free text on how identity was checked) becomes `[erased]`, and
//!   the `details` of their finished rectifications (the new values: personal data) are
//!   dropped; an open request goes on under the stand-in, which counts as erased (an access
//!   answers `erased: true`, a rectification fails);
//! - every account linked to the subject is linked to `pseudonym:<audit pseudonym>` instead,
//!   so its owner still follows their requests (they carry the same replacement) and fetches
//!   the erasure certificate; the account's e-mail is replaced by a keyed hash of it
//!   ([`SubjectHasher::erased_email`]): signing in with the address still works, the address
//!   is no longer stored;
//! - the subject leaves the restricted list.
//!
//! See `docs/erasure.md` ("What Lethe keeps after an erasure").

use sqlx::{AnyConnection, AssertSqlSafe, Row};

use super::StoreResult;
use super::db::db;
use super::rows::final_statuses_sql;
use crate::keyring::SubjectHasher;

/// A subject whose erasure completed: what Lethe's own database replaces (GDPR Art. 17,
/// keeping by pseudonym only what accountability needs, Art. 5(2)).
#[derive(Debug, Clone)]
pub struct ForgetSubject {
    /// The subject id, as stored until now.
    pub subject_id: String,
    /// The audit pseudonym (keyed hash) of the subject; requests keep `pseudonym:<it>` in
    /// place of the id.
    pub pseudonym: String,
    /// Replaces the e-mails of the subject's accounts by their keyed hash (none: e-mails
    /// stay, for stores without a keyring).
    pub emails: Option<SubjectHasher>,
}

/// Applies [`ForgetSubject`] inside the caller's transaction.
pub(super) async fn forget_subject_in(
    conn: &mut AnyConnection,
    forget: &ForgetSubject,
) -> StoreResult<()> {
    let replacement = format!("pseudonym:{}", forget.pseudonym);
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE requests SET details = NULL \
         WHERE subject_id = $1 AND request_type = 'rectification' AND status IN ({})",
        final_statuses_sql()
    )))
    .bind(&forget.subject_id)
    .execute(&mut *conn)
    .await
    .map_err(db("dropping an erased subject's rectification values"))?;
    sqlx::query(
        "UPDATE requests SET subject_id = $1, verification_note = CASE \
         WHEN verification_note IS NULL THEN NULL ELSE '[erased]' END WHERE subject_id = $2",
    )
    .bind(&replacement)
    .bind(&forget.subject_id)
    .execute(&mut *conn)
    .await
    .map_err(db("replacing an erased subject's id by its pseudonym"))?;
    sqlx::query("UPDATE users SET subject_id = $1 WHERE subject_id = $2")
        .bind(&replacement)
        .bind(&forget.subject_id)
        .execute(&mut *conn)
        .await
        .map_err(db("replacing an erased subject's id on their accounts"))?;
    if let Some(hasher) = &forget.emails {
        let accounts = sqlx::query(
            "SELECT id, email FROM users WHERE subject_id = $1 AND email NOT LIKE 'erased:%'",
        )
        .bind(&replacement)
        .fetch_all(&mut *conn)
        .await
        .map_err(db("reading an erased subject's accounts"))?;
        for account in accounts {
            let (id, email): (String, String) = (
                account.try_get("id").map_err(db("reading an account"))?,
                account.try_get("email").map_err(db("reading an account"))?,
            );
            sqlx::query("UPDATE users SET email = $1 WHERE id = $2")
                .bind(hasher.erased_email(&email))
                .bind(&id)
                .execute(&mut *conn)
                .await
                .map_err(db("replacing an erased subject's e-mail"))?;
        }
    }
    sqlx::query("DELETE FROM restricted_subjects WHERE subject_id = $1")
        .bind(&forget.subject_id)
        .execute(&mut *conn)
        .await
        .map_err(db("lifting an erased subject's restriction"))?;
    Ok(())
}
