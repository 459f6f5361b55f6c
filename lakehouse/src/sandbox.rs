//! Where an ad hoc query runs, so that no query can stall the server that took it: on threads of
//! its own (a tokio runtime per query, its threads at a lower CPU priority than the ones that
//! answer HTTP), under a deadline that answers on time whatever the query is doing, and under a
//! memory backstop that cancels it when the process grows past its limit.
//!
//! DataFusion's memory pool bounds what its operators reserve, but not what expressions
//! allocate (`repeat` of a huge string, an aggregate that builds one value from 10⁸ rows): the
//! backstop watches the process's resident memory instead, and [`crate::functions`]'s bounded
//! functions refuse the worst expressions before they allocate. A cancelled query's threads are
//! left to finish their current step in the background; its answer is sent at once.
//! See `specs/adr/0009-lakehouse-delta-tables.md` ("Hostile queries").

use std::future::Future;
use std::time::{Duration, Instant};

use crate::SqlError;

/// How often the deadline and the memory are checked while a query runs.
const CHECK_EVERY: Duration = Duration::from_millis(20);

/// Slack above the memory limit before the backstop fires: what the process allocates besides
/// the query (other requests, the dataflow) while it runs.
const SLACK_BYTES: usize = 256 * 1024 * 1024;

/// Runs the future `make` returns on a runtime of its own with `threads` worker threads, and
/// answers by `timeout`: [`SqlError::Timeout`] then, or [`SqlError::ResourcesExhausted`] as soon
/// as the process's resident memory has grown by more than `memory_limit` (plus slack) since the
/// start. `held` (a concurrency permit, say) is kept until the query's thread has ended, not
/// just until the answer: a cancelled query still in a step that does not yield holds its slot.
pub async fn run<T, F, Fut, H>(
    threads: usize,
    timeout: Duration,
    memory_limit: usize,
    held: H,
    make: F,
) -> Result<T, SqlError>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, SqlError>> + 'static,
    H: Send + 'static,
{
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
    let (cancel_tx, cancel_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("emporium-sql-main".into())
        .spawn(move || {
            let _held = held;
            lower_priority();
            // Built on this thread, so that it is also dropped here, outside any runtime.
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads.max(1))
                .thread_name("emporium-sql")
                .on_thread_start(lower_priority)
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = done_tx.send(Err(SqlError::Execution(format!(
                        "starting the query's threads: {e}"
                    ))));
                    return;
                }
            };
            let result = runtime.block_on(async move {
                tokio::select! {
                    result = make() => Some(result),
                    // The caller gave up (deadline, memory, or its client went away): dropping
                    // the query's future drops its streams, which abort their tasks.
                    _ = cancel_rx => None,
                }
            });
            if let Some(result) = result {
                let _ = done_tx.send(result);
            }
            // Whatever a task is in the middle of finishes in the background.
            runtime.shutdown_background();
        })
        .map_err(|e| SqlError::Execution(format!("starting the query's thread: {e}")))?;

    let started = Instant::now();
    let baseline = resident_bytes();
    let mut tick = tokio::time::interval(CHECK_EVERY);
    let outcome = loop {
        tokio::select! {
            result = &mut done_rx => {
                break result.unwrap_or_else(|_| {
                    Err(SqlError::Execution("the query's thread stopped unexpectedly".into()))
                });
            }
            _ = tick.tick() => {
                if started.elapsed() >= timeout {
                    break Err(SqlError::Timeout(timeout));
                }
                if let (Some(start), Some(now)) = (baseline, resident_bytes())
                    && now.saturating_sub(start) > memory_limit.saturating_add(SLACK_BYTES)
                {
                    metrics::counter!("emporium_sql_memory_backstop_total").increment(1);
                    break Err(SqlError::ResourcesExhausted {
                        limit: memory_limit,
                        detail: format!(
                            "the server grew by {} MiB while it ran (expressions such as repeat or \
                             string_agg allocate outside the operators' pool); cancelled",
                            now.saturating_sub(start) / (1024 * 1024)
                        ),
                    });
                }
            }
        }
    };
    let _ = cancel_tx.send(());
    outcome
}

/// The process's resident memory, from `/proc/self/statm` (`None` where there is none).
fn resident_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    // The page size of every Linux this runs on; a wrong guess only scales the backstop.
    Some(pages * 4096)
}

/// Query threads yield the CPU to the threads that answer HTTP (`nice` 10 for this thread; on
/// Linux the priority is per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only reads its integer arguments; `who` 0 is the calling thread on
    // Linux. A failure leaves the priority as it was, which is harmless.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn a_query_that_will_not_end_is_answered_at_its_deadline() {
        let started = Instant::now();
        let result: Result<(), SqlError> =
            runtime().block_on(run(1, Duration::from_millis(300), 1 << 30, (), || async {
                // CPU in steps that never yield for long, forever.
                loop {
                    std::thread::sleep(Duration::from_millis(5));
                    tokio::task::yield_now().await;
                }
            }));
        assert!(matches!(result, Err(SqlError::Timeout(_))), "{result:?}");
        assert!(started.elapsed() < Duration::from_millis(600));
    }

    #[test]
    fn a_step_that_never_yields_still_gets_its_answer_on_time() {
        let started = Instant::now();
        let result: Result<(), SqlError> =
            runtime().block_on(run(1, Duration::from_millis(200), 1 << 30, (), || async {
                std::thread::sleep(Duration::from_secs(2));
                Ok(())
            }));
        assert!(matches!(result, Err(SqlError::Timeout(_))), "{result:?}");
        assert!(started.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn memory_past_the_limit_cancels_the_query() {
        let result: Result<(), SqlError> =
            runtime().block_on(run(1, Duration::from_secs(20), 64 << 20, (), || async {
                let mut held: Vec<Vec<u8>> = Vec::new();
                loop {
                    // Touched, so it is resident.
                    held.push(vec![1u8; 16 << 20]);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    if held.len() > 200 {
                        return Ok(());
                    }
                }
            }));
        assert!(
            matches!(result, Err(SqlError::ResourcesExhausted { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn an_answer_comes_back() {
        let result = runtime().block_on(run(2, Duration::from_secs(5), 1 << 30, (), || async {
            Ok::<_, SqlError>(42)
        }));
        assert_eq!(result.ok(), Some(42));
    }
}
