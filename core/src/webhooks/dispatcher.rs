//! The dispatcher: claims due deliveries, POSTs them signed, records each attempt.

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::sync::watch;
use tracing::Instrument;

use super::{
    ClaimedDelivery, DeliveryOutcome, EVENT_ID_HEADER, EVENT_TYPE_HEADER, SIGNATURE_HEADER,
    open_secret, signature_header,
};
use crate::config::Settings;
use crate::domain::Timestamp;
use crate::keyring::Keyring;
use crate::process_metrics::WEBHOOK_ATTEMPTS;
use crate::store::{Store, StoreResult};

/// Deliveries claimed per pass.
const BATCH: usize = 16;
/// Characters of a transport error kept in `last_error` (the remote's answer body never is).
const ERROR_CHARS: usize = 200;

/// How a dispatcher behaves (`[webhooks]` settings).
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Sleep between polls when nothing is due.
    pub poll_interval: Duration,
    /// Whole-request timeout of one attempt (connect, send, answer).
    pub timeout: Duration,
    /// Attempts before a delivery is `failed` (at least 1).
    pub max_attempts: u32,
    /// Delay after the first failed attempt; doubled after each further one.
    pub retry_base: Duration,
    /// Longest delay between attempts.
    pub retry_max: Duration,
    /// Deliver to loopback, private and link-local addresses too (`webhooks.allow_private_networks`).
    pub allow_private_networks: bool,
}

impl DispatcherConfig {
    /// The configuration described by `settings.webhooks`.
    pub fn from_settings(settings: &Settings) -> Self {
        let w = &settings.webhooks;
        Self {
            poll_interval: Duration::from_millis(w.poll_interval_ms.max(10)),
            timeout: Duration::from_secs(w.timeout_s.max(1)),
            max_attempts: w.max_attempts.max(1),
            retry_base: Duration::from_millis(w.retry_base_ms),
            retry_max: Duration::from_secs(w.retry_max_s),
            allow_private_networks: w.allow_private_networks,
        }
    }

    /// How long a claim holds its deliveries: long enough to send a whole batch one by one at
    /// the timeout, so another dispatcher does not send them again meanwhile.
    fn lease(&self) -> Duration {
        (self.timeout + Duration::from_secs(5)) * BATCH as u32
    }
}

/// The delay before the attempt after failed attempt number `attempt` (1-based): `base`,
/// `2·base`, `4·base` … at most `max`. With the defaults (10 s, 1 h): 10 s, 20 s, 40 s … 21 min
/// 20 s, then 1 h.
pub fn retry_delay(attempt: i64, base: Duration, max: Duration) -> Duration {
    let doublings = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    base.saturating_mul(2u32.saturating_pow(doublings)).min(max)
}

/// Sends webhook deliveries from the store's outbox.
#[derive(Clone)]
pub struct Dispatcher {
    store: Arc<Store>,
    keyring: Arc<Keyring>,
    config: DispatcherConfig,
    client: reqwest::Client,
}

