//! Restarting a part of a process that stopped on an error, while the rest goes on.
//!
//! `emporium run` holds ingest, the read API, the dataflow and the lakehouse sink. A store that
//! refuses writes or a full lakehouse disk stops the dataflow or the sink; it must not stop
//! ingest, which only needs the log. [`supervise`] runs one such part: when it ends on its own
//! (an error), `/readyz` says which part is down and why ([`Health`]), and the part is started
//! again after a backoff with jitter (exponential, capped; `backon`), resuming from its own
//! durable state (the dataflow from its checkpoint, the sink from its tables' positions). A part
//! that then runs for a while starts the backoff from the beginning again.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

use crate::ReadinessCheck;

/// A running part: it can say when it ended on its own, and be stopped (giving its outcome).
#[async_trait]
pub trait Part: Send + Sync {
    /// Resolves when the part has ended by itself (on an error).
    async fn ended(&self);
    /// Stops the part (or collects it, once ended) and returns how it ended.
    async fn stop(self: Box<Self>) -> anyhow::Result<()>;
}

/// How soon and how often a failed part is started again.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    /// A part that ran this long before failing starts from `first` again.
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_millis(500),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    fn delays(&self) -> backon::ExponentialBackoff {
        ExponentialBuilder::new()
            .with_min_delay(self.first)
            .with_max_delay(self.max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    }
}

/// An error after which the part must not be started again: another process took over its role
/// (a newer writer fenced it, ADR 0012), and starting again would take the role back. The
/// supervisor then leaves the part down, with the reason in `/readyz`, until the process stops.
#[derive(Debug)]
pub struct Permanent(pub String);

impl std::fmt::Display for Permanent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Permanent {}

/// What [`Health`] says before the first start has been tried.
const STARTING: &str = "starting";

/// Whether a supervised part is up, for `/readyz`: down with the reason while it is being
/// restarted.
pub struct Health {
    name: &'static str,
    down: Mutex<Option<String>>,
    /// Notified when the state changes.
    changed: tokio::sync::Notify,
}

impl Health {
    /// A part called `name` (in `/readyz` answers and the `part` label of metrics), starting.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            down: Mutex::new(Some(STARTING.into())),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn set(&self, down: Option<String>) {
        *self.down.lock().unwrap_or_else(|e| e.into_inner()) = down;
        self.changed.notify_waiters();
    }

    /// Resolves once the first start has been tried (the part is up, or down with a reason).
    pub async fn started(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.down().as_deref() != Some(STARTING) {
                return;
            }
            changed.await;
        }
    }

    /// Why the part is down (`None`: up).
    pub fn down(&self) -> Option<String> {
        self.down.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait]
impl ReadinessCheck for Health {
    async fn check(&self) -> Result<(), String> {
        match self.down() {
            None => Ok(()),
            Some(why) => Err(format!("{}: {why}", self.name)),
        }
    }
}

