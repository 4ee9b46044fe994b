//! What an endpoint subscribes with, validated at the edge: its URL, its event types, and the
//! secret generated for it.

use base64::Engine;
use rand::RngCore;
use secrecy::SecretString;

use super::event::known_event_types;
use crate::domain::ParseError;

/// Prefix of every webhook secret; it makes leaked secrets easy to find with secret scanners.
pub const SECRET_PREFIX: &str = "whsec_";

/// Longest accepted URL, in characters.
const MAX_URL_CHARS: usize = 2048;

/// A receiver URL: absolute `http` or `https`, with a host, at most 2,048 characters, no
/// fragment. Whether its host may be a private address is checked apart, at registration and
/// at each delivery ([`super::egress`], `webhooks.allow_private_networks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    /// Validates a URL.
    ///
    /// # Errors
    /// [`ParseError`] (field `url`) for anything that is not an absolute http(s) URL with a
    /// host, is longer than 2,048 characters, or has a fragment.
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        let invalid = |reason: &str| ParseError {
            field: "url",
            reason: reason.to_string(),
        };
        if value.chars().count() > MAX_URL_CHARS {
            return Err(invalid("must be at most 2048 characters"));
        }
        if value.trim() != value || value.chars().any(char::is_control) {
            return Err(invalid(
                "must not hold whitespace at its ends or control characters",
            ));
        }
        let url =
            url::Url::parse(value).map_err(|e| invalid(&format!("not an absolute URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(&format!(
                "scheme must be http or https, not {}",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("must name a host"));
        }
        if url.fragment().is_some() {
            return Err(invalid("must not have a #fragment (it is never sent)"));
        }
        Ok(Self(url.to_string()))
    }

    /// The URL, normalised by the parser (e.g. `https://app.example.com/hooks`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL without password, query or fragment: what the audit log may show (a token in a
    /// query string or the password of basic authentication is a credential).
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

/// `url` without its password and query string.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string()
        }
        Err(_) => "<unparseable URL>".to_string(),
    }
}

/// The event types an endpoint receives: `["*"]` (all, the default) or a non-empty set of
/// known types ([`known_event_types`]), kept in the order given without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSelection(Vec<String>);

impl EventSelection {
    /// Every event, now and as new types are added.
    pub fn all() -> Self {
        Self(vec!["*".to_string()])
    }

    /// Validates a list of event types; `None` means all. A list holding `*` means all.
    ///
    /// # Errors
    /// [`ParseError`] (field `events`) for an empty list or an unknown type (the message
    /// lists the known ones).
    pub fn parse(events: Option<&[String]>) -> Result<Self, ParseError> {
        let Some(events) = events else {
            return Ok(Self::all());
        };
        if events.is_empty() {
            return Err(ParseError {
                field: "events",
                reason: "must name at least one event type, or \"*\" for all".into(),
            });
        }
        let known = known_event_types();
        let mut chosen: Vec<String> = Vec::new();
        for event in events {
            if event == "*" {
                return Ok(Self::all());
            }
            if !known.contains(event) {
                return Err(ParseError {
                    field: "events",
                    reason: format!(
                        "unknown event type '{event}' (known: *, {})",
                        known.join(", ")
                    ),
                });
            }
            if !chosen.contains(event) {
                chosen.push(event.clone());
            }
        }
        Ok(Self(chosen))
    }

    /// Reads the list stored with an endpoint, without validating it again (types that a
    /// later version no longer emits simply never match).
    pub fn from_stored(events: Vec<String>) -> Self {
        Self(events)
    }

    /// Whether an event of `event_type` goes to this endpoint.
    pub fn matches(&self, event_type: &str) -> bool {
        self.0.iter().any(|e| e == "*" || e == event_type)
    }

    /// The types, or `["*"]`.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// A new endpoint secret: `whsec_` and the unpadded base64url of 32 bytes from the operating
/// system (256 bits). The whole string, prefix included, is the HMAC key.
pub fn generate_secret() -> SecretString {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    SecretString::from(format!("{SECRET_PREFIX}{encoded}"))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn http_and_https_urls_with_a_host_are_accepted() {
        for url in [
            "https://app.example.com/hooks/lethe",
            "http://127.0.0.1:9000/h?token=abc",
            "http://receiver.internal/",
        ] {
            assert!(WebhookUrl::parse(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn other_schemes_and_non_urls_are_refused() {
        for url in [
            "ftp://example.com/x",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "example.com/hooks",
            "",
            " https://example.com",
            "https://example.com/#top",
            "http://",
        ] {
            let err = WebhookUrl::parse(url).unwrap_err();
            assert_eq!(err.field, "url", "{url}");
        }
        let long = format!("https://example.com/{}", "a".repeat(2100));
        assert!(WebhookUrl::parse(&long).is_err());
    }

    #[test]
    fn the_audit_form_hides_passwords_and_query_strings() {
        let url = WebhookUrl::parse("https://hook:s3cret@app.example.com/h?token=abc").unwrap();
        let shown = url.redacted();
        assert!(
            !shown.contains("s3cret") && !shown.contains("abc"),
            "{shown}"
        );
        assert!(
            shown.starts_with("https://hook:***@app.example.com/h"),
            "{shown}"
        );
    }

    #[test]
    fn event_selections_default_to_all_and_refuse_unknown_types() {
        assert_eq!(EventSelection::parse(None).unwrap(), EventSelection::all());
        let some = EventSelection::parse(Some(&[
            "request.completed".into(),
            "request.rejected".into(),
            "request.completed".into(),
        ]))
        .unwrap();
        assert_eq!(some.as_slice(), ["request.completed", "request.rejected"]);
        assert!(some.matches("request.completed"));
        assert!(!some.matches("request.received"));
        assert!(EventSelection::all().matches("request.received"));
        assert_eq!(
            EventSelection::parse(Some(&["*".into(), "request.completed".into()])).unwrap(),
            EventSelection::all()
        );
        let err = EventSelection::parse(Some(&["request.deleted".into()])).unwrap_err();
        assert!(err.reason.contains("request.completed"), "{err}");
        assert!(EventSelection::parse(Some(&[])).is_err());
    }

    #[test]
    fn secrets_are_prefixed_and_random() {
        let a = generate_secret();
        let b = generate_secret();
        assert!(a.expose_secret().starts_with(SECRET_PREFIX));
        assert_eq!(a.expose_secret().len(), SECRET_PREFIX.len() + 43);
        assert_ne!(a.expose_secret(), b.expose_secret());
    }
}
