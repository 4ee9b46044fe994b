//! Signing webhook bodies, and verifying them on the receiving side.
//!
//! The scheme is Stripe's: the header
//!
//! ```text
//! Lethe-Signature: t=1736244000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd
//! ```
//!
//! carries the Unix time of signing (`t`, seconds) and the lower-case hex HMAC-SHA256 of the
//! string `"<t>.<body>"` under the endpoint's secret (`v1`), the secret's UTF-8 bytes being the
//! key. A receiver recomputes the HMAC over the raw body bytes as received (before any JSON
//! parsing), compares it in constant time, and refuses a timestamp more than a few minutes from
//! its own clock ([`DEFAULT_TOLERANCE`]), so a captured request cannot be replayed later. Since
//! the timestamp is inside the signed string, it cannot be changed without breaking the
//! signature. A header may hold several `v1` entries; one match is enough.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Name of the signature header.
pub const SIGNATURE_HEADER: &str = "Lethe-Signature";
/// Name of the header with the event id (the body's `id`), for receivers that de-duplicate
/// before parsing.
pub const EVENT_ID_HEADER: &str = "Lethe-Event-Id";
/// Name of the header with the event type (the body's `type`), e.g. `request.completed`.
pub const EVENT_TYPE_HEADER: &str = "Lethe-Event-Type";
/// The replay window receivers should use: 5 minutes either side of their clock.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not `t=<seconds>,v1=<hex>[,v1=<hex>…]`.
    #[error("malformed signature header: {0}")]
    Malformed(&'static str),
    /// The timestamp is further from `now` than the tolerance (a replay, or a skewed clock).
    #[error("signature timestamp is {age_s} s away from now (tolerance {tolerance_s} s)")]
    Stale {
        /// `|now - t|`, in seconds.
        age_s: u64,
        /// The tolerance, in seconds.
        tolerance_s: u64,
    },
    /// No `v1` entry matches the body under this secret (tampered body, wrong secret).
    #[error("signature does not match the body")]
    Mismatch,
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `Lethe-Signature` value for `body` signed at `timestamp` (Unix seconds) with `secret`:
/// `t=<timestamp>,v1=<64 hex digits>`.
pub fn signature_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(digest))
}

/// Checks a `Lethe-Signature` header against the raw `body` received, for a receiver holding
/// `secret`. `now` is the receiver's clock in Unix seconds; `tolerance` the replay window
/// (use [`DEFAULT_TOLERANCE`]).
///
/// ```
/// use lethe_core::webhooks::{DEFAULT_TOLERANCE, signature_header, verify_signature};
/// let body = br#"{"id":"e1","type":"request.completed"}"#;
/// let header = signature_header("whsec_test", 1_736_244_000, body);
/// assert!(verify_signature("whsec_test", &header, body, 1_736_244_030, DEFAULT_TOLERANCE).is_ok());
/// ```
///
/// # Errors
/// [`SignatureError::Malformed`] for a header that does not parse,
/// [`SignatureError::Stale`] when `t` is outside `now ± tolerance`, and
/// [`SignatureError::Mismatch`] when no `v1` matches (the comparison is constant-time).
pub fn verify_signature(
    secret: &str,
    header: &str,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            return Err(SignatureError::Malformed("expected key=value pairs"));
        };
        match key {
            "t" => {
                let t = value
                    .parse::<i64>()
                    .map_err(|_| SignatureError::Malformed("t is not a number of seconds"))?;
                timestamp = Some(t);
            }
            "v1" => candidates
                .push(hex::decode(value).map_err(|_| SignatureError::Malformed("v1 is not hex"))?),
            // Later schemes (v2, …) are ignored by receivers that do not know them.
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed("no t"))?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed("no v1"));
    }
    let age_s = now.abs_diff(timestamp);
    if age_s > tolerance.as_secs() {
        return Err(SignatureError::Stale {
            age_s,
            tolerance_s: tolerance.as_secs(),
        });
    }
    let expected = mac(secret, timestamp, body);
    if candidates
        .iter()
        .any(|candidate| expected.clone().verify_slice(candidate).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_k3y";
    const T: i64 = 1_736_244_000;
    const BODY: &[u8] = br#"{"id":"e1","type":"request.completed","data":{"request_id":"r1"}}"#;

    #[test]
    fn a_signed_body_verifies_within_the_window() {
        let header = signature_header(SECRET, T, BODY);
        assert!(header.starts_with(&format!("t={T},v1=")), "{header}");
        assert_eq!(header.len(), format!("t={T},v1=").len() + 64);
        assert_eq!(
            verify_signature(SECRET, &header, BODY, T + 299, DEFAULT_TOLERANCE),
            Ok(())
        );
        assert_eq!(
            verify_signature(SECRET, &header, BODY, T - 10, DEFAULT_TOLERANCE),
            Ok(()),
            "a receiver clock slightly behind is fine"
        );
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Independent computation, as a receiver in another language would do it.
        let mut mac = HmacSha256::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("{T}.").as_bytes());
        mac.update(BODY);
        let hex = hex::encode(mac.finalize().into_bytes());
        assert_eq!(signature_header(SECRET, T, BODY), format!("t={T},v1={hex}"));
    }

    #[test]
    fn a_tampered_body_is_refused() {
        let header = signature_header(SECRET, T, BODY);
        let tampered = String::from_utf8(BODY.to_vec())
            .unwrap()
            .replace("r1", "r2");
        assert_eq!(
            verify_signature(SECRET, &header, tampered.as_bytes(), T, DEFAULT_TOLERANCE),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_wrong_secret_is_refused() {
        let header = signature_header(SECRET, T, BODY);
        assert_eq!(
            verify_signature("whsec_other", &header, BODY, T, DEFAULT_TOLERANCE),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_stale_or_future_timestamp_is_refused() {
        let header = signature_header(SECRET, T, BODY);
        assert_eq!(
            verify_signature(SECRET, &header, BODY, T + 301, DEFAULT_TOLERANCE),
            Err(SignatureError::Stale {
                age_s: 301,
                tolerance_s: 300
            })
        );
        assert!(matches!(
            verify_signature(SECRET, &header, BODY, T - 3600, DEFAULT_TOLERANCE),
            Err(SignatureError::Stale { age_s: 3600, .. })
        ));
    }

    #[test]
    fn a_changed_timestamp_breaks_the_signature() {
        let header =
            signature_header(SECRET, T, BODY).replace(&T.to_string(), &(T + 60).to_string());
        assert_eq!(
            verify_signature(SECRET, &header, BODY, T + 60, DEFAULT_TOLERANCE),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn one_matching_v1_among_several_is_enough() {
        let good = signature_header(SECRET, T, BODY);
        let v1 = good.split_once(",v1=").unwrap().1;
        let header = format!("t={T},v1={},v1={v1},v0=legacy", "00".repeat(32));
        assert_eq!(
            verify_signature(SECRET, &header, BODY, T, DEFAULT_TOLERANCE),
            Ok(())
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        for header in [
            "",
            "v1=abcd",
            &format!("t={T}"),
            "t=soon,v1=00",
            &format!("t={T},v1=zz"),
            "garbage",
        ] {
            assert!(
                matches!(
                    verify_signature(SECRET, header, BODY, T, DEFAULT_TOLERANCE),
                    Err(SignatureError::Malformed(_))
                ),
                "{header:?}"
            );
        }
    }
}