/// Runs the part `start` makes until `cancel`, starting it again after each failure (its own or
/// at start) with `backoff`; on `cancel`, stops it and returns how that went.
pub async fn supervise<F, Fut>(
    health: &Health,
    cancel: &CancellationToken,
    backoff: &Backoff,
    mut start: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Box<dyn Part>>>,
{
    let mut delays = backoff.delays();
    let mut attempt = 0u64;
    loop {
        let failure = match start().await {
            Ok(part) => {
                health.set(None);
                let began = Instant::now();
                tokio::select! {
                    _ = cancel.cancelled() => return part.stop().await,
                    _ = part.ended() => {}
                }
                if began.elapsed() >= backoff.reset_after {
                    delays = backoff.delays();
                    attempt = 0;
                }
                match part.stop().await {
                    Err(e) => Err(e),
                    Ok(()) => Ok("ended without an error".to_owned()),
                }
            }
            Err(e) => Err(e),
        };
        let failure = match failure {
            Ok(failure) => failure,
            Err(e) if e.chain().any(|c| c.is::<Permanent>()) => {
                let failure = format!("{e:#}");
                tracing::error!(
                    part = health.name,
                    error = %failure,
                    "stopped for good: not starting it again"
                );
                metrics::counter!("emporium_part_stopped_total", "part" => health.name)
                    .increment(1);
                health.set(Some(format!("stopped for good: {failure}")));
                cancel.cancelled().await;
                return Ok(());
            }
            Err(e) => format!("{e:#}"),
        };
        attempt += 1;
        let delay = delays.next().unwrap_or(backoff.max);
        tracing::error!(
            part = health.name,
            attempt,
            error = %failure,
            "stopped; starting again in {:.1} s",
            delay.as_secs_f64()
        );
        metrics::counter!("emporium_part_restarts_total", "part" => health.name).increment(1);
        health.set(Some(format!(
            "stopped on an error, starting again in {:.1} s (attempt {attempt}): {failure}",
            delay.as_secs_f64()
        )));
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use anyhow::Context as _;

    use super::*;

    /// A part that fails at once for its first `failures` starts, then runs until stopped.
    struct Flaky {
        failing: bool,
        ended: CancellationToken,
    }

    #[async_trait]
    impl Part for Flaky {
        async fn ended(&self) {
            self.ended.cancelled().await
        }
        async fn stop(self: Box<Self>) -> anyhow::Result<()> {
            if self.failing {
                anyhow::bail!("the store refused a write")
            }
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_part_is_started_again_with_growing_delays_and_reported_meanwhile() {
        let health = Arc::new(Health::new("dataflow"));
        let cancel = CancellationToken::new();
        let starts = Arc::new(AtomicUsize::new(0));
        let backoff = Backoff {
            first: Duration::from_secs(1),
            max: Duration::from_secs(8),
            reset_after: Duration::from_secs(60),
        };
        let run = {
            let (health, cancel, starts) =
                (Arc::clone(&health), cancel.clone(), Arc::clone(&starts));
            tokio::spawn(async move {
                supervise(&health, &cancel, &backoff, || {
                    let n = starts.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let failing = n < 4;
                        let ended = CancellationToken::new();
                        if failing {
                            ended.cancel();
                        }
                        Ok(Box::new(Flaky { failing, ended }) as Box<dyn Part>)
                    }
                })
                .await
            })
        };
        // Four failures: delays of about 1, 2, 4 and 8 s (jitter adds up to as much again).
        let began = tokio::time::Instant::now();
        while starts.load(Ordering::SeqCst) < 5 {
            let why = health.check().await.expect_err("down between starts");
            assert!(
                why == "dataflow: starting"
                    || why.starts_with("dataflow: stopped on an error")
                        && why.contains("refused a write"),
                "{why}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let waited = began.elapsed();
        assert!(
            waited >= Duration::from_secs(15) && waited <= Duration::from_secs(31),
            "backed off 1 + 2 + 4 + 8 s with jitter: {waited:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(health.check().await, Ok(()), "up once it runs");
        cancel.cancel();
        run.await.expect("joined").expect("a clean stop");
        assert_eq!(starts.load(Ordering::SeqCst), 5);
    }

    /// A part that ends at once, fenced by a newer writer.
    struct Fenced;

    #[async_trait]
    impl Part for Fenced {
        async fn ended(&self) {}
        async fn stop(self: Box<Self>) -> anyhow::Result<()> {
            Err(anyhow::Error::new(Permanent(
                "writer \"decider\" (claim 1) was fenced".into(),
            )))
            .context("inventory dataflow")
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_part_stopped_for_good_is_not_started_again() {
        let health = Arc::new(Health::new("dataflow"));
        let cancel = CancellationToken::new();
        let starts = Arc::new(AtomicUsize::new(0));
        let run = {
            let (health, cancel, starts) =
                (Arc::clone(&health), cancel.clone(), Arc::clone(&starts));
            tokio::spawn(async move {
                supervise(&health, &cancel, &Backoff::default(), || {
                    starts.fetch_add(1, Ordering::SeqCst);
                    async { Ok(Box::new(Fenced) as Box<dyn Part>) }
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(starts.load(Ordering::SeqCst), 1, "never started again");
        let why = health.check().await.expect_err("down");
        assert!(
            why.starts_with("dataflow: stopped for good: inventory dataflow: writer"),
            "{why}"
        );
        cancel.cancel();
        run.await.expect("joined").expect("returns once cancelled");
    }
}
