//! Outgoing mail: e-mail verification codes.
//!
//! Through SMTP when `mail.smtp_url` is set (lettre: TLS or STARTTLS as the URL says, rustls);
//! otherwise, the embedded default, each message is written as an `.eml` file to
//! `mail.outbox_dir` (`<data_dir>/outbox`, mode 0700), and the log says where, so the quick
//! start needs no mail server.

use std::path::PathBuf;

use anyhow::Context;
use lethe_core::config::Settings;
use lettre::message::{Mailbox, header::ContentType};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

/// Where mail goes.
pub enum Mailer {
    /// An SMTP server.
    Smtp {
        /// The transport (one connection per message: codes are rare).
        transport: AsyncSmtpTransport<Tokio1Executor>,
        /// The sender.
        from: Mailbox,
    },
    /// `.eml` files in a folder.
    Folder {
        /// The transport.
        transport: AsyncFileTransport<Tokio1Executor>,
        /// The folder.
        dir: PathBuf,
        /// The sender.
        from: Mailbox,
    },
}

impl Mailer {
    /// The mailer `settings.mail` describes; creates the outbox folder (0700) when needed.
    ///
    /// # Errors
    /// An invalid `mail.from` or `mail.smtp_url`, or an outbox folder that cannot be created.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let from: Mailbox = settings
            .mail
            .from
            .parse()
            .with_context(|| format!("mail.from {:?} is not a mailbox", settings.mail.from))?;
        if let Some(url) = &settings.mail.smtp_url {
            let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                .context("mail.smtp_url is not a valid SMTP URL")?
                .timeout(Some(std::time::Duration::from_secs(10)))
                .build();
            return Ok(Self::Smtp { transport, from });
        }
        let dir = settings
            .mail
            .outbox_dir
            .clone()
            .unwrap_or_else(|| settings.storage.data_dir.join("outbox"));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the mail outbox {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("restricting the mail outbox {}", dir.display()))?;
        }
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        Ok(Self::Folder {
            transport: AsyncFileTransport::new(&dir),
            dir,
            from,
        })
    }

    /// Sends a plain-text message to `to`.
    ///
    /// # Errors
    /// An address that is not a mailbox, or the transport's error (SMTP refused or
    /// unreachable within 10 s, the folder not writable).
    pub async fn send(&self, to: &str, subject: &str, body: String) -> anyhow::Result<()> {
        let from = match self {
            Self::Smtp { from, .. } | Self::Folder { from, .. } => from.clone(),
        };
        let message = Message::builder()
            .from(from)
            .to(to.parse().context("the recipient is not a mailbox")?)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .context("building the message")?;
        match self {
            Self::Smtp { transport, .. } => {
                transport.send(message).await.context("sending by SMTP")?;
            }
            Self::Folder { transport, dir, .. } => {
                let id = transport
                    .send(message)
                    .await
                    .context("writing the message to the outbox")?;
                tracing::info!(
                    file = %dir.join(format!("{id}.eml")).display(),
                    "no SMTP server configured (mail.smtp_url): the message was written to the outbox"
                );
            }
        }
        Ok(())
    }
}
