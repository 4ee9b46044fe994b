//! Showing the progress of an erase on stderr.
//!
//! On a terminal, an [`indicatif`] bar (files done of files total, rows removed, bytes read);
//! otherwise (a log file, CI, a pipe) one plain line every few seconds, so logs stay readable.

use std::io::Write;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lethe_core::lake::EraseProgress;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// An interactive bar drawn on the process's stderr (only when it is a terminal).
    Bar,
    /// A plain line on the command's error stream at most once per `every`, and one at the end.
    Lines {
        /// Minimum time between two lines.
        every: Duration,
    },
    /// Nothing.
    Off,
}

/// Shows [`EraseProgress`] updates according to a [`ProgressMode`].
pub struct Reporter {
    mode: ProgressMode,
    bar: Option<ProgressBar>,
    started: Instant,
    last_line: Option<Instant>,
    last: Option<EraseProgress>,
}

impl Reporter {
    /// A reporter for `mode`; the bar (if any) appears at the first update.
    pub fn new(mode: ProgressMode) -> Self {
        Self {
            mode,
            bar: None,
            started: Instant::now(),
            last_line: None,
            last: None,
        }
    }

    /// Shows `p` if it is new and it is time to; `err` receives plain lines.
    pub fn update(&mut self, p: &EraseProgress, err: &mut dyn Write) {
        if self.last.as_ref().is_some_and(|l| same(l, p)) {
            return;
        }
        self.last = Some(p.clone());
        match self.mode {
            ProgressMode::Bar => {
                let bar = self.bar.get_or_insert_with(|| new_bar(p.files_total));
                bar.set_length(p.files_total);
                bar.set_position(p.files_done);
                bar.set_message(format!(
                    "{} rows removed, {} read, {} written",
                    p.rows_removed,
                    human_bytes(p.bytes_read),
                    human_bytes(p.bytes_written)
                ));
            }
            ProgressMode::Lines { every } => {
                let due = self.last_line.is_none_or(|t| t.elapsed() >= every);
                if due {
                    self.last_line = Some(Instant::now());
                    let _ = writeln!(err, "{}", self.line(p));
                }
            }
            ProgressMode::Off => {}
        }
    }

    /// Removes the bar, or prints a last plain line with the final counts.
    pub fn finish(&mut self, err: &mut dyn Write) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if let (ProgressMode::Lines { .. }, Some(p)) = (self.mode, &self.last) {
            let _ = writeln!(err, "{}", self.line(p));
        }
    }

    fn line(&self, p: &EraseProgress) -> String {
        format!(
            "erase: {}/{} files, {} rows removed, {} read, {} written, {:.1} s",
            p.files_done,
            p.files_total,
            p.rows_removed,
            human_bytes(p.bytes_read),
            human_bytes(p.bytes_written),
            self.started.elapsed().as_secs_f64()
        )
    }
}

fn same(a: &EraseProgress, b: &EraseProgress) -> bool {
    (
        a.files_total,
        a.files_done,
        a.rows_removed,
        a.bytes_read,
        a.bytes_written,
    ) == (
        b.files_total,
        b.files_done,
        b.rows_removed,
        b.bytes_read,
        b.bytes_written,
    )
}

fn new_bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} files  {msg}",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// `bytes` in decimal units with one decimal: `512 B`, `12.3 kB`, `45.6 MB`, `7.8 GB`.
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} kB", b / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", b / 1e6),
        _ => format!("{:.1} GB", b / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(done: u64) -> EraseProgress {
        EraseProgress {
            files_total: 10,
            files_done: done,
            rows_removed: done * 3,
            bytes_read: 2_500_000,
            bytes_written: 0,
        }
    }

    #[test]
    fn plain_lines_are_rate_limited_and_a_final_line_is_always_printed() {
        let mut err = Vec::new();
        let mut r = Reporter::new(ProgressMode::Lines {
            every: Duration::from_secs(3600),
        });
        r.update(&progress(1), &mut err);
        r.update(&progress(2), &mut err);
        r.finish(&mut err);
        let text = String::from_utf8(err).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("erase: 1/10 files, 3 rows removed, 2.5 MB read"));
        assert!(lines[1].starts_with("erase: 2/10 files, 6 rows removed"));
    }

    #[test]
    fn byte_counts_are_shown_in_decimal_units() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(12_345), "12.3 kB");
        assert_eq!(human_bytes(2_500_000), "2.5 MB");
        assert_eq!(human_bytes(7_800_000_000), "7.8 GB");
    }
}
