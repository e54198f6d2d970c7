//! Progress bars on stderr for transfers the user waits on: hook and model
//! uploads (`configure`) and model downloads (`try`).
//!
//! Small transfers draw nothing, and indicatif draws nothing when stderr is
//! not a terminal, so scripts and tests see clean output.

use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use cls::model::ProgressFn;

/// Transfers below this size finish before a bar would be worth reading.
pub const PROGRESS_THRESHOLD_BYTES: u64 = 4 << 20;

/// A byte-counting bar, shown only when `total` is large.
pub fn bytes_bar(verb: &str, total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), draw_target(total));
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{verb} {{bar:40}} {{bytes}}/{{total_bytes}} {{bytes_per_sec}} {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// A download bar fed by the model cache's progress reports; the total is
/// known only once the download starts, so the bar appears then.
pub fn download_progress(what: &str) -> (ProgressBar, ProgressFn) {
    let bar = bytes_bar(&format!("downloading {what}"), 0);
    let feed = bar.clone();
    let report: ProgressFn = Arc::new(move |done: u64, total: u64| {
        if feed.length() != Some(total) {
            feed.set_length(total);
            feed.set_draw_target(draw_target(total));
        }
        feed.set_position(done);
    });
    (bar, report)
}

fn draw_target(total: u64) -> ProgressDrawTarget {
    if total >= PROGRESS_THRESHOLD_BYTES {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_reports_move_the_bar_once_the_total_is_known() {
        let (bar, report) = download_progress("m");
        assert_eq!(bar.length(), Some(0));
        report(3 << 20, 10 << 20);
        assert_eq!(bar.length(), Some(10 << 20));
        assert_eq!(bar.position(), 3 << 20);
        report(10 << 20, 10 << 20);
        assert_eq!(bar.position(), 10 << 20);
    }

    #[test]
    fn small_transfers_draw_nothing() {
        assert!(bytes_bar("uploading", 1024).is_hidden());
    }
}
