//! Failpoints for crash tests — **test-only**; never set `LETHE_FAILPOINT` in production.
//!
//! When the environment variable `LETHE_FAILPOINT` names one of the points below, the rewrite
//! engine, on reaching that point, creates the file named by `LETHE_FAILPOINT_MARKER` (if set)
//! and then waits forever, so a test can `SIGKILL` the process at exactly that point and check
//! that the lake holds either the old or the complete new file:
//!
//! | name | where |
//! |---|---|
//! | `rewrite.mid_write` | the first row group of the new file was handed to the upload |
//! | `rewrite.before_swap` | the new file is complete, verified and cleared by the commit guard; the original is not yet replaced |
//! | `rewrite.after_swap` | the new file replaced the original; the rewrite has not returned yet |
//! | `residency.after_copy` | residency remediation copied a file's misplaced rows into their allowed region (manifest `copied`); the source is not yet rewritten |
//! | `job.panic` | a job's task has started — **panics** there instead of freezing, once per process (the next job runs normally), to test that a panic fails its job only |
//!
//! The variables are read once per process ([`OnceLock`]); when `LETHE_FAILPOINT` is unset a
//! failpoint costs one atomic load. An unknown name is ignored with a warning.

use std::path::PathBuf;
use std::sync::OnceLock;

/// A point of the rewrite where a crash test can freeze the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failpoint {
    /// After the first row group of the new file was handed to the upload.
    MidWrite,
    /// New file complete and verified, before the swap.
    BeforeSwap,
    /// After the swap, before returning.
    AfterSwap,
    /// Residency remediation: misplaced rows copied, source not yet rewritten.
    ResidencyAfterCopy,
    /// A job's task has started: panics (once per process) instead of freezing.
    JobPanic,
}

impl Failpoint {
    /// The points that freeze the process.
    const FREEZING: [Failpoint; 4] = [
        Self::MidWrite,
        Self::BeforeSwap,
        Self::AfterSwap,
        Self::ResidencyAfterCopy,
    ];

    /// The name used in `LETHE_FAILPOINT`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::MidWrite => "rewrite.mid_write",
            Self::BeforeSwap => "rewrite.before_swap",
            Self::AfterSwap => "rewrite.after_swap",
            Self::ResidencyAfterCopy => "residency.after_copy",
            Self::JobPanic => "job.panic",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::FREEZING
            .into_iter()
            .chain([Self::JobPanic])
            .find(|p| p.name() == name.trim())
    }
}

/// The armed failpoint and its marker file.
#[derive(Debug)]
pub(crate) struct Armed {
    point: Failpoint,
    marker: Option<PathBuf>,
    /// Whether a once-only failpoint has fired.
    fired: std::sync::atomic::AtomicBool,
}

impl PartialEq for Armed {
    fn eq(&self, other: &Self) -> bool {
        self.point == other.point && self.marker == other.marker
    }
}

impl Eq for Armed {}

impl Armed {
    /// Reads a configuration from the values of `LETHE_FAILPOINT` and `LETHE_FAILPOINT_MARKER`.
    pub(crate) fn from_values(point: Option<&str>, marker: Option<&str>) -> Option<Self> {
        let name = point?;
        let Some(point) = Failpoint::parse(name) else {
            tracing::warn!(failpoint = name, "unknown LETHE_FAILPOINT ignored");
            return None;
        };
        Some(Self {
            point,
            marker: marker.filter(|m| !m.is_empty()).map(PathBuf::from),
            fired: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// If `point` is the armed one: writes the marker (its content is the point's name), then
    /// never returns — or, for [`Failpoint::JobPanic`], panics the first time.
    pub(crate) async fn hit(&self, point: Failpoint) {
        if self.point != point {
            return;
        }
        if point == Failpoint::JobPanic {
            if !self.fired.swap(true, std::sync::atomic::Ordering::SeqCst) {
                panic!("failpoint {} reached", point.name());
            }
            return;
        }
        tracing::warn!(
            failpoint = point.name(),
            "failpoint reached; waiting forever"
        );
        if let Some(marker) = &self.marker
            && let Err(e) = write_marker(marker, point.name())
        {
            tracing::error!(marker = %marker.display(), error = %e, "failpoint marker not written");
        }
        std::future::pending::<()>().await;
    }
}

/// Writes `name` to `marker` atomically (a sibling file renamed over it): a test that waits for
/// the marker to exist must never read it empty, half written.
fn write_marker(marker: &std::path::Path, name: &str) -> std::io::Result<()> {
    let mut tmp = marker.as_os_str().to_owned();
    tmp.push(".writing");
    std::fs::write(&tmp, name)?;
    std::fs::rename(&tmp, marker)
}

static ARMED: OnceLock<Option<Armed>> = OnceLock::new();

/// Freezes the process at `point` when `LETHE_FAILPOINT` names it (see the module docs).
pub(crate) async fn hit(point: Failpoint) {
    let armed = ARMED.get_or_init(|| {
        Armed::from_values(
            std::env::var("LETHE_FAILPOINT").ok().as_deref(),
            std::env::var("LETHE_FAILPOINT_MARKER").ok().as_deref(),
        )
    });
    if let Some(armed) = armed {
        armed.hit(point).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn names_parse_and_unknown_or_unset_names_arm_nothing() {
        for point in Failpoint::FREEZING.into_iter().chain([Failpoint::JobPanic]) {
            let armed = Armed::from_values(Some(point.name()), Some("/tmp/m")).unwrap();
            assert_eq!(armed.point, point);
            assert_eq!(armed.marker, Some(PathBuf::from("/tmp/m")));
        }
        assert_eq!(Armed::from_values(None, Some("/tmp/m")), None);
        assert_eq!(Armed::from_values(Some("rewrite.nowhere"), None), None);
        let armed = Armed::from_values(Some("rewrite.mid_write"), Some("")).unwrap();
        assert_eq!(armed.marker, None);
    }

    #[tokio::test]
    async fn each_failpoint_writes_its_marker_and_then_never_returns() {
        let dir = tempfile::tempdir().unwrap();
        for point in Failpoint::FREEZING {
            let marker = dir.path().join(point.name());
            let armed = Armed::from_values(Some(point.name()), Some(&marker.display().to_string()))
                .unwrap();
            // Another point passes straight through, without a marker.
            for other in Failpoint::FREEZING.into_iter().filter(|p| *p != point) {
                tokio::time::timeout(Duration::from_secs(1), armed.hit(other))
                    .await
                    .expect("a failpoint that is not armed returns at once");
            }
            assert!(!marker.exists());
            let frozen = tokio::time::timeout(Duration::from_millis(200), armed.hit(point)).await;
            assert!(frozen.is_err(), "{} returned", point.name());
            assert_eq!(std::fs::read_to_string(&marker).unwrap(), point.name());
        }
    }

    #[tokio::test]
    async fn the_job_panic_failpoint_panics_once_and_then_lets_jobs_run() {
        let armed = Armed::from_values(Some("job.panic"), None).unwrap();
        let first = tokio::spawn(async move {
            armed.hit(Failpoint::JobPanic).await;
            armed
        })
        .await;
        assert!(first.unwrap_err().is_panic());
        let armed = Armed::from_values(Some("job.panic"), None).unwrap();
        armed.fired.store(true, std::sync::atomic::Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(1), armed.hit(Failpoint::JobPanic))
            .await
            .expect("a fired once-only failpoint returns at once");
    }
}
