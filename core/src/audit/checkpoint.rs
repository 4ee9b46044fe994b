//! Signed checkpoints: every so often the chain's head is signed, and each checkpoint names
//! the one before it, so the checkpoints form a chain of their own.
//!
//! A checkpoint is one JSON object:
//! `{"kind", "n", "seq", "entry_hash", "prev_checkpoint_hash", "at", "key_id", "hash", "signature"}`.
//! The *body* is the object without `hash` and `signature`; `hash` is the hex SHA-256 of the
//! body's canonical JSON ([`super::canonical_json`]) and `signature` the base64 Ed25519
//! signature of the same bytes. `n` counts checkpoints from 1; the first has
//! `prev_checkpoint_hash` = 64 zeros; `seq` and `entry_hash` are the audit entry signed.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::canonical::canonical_json;
use super::chain::GENESIS_HASH;
use super::signing::{AuditSigner, PublicKeys};

/// The `kind` of every checkpoint.
pub const CHECKPOINT_KIND: &str = "lethe.audit.checkpoint.v1";

/// One signed checkpoint of the audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "kind": "lethe.audit.checkpoint.v1", "n": 3, "seq": 3000,
    "entry_hash": "5e0c8f3f1d2a4b6c8e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7",
    "prev_checkpoint_hash": "9b1f0e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff",
    "at": "2026-01-07T10:00:00.000000Z", "key_id": "3f2a9c0d1b7e4a55",
    "hash": "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9",
    "signature": "q0b3…base64 of 64 bytes…=="}))]
pub struct Checkpoint {
    /// Always [`CHECKPOINT_KIND`].
    pub kind: String,
    /// Number of this checkpoint, from 1, without gaps.
    pub n: i64,
    /// Sequence number of the audit entry signed.
    pub seq: i64,
    /// That entry's `hash`.
    pub entry_hash: String,
    /// `hash` of checkpoint `n - 1` (64 zeros for the first).
    pub prev_checkpoint_hash: String,
    /// When the checkpoint was made: RFC 3339, UTC, microseconds (`…T10:00:00.000000Z`).
    pub at: String,
    /// Id of the signing key (see `GET /v1/audit/public-keys`).
    pub key_id: String,
    /// SHA-256 (hex) of the body's canonical JSON.
    pub hash: String,
    /// Ed25519 signature (base64) of the body's canonical JSON.
    pub signature: String,
}

impl Checkpoint {
    /// Signs entry `(seq, entry_hash)` as the checkpoint after `prev` (`None`: the first).
    pub fn sign(
        signer: &AuditSigner,
        prev: Option<&Checkpoint>,
        seq: i64,
        entry_hash: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        let mut checkpoint = Self {
            kind: CHECKPOINT_KIND.into(),
            n: prev.map_or(1, |p| p.n + 1),
            seq,
            entry_hash: entry_hash.into(),
            prev_checkpoint_hash: prev.map_or(GENESIS_HASH.into(), |p| p.hash.clone()),
            at: crate::domain::to_db(at),
            key_id: signer.key_id().into(),
            hash: String::new(),
            signature: String::new(),
        };
        let body = checkpoint.canonical_body();
        checkpoint.hash = hex::encode(Sha256::digest(body.as_bytes()));
        checkpoint.signature = signer.sign(body.as_bytes());
        checkpoint
    }

    /// The canonical JSON of the body (every field but `hash` and `signature`).
    pub fn canonical_body(&self) -> String {
        canonical_json(&json!({
            "kind": self.kind,
            "n": self.n,
            "seq": self.seq,
            "entry_hash": self.entry_hash,
            "prev_checkpoint_hash": self.prev_checkpoint_hash,
            "at": self.at,
            "key_id": self.key_id,
        }))
    }

    /// Checks the kind, the hash and the signature of this one checkpoint.
    ///
    /// # Errors
    /// A sentence naming what is wrong.
    pub fn check(&self, keys: &PublicKeys) -> Result<(), String> {
        if self.kind != CHECKPOINT_KIND {
            return Err(format!(
                "checkpoint {} has kind {:?}, expected {CHECKPOINT_KIND}",
                self.n, self.kind
            ));
        }
        let body = self.canonical_body();
        if hex::encode(Sha256::digest(body.as_bytes())) != self.hash {
            return Err(format!(
                "checkpoint {} was altered: its content no longer matches its hash",
                self.n
            ));
        }
        keys.verify(&self.key_id, body.as_bytes(), &self.signature)
            .map_err(|e| format!("checkpoint {}: {e}", self.n))
    }

    /// One JSON line.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a checkpoint serialises")
    }
}