impl Dispatcher {
    /// A dispatcher for `store`, opening endpoint secrets with `keyring`, with an HTTP client
    /// that follows no redirects (a redirect is a failed attempt: the endpoint should be
    /// registered at its final URL) and times out after `config.timeout`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built (no TLS roots could be loaded).
    pub fn new(
        store: Arc<Store>,
        keyring: Arc<Keyring>,
        config: DispatcherConfig,
    ) -> Result<Self, reqwest::Error> {
        let mut client = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("Lethe-Webhooks/", env!("CARGO_PKG_VERSION")));
        if !config.allow_private_networks {
            // Checked again when connecting: a name that now resolves to a private address
            // (DNS rebinding) is refused.
            client = client.dns_resolver(std::sync::Arc::new(super::egress::PublicOnlyResolver));
        }
        let client = client.build()?;
        Ok(Self {
            store,
            keyring,
            config,
            client,
        })
    }

    /// Sends due deliveries until `shutdown` becomes `true`; the pass in hand is finished
    /// first (at most a batch, each bounded by the timeout).
    pub async fn run_until_stopped(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!("webhook dispatcher started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            match self.dispatch_due().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "webhook dispatcher could not poll"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!("webhook dispatcher stopped");
    }

    /// One pass: claims up to 16 due deliveries and sends them — one endpoint's one by one,
    /// oldest first, different endpoints at the same time. Once an attempt to an endpoint
    /// fails, its later deliveries of the pass are put back, uncounted, to follow it at its
    /// retry time. Returns how many deliveries were claimed (0: nothing was due).
    ///
    /// # Errors
    /// Store errors while claiming; errors while recording an outcome are logged (the claim
    /// then expires and the delivery is sent again).
    pub async fn dispatch_due(&self) -> StoreResult<usize> {
        let claimed = self
            .store
            .claim_webhook_deliveries(BATCH as i64, self.config.lease())
            .await?;
        let count = claimed.len();
        let mut by_endpoint: Vec<Vec<ClaimedDelivery>> = Vec::new();
        for delivery in claimed {
            match by_endpoint
                .iter_mut()
                .find(|group| group[0].delivery.endpoint_id == delivery.delivery.endpoint_id)
            {
                Some(group) => group.push(delivery),
                None => by_endpoint.push(vec![delivery]),
            }
        }
        futures::future::join_all(
            by_endpoint
                .into_iter()
                .map(|group| self.send_in_order(group)),
        )
        .await;
        Ok(count)
    }

    async fn send_in_order(&self, group: Vec<ClaimedDelivery>) {
        let mut held_back_until: Option<Timestamp> = None;
        for claimed in group {
            let span = tracing::info_span!("webhook", delivery_id = %claimed.delivery.id,
                event_type = %claimed.delivery.event_type);
            async {
                let outcome = match held_back_until {
                    Some(at) => DeliveryOutcome::Released { at },
                    None => {
                        let outcome = self.attempt(&claimed).await;
                        held_back_until = match &outcome {
                            DeliveryOutcome::Retry { at, .. } => Some(*at),
                            DeliveryOutcome::Failed { .. } => Some(self.after_failure(1)),
                            _ => None,
                        };
                        outcome
                    }
                };
                match self
                    .store
                    .finish_webhook_delivery(&claimed.delivery.id, &claimed.lease_token, outcome)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(
                        "webhook delivery changed hands (endpoint deactivated, or claim expired)"
                    ),
                    Err(e) => tracing::error!(error = %e, "could not record a webhook attempt"),
                }
            }
            .instrument(span)
            .await;
        }
    }

    fn after_failure(&self, attempt: i64) -> Timestamp {
        let delay = retry_delay(attempt, self.config.retry_base, self.config.retry_max);
        chrono::Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX)
    }

    /// POSTs one delivery and says how it ended.
    async fn attempt(&self, claimed: &ClaimedDelivery) -> DeliveryOutcome {
        let delivery = &claimed.delivery;
        let secret = match open_secret(
            &self.keyring,
            &claimed.url,
            claimed.stored_secret.expose_secret(),
        ) {
            Ok(secret) => secret,
            Err(e) => {
                // Nothing is sent unsigned: a KEK missing from this process's configuration
                // is fixed by configuring it (then the retry goes through); a secret that
                // does not open for this URL means the row was altered.
                let error = format!("the endpoint's signing secret does not open: {e}");
                return self.failed_attempt(delivery.attempts, None, error);
            }
        };
        if let Err(refused) =
            super::egress::check_url(&claimed.url, self.config.allow_private_networks).await
        {
            return self.failed_attempt(delivery.attempts, None, format!("refused: {refused}"));
        }
        let body = claimed.body.clone().into_bytes();
        let signature = signature_header(
            secret.expose_secret(),
            chrono::Utc::now().timestamp(),
            &body,
        );
        let sent = self
            .client
            .post(&claimed.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(EVENT_ID_HEADER, &delivery.event_id)
            .header(EVENT_TYPE_HEADER, &delivery.event_type)
            .body(body)
            .send()
            .await;
        let (status_code, error) = match sent {
            Ok(response) if response.status().is_success() => {
                metrics::counter!(WEBHOOK_ATTEMPTS, "outcome" => "delivered").increment(1);
                tracing::debug!(status = response.status().as_u16(), "webhook delivered");
                return DeliveryOutcome::Delivered {
                    status_code: i64::from(response.status().as_u16()),
                };
            }
            Ok(response) => {
                // Only the status: the answer's body is the remote's, and may hold anything
                // (an internal service's error page, a secret) that admins and auditors
                // reading the delivery log must not see.
                let status = response.status();
                let hint = if status.is_redirection() {
                    " (redirects are not followed; register the final URL)"
                } else {
                    ""
                };
                (
                    Some(i64::from(status.as_u16())),
                    format!("HTTP {}{hint}", status.as_u16()),
                )
            }
            Err(e) => (None, describe(&e, self.config.timeout)),
        };
        self.failed_attempt(delivery.attempts, status_code, error)
    }

    /// A failed attempt after `attempts` earlier ones: retried with backoff, or failed for good
    /// at `max_attempts`.
    fn failed_attempt(
        &self,
        attempts: i64,
        status_code: Option<i64>,
        error: String,
    ) -> DeliveryOutcome {
        let attempt = attempts + 1;
        if attempt >= i64::from(self.config.max_attempts) {
            metrics::counter!(WEBHOOK_ATTEMPTS, "outcome" => "failed").increment(1);
            tracing::warn!(attempt, error = %error, "webhook delivery failed for good");
            DeliveryOutcome::Failed { status_code, error }
        } else {
            metrics::counter!(WEBHOOK_ATTEMPTS, "outcome" => "retry").increment(1);
            let at = self.after_failure(attempt);
            tracing::info!(attempt, error = %error, retry_at = %at, "webhook attempt failed");
            DeliveryOutcome::Retry {
                at,
                status_code,
                error,
            }
        }
    }
}

/// A transport error with its causes, without the URL (it may hold a token in its query).
fn describe(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("no answer within {} s", timeout.as_secs());
    }
    let mut text = String::from(if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    });
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if let Some((cut, _)) = text.char_indices().nth(ERROR_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let base = Duration::from_secs(10);
        let max = Duration::from_secs(3600);
        let delays: Vec<u64> = (1..=10)
            .map(|a| retry_delay(a, base, max).as_secs())
            .collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600]);
        assert_eq!(retry_delay(0, base, max), base, "attempt 0 is treated as 1");
        assert_eq!(retry_delay(i64::MAX, base, max), max, "no overflow");
    }
}
