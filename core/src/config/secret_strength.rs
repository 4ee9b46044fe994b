//! Whether a configured secret is strong enough to hold real data: long enough, not a
//! placeholder copied from an example, not a short pattern repeated.
//!
//! A secret anybody can read in a repository (the fallback values an example compose file
//! ships) lets them sign an admin token or unwrap every data key, so the service refuses to
//! start with one. Generated secrets (`lethe-service secrets generate`, the embedded default's
//! key files) are 32 random bytes and always pass.

use base64::Engine as _;

/// The fewest bytes a configured secret may have (256 bits: HS256's key size, RFC 7518 §3.2).
pub const MIN_SECRET_BYTES: usize = 32;

/// The least entropy, in bits, a secret's text must show ([`estimated_bits`]): 32 random hex
/// digits show about 110, 32 random bytes in base64 about 200; a phrase of a few words
/// repeated, or a run of one character, far less.
pub const MIN_ESTIMATED_BITS: f64 = 96.0;

/// Words found in the placeholders of examples and tutorials; a secret containing one is
/// refused whatever its length.
const PLACEHOLDERS: &[&str] = &[
    "change-me",
    "change_me",
    "changeme",
    "changethis",
    "replace-me",
    "replaceme",
    "placeholder",
    "example",
    "your-secret",
    "yoursecret",
    "secret-key",
    "supersecret",
    "password",
    "default",
    "insecure",
    "do-not-use",
    "dummy",
    "xxxxxxxx",
];

/// Why a secret is refused (the message never repeats the secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WeakSecret(String);

/// Checks `secret`, a text secret used as key material as is (the JWT secret, the pseudonym
/// key, the subject key).
///
/// # Errors
/// [`WeakSecret`] when it is shorter than [`MIN_SECRET_BYTES`], holds a placeholder word, is a
/// shorter text repeated, or shows less than [`MIN_ESTIMATED_BITS`] of entropy.
pub fn check_text_secret(secret: &str) -> Result<(), WeakSecret> {
    let secret = secret.trim();
    if secret.len() < MIN_SECRET_BYTES {
        return Err(WeakSecret(format!(
            "is {} bytes long; it must have at least {MIN_SECRET_BYTES} (e.g. `openssl rand -hex 32`)",
            secret.len()
        )));
    }
    check_bytes(secret.as_bytes())
}

/// Checks a base64-encoded key (the KEK): the decoded bytes must pass the same rules as a
/// text secret; text that is not base64 is left to the key's own parser.
///
/// # Errors
/// As [`check_text_secret`], on the decoded bytes.
pub fn check_base64_secret(secret: &str) -> Result<(), WeakSecret> {
    match base64::engine::general_purpose::STANDARD.decode(secret.trim()) {
        Ok(bytes) => {
            if bytes.len() < MIN_SECRET_BYTES {
                return Err(WeakSecret(format!(
                    "decodes to {} bytes; it must have at least {MIN_SECRET_BYTES} (e.g. `openssl rand -base64 32`)",
                    bytes.len()
                )));
            }
            check_bytes(&bytes)?;
            // The text itself may be a placeholder too (base64 of a phrase).
            check_placeholder(secret.as_bytes())
        }
        Err(_) => Ok(()),
    }
}

fn check_bytes(bytes: &[u8]) -> Result<(), WeakSecret> {
    check_placeholder(bytes)?;
    if let Some(period) = repeating_period(bytes) {
        return Err(WeakSecret(format!(
            "is a sequence of {period} bytes repeated; use random bytes (e.g. `openssl rand -hex 32`)"
        )));
    }
    let bits = estimated_bits(bytes);
    if bits < MIN_ESTIMATED_BITS {
        return Err(WeakSecret(format!(
            "looks too predictable (about {bits:.0} bits of entropy, at least {MIN_ESTIMATED_BITS:.0} needed); use random bytes (e.g. `openssl rand -hex 32`)"
        )));
    }
    Ok(())
}

fn check_placeholder(bytes: &[u8]) -> Result<(), WeakSecret> {
    let lower = String::from_utf8_lossy(bytes).to_ascii_lowercase();
    match PLACEHOLDERS.iter().find(|word| lower.contains(*word)) {
        Some(word) => Err(WeakSecret(format!(
            "contains the placeholder {word:?}; generate a random one (`lethe-service secrets generate`)"
        ))),
        None => Ok(()),
    }
}

/// The shortest period `p < len` such that `bytes` is `bytes[..p]` repeated (the last copy may
/// be cut short), if the text holds at least two whole copies.
fn repeating_period(bytes: &[u8]) -> Option<usize> {
    (1..=bytes.len() / 2).find(|&p| bytes.iter().enumerate().all(|(i, b)| *b == bytes[i % p]))
}

/// The length times the Shannon entropy of the byte frequencies (bits): a rough, cautious
/// estimate of how much a secret's text could hold. It catches runs and small alphabets, not
/// every predictable phrase (hence the placeholder list).
pub fn estimated_bits(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0usize; 256];
    for b in bytes {
        counts[usize::from(*b)] += 1;
    }
    let n = bytes.len() as f64;
    let per_byte: f64 = counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = *c as f64 / n;
            -p * p.log2()
        })
        .sum();
    per_byte * n
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    fn random_bytes() -> Vec<u8> {
        let mut bytes = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        bytes
    }

    #[test]
    fn random_secrets_pass_many_times() {
        for _ in 0..500 {
            let bytes = random_bytes();
            check_text_secret(&hex::encode(&bytes)).unwrap();
            check_base64_secret(&base64::engine::general_purpose::STANDARD.encode(&bytes)).unwrap();
        }
    }

    #[test]
    fn the_placeholders_compose_used_to_ship_are_refused() {
        for placeholder in [
            "change-me-change-me-change-me-change-me",
            "change-me-too-change-me-too-change-me",
            "change-me-three-change-me-three-change-me",
        ] {
            let e = check_text_secret(placeholder).unwrap_err().to_string();
            assert!(e.contains("placeholder"), "{e}");
        }
        let e = check_base64_secret("Y2hhbmdlLW1lLWNoYW5nZS1tZS1jaGFuZ2UtbWUtMzI=")
            .unwrap_err()
            .to_string();
        assert!(e.contains("placeholder"), "{e}");
    }

    #[test]
    fn short_repeated_and_low_entropy_secrets_are_refused() {
        let e = check_text_secret("9f2c81d0a7").unwrap_err().to_string();
        assert!(e.contains("at least 32"), "{e}");
        let e = check_text_secret(&"0123456789abcdef".repeat(2))
            .unwrap_err()
            .to_string();
        assert!(e.contains("repeated"), "{e}");
        let e = check_text_secret("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab")
            .unwrap_err()
            .to_string();
        assert!(e.contains("predictable"), "{e}");
        let e = check_base64_secret(&base64::engine::general_purpose::STANDARD.encode([7u8; 32]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("repeated"), "{e}");
        assert!(check_text_secret("x").unwrap_err().to_string().len() < 200);
    }
}