/// Checks a whole chain of checkpoints, in order from `n = 1`: each one's hash and signature,
/// numbering without gaps, each linked to the one before, signed sequence numbers increasing.
///
/// # Errors
/// `(n, sentence)` of the first bad checkpoint.
pub fn verify_checkpoints(
    checkpoints: &[Checkpoint],
    keys: &PublicKeys,
) -> Result<(), (i64, String)> {
    let mut prev: Option<&Checkpoint> = None;
    for cp in checkpoints {
        let expected_n = prev.map_or(1, |p| p.n + 1);
        if cp.n != expected_n {
            return Err((
                expected_n,
                format!(
                    "checkpoint {expected_n} is missing (next found is {})",
                    cp.n
                ),
            ));
        }
        cp.check(keys).map_err(|e| (cp.n, e))?;
        let prev_hash = prev.map_or(GENESIS_HASH, |p| p.hash.as_str());
        if cp.prev_checkpoint_hash != prev_hash {
            return Err((
                cp.n,
                format!(
                    "checkpoint {} does not link to checkpoint {}",
                    cp.n,
                    cp.n - 1
                ),
            ));
        }
        if let Some(p) = prev
            && cp.seq <= p.seq
        {
            return Err((
                cp.n,
                format!(
                    "checkpoint {} signs entry {} but checkpoint {} already signed entry {}",
                    cp.n, cp.seq, p.n, p.seq
                ),
            ));
        }
        prev = Some(cp);
    }
    Ok(())
}

/// Reads checkpoints from JSON Lines (as `GET /v1/audit/checkpoints` serves them) or from a
/// JSON array.
///
/// # Errors
/// A sentence naming the line that is not a checkpoint.
pub fn parse_checkpoints(text: &str) -> Result<Vec<Checkpoint>, String> {
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(text).map_err(|e| format!("not a checkpoint list: {e}"));
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<Checkpoint>(l)
                .map_err(|e| format!("line {}: not a checkpoint: {e}", i + 1))
        })
        .collect()
}

/// The body of a signed document (an erasure certificate) with `key_id`, `hash` and
/// `signature` added: `hash` is the hex SHA-256 and `signature` the Ed25519 signature of the
/// canonical JSON of the document without `hash` and `signature` (with `key_id`).
pub fn sign_document(signer: &AuditSigner, mut document: Value) -> Value {
    if let Value::Object(map) = &mut document {
        map.insert("key_id".into(), Value::String(signer.key_id().into()));
        map.remove("hash");
        map.remove("signature");
    }
    let body = canonical_json(&document);
    if let Value::Object(map) = &mut document {
        map.insert(
            "hash".into(),
            Value::String(hex::encode(Sha256::digest(body.as_bytes()))),
        );
        map.insert(
            "signature".into(),
            Value::String(signer.sign(body.as_bytes())),
        );
    }
    document
}

/// Verifies a document signed by [`sign_document`].
///
/// # Errors
/// A sentence saying why it does not verify.
pub fn verify_document(document: &Value, keys: &PublicKeys) -> Result<(), String> {
    let Value::Object(map) = document else {
        return Err("not a JSON object".into());
    };
    let field = |name: &str| {
        map.get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("no {name}"))
    };
    let (key_id, hash, signature) = (field("key_id")?, field("hash")?, field("signature")?);
    let mut body = map.clone();
    body.remove("hash");
    body.remove("signature");
    let body = canonical_json(&Value::Object(body));
    if hex::encode(Sha256::digest(body.as_bytes())) != hash {
        return Err("the document was altered: its content no longer matches its hash".into());
    }
    keys.verify(&key_id, body.as_bytes(), &signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(signer: &AuditSigner, n: i64) -> Vec<Checkpoint> {
        let mut out: Vec<Checkpoint> = Vec::new();
        for i in 1..=n {
            let cp = Checkpoint::sign(
                signer,
                out.last(),
                i * 10,
                &format!("{i:064x}"),
                chrono::Utc::now(),
            );
            out.push(cp);
        }
        out
    }

    #[test]
    fn a_checkpoint_chain_verifies_and_every_change_is_caught() {
        let signer = AuditSigner::generate();
        let keys = PublicKeys::new(&signer, &[]).unwrap();
        let cps = chain(&signer, 4);
        assert_eq!(verify_checkpoints(&cps, &keys), Ok(()));
        let mut altered = cps.clone();
        altered[1].seq += 1;
        assert_eq!(verify_checkpoints(&altered, &keys).unwrap_err().0, 2);
        let mut removed = cps.clone();
        removed.remove(2);
        assert_eq!(verify_checkpoints(&removed, &keys).unwrap_err().0, 3);
        // Re-signed by another key: refused.
        let forger = AuditSigner::generate();
        let forged = chain(&forger, 4);
        assert!(verify_checkpoints(&forged, &keys).is_err());
        // Lines round-trip.
        let text: String = cps.iter().map(|c| c.to_line() + "\n").collect();
        assert_eq!(parse_checkpoints(&text).unwrap(), cps);
    }

    #[test]
    fn a_signed_document_fails_after_any_change() {
        let signer = AuditSigner::generate();
        let keys = PublicKeys::new(&signer, &[]).unwrap();
        let doc = sign_document(&signer, json!({"a": 1, "b": {"c": [1, 2]}}));
        assert_eq!(verify_document(&doc, &keys), Ok(()));
        let mut changed = doc.clone();
        changed["b"]["c"][1] = json!(3);
        assert!(verify_document(&changed, &keys).is_err());
    }
}
