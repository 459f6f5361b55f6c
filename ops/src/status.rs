//! The status lines long-running subcommands print every few seconds: one shape for all of them,
//! `[  12s] part: figures | part: figures`, with continuation lines indented under the first.

use std::io::Write as _;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Prints `render(elapsed)`'s lines every `every` until `cancel`; nothing when `every` is zero.
pub fn spawn<F, Fut>(
    every: Duration,
    cancel: CancellationToken,
    mut render: F,
) -> Option<tokio::task::JoinHandle<()>>
where
    F: FnMut(Duration) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Vec<String>> + Send,
{
    if every.is_zero() {
        return None;
    }
    Some(tokio::spawn(async move {
        let start = Instant::now();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let lines = render(start.elapsed()).await;
            // Not `println!`, which panics when stdout fails (a full disk under a redirect, a
            // closed pipe): a status line is not worth the task that prints it.
            let _ = writeln!(
                std::io::stdout().lock(),
                "{}",
                format_lines(start.elapsed(), &lines)
            );
        }
    }))
}

/// The lines of one report: the first after the elapsed time, the others indented under it.
pub fn format_lines(elapsed: Duration, lines: &[String]) -> String {
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i == 0 {
            out.push_str(&format!("[{:>5.0}s] {line}", elapsed.as_secs_f64()));
        } else {
            out.push_str(&format!("\n         {line}"));
        }
    }
    out
}

/// Events per second between two readings of a counter (shareable: a status task reads it).
#[derive(Debug)]
pub struct Rate {
    last: std::sync::Mutex<(Instant, u64)>,
}

impl Rate {
    pub fn new(start: u64) -> Self {
        Self {
            last: std::sync::Mutex::new((Instant::now(), start)),
        }
    }

    /// The rate since the last call (or since `new`), and remembers `now_count`.
    pub fn per_second(&self, now_count: u64) -> f64 {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let secs = (now - last.0).as_secs_f64().max(1e-9);
        let rate = now_count.saturating_sub(last.1) as f64 / secs;
        *last = (now, now_count);
        rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_lines_align_under_the_first() {
        let text = format_lines(
            Duration::from_secs(12),
            &["log: 5 events".into(), "lakehouse: off".into()],
        );
        assert_eq!(text, "[   12s] log: 5 events\n         lakehouse: off");
    }
}
