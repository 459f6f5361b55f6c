//! Where generated lines go: NDJSON to a writer (stdout, a file), HTTP batches to an ingest URL,
//! or records straight into Kafka. Each sink honours the same limits (event count, duration,
//! rate) and reports progress through shared counters that a caller can print while it runs.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::{Generated, Generator};
use emporium_log::{EVENTS_TOPIC, EventLog, Record};
use emporium_schemas::intake::IntakeReport;

/// When to stop and how fast to go.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Stop after this many lines.
    pub events: Option<u64>,
    /// Stop after this much wall-clock time.
    pub duration: Option<Duration>,
    /// Lines per second; `None` for as fast as possible.
    pub rate: Option<f64>,
}

/// Counters a running sink updates and a caller can read at any time.
#[derive(Debug, Default)]
pub struct Progress {
    pub generated: AtomicU64,
    pub invalid: AtomicU64,
    pub bytes: AtomicU64,
    /// HTTP only: what ingest answered.
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP request to {url} failed: {message}")]
    Http { url: String, message: String },
    #[error("appending to the log: {0}")]
    Log(#[from] emporium_log::LogError),
    #[error("{0}")]
    Usage(String),
}

struct Pacer {
    start: Instant,
    limits: Limits,
}

impl Pacer {
    fn new(limits: Limits) -> Self {
        Self {
            start: Instant::now(),
            limits,
        }
    }

    fn done(&self, sent: u64) -> bool {
        self.limits.events.is_some_and(|n| sent >= n)
            || self
                .limits
                .duration
                .is_some_and(|d| self.start.elapsed() >= d)
    }

    /// How many lines may go next without exceeding the event limit.
    fn allowance(&self, sent: u64, want: u64) -> u64 {
        match self.limits.events {
            Some(n) => want.min(n.saturating_sub(sent)),
            None => want,
        }
    }

    /// How long to sleep so that `sent` lines are not ahead of the rate.
    fn delay(&self, sent: u64) -> Option<Duration> {
        let rate = self.limits.rate?;
        let due = Duration::from_secs_f64(sent as f64 / rate);
        due.checked_sub(self.start.elapsed())
            .filter(|d| !d.is_zero())
    }
}

fn next_batch(
    generator: &mut Generator,
    n: u64,
    progress: &Progress,
    out: &mut Vec<u8>,
) -> Vec<Generated> {
    let mut batch = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let g = generator.next_generated();
        let before = out.len();
        g.write_line(out);
        progress
            .bytes
            .fetch_add((out.len() - before) as u64, Ordering::Relaxed);
        if matches!(g, Generated::Invalid { .. }) {
            progress.invalid.fetch_add(1, Ordering::Relaxed);
        }
        batch.push(g);
    }
    progress.generated.fetch_add(n, Ordering::Relaxed);
    batch
}

/// Writes NDJSON lines to `writer` (blocking). Generation and serialization run on two threads:
/// this one simulates the shop, a second turns events into bytes and writes them, in order.
pub fn write_ndjson(
    generator: &mut Generator,
    writer: &mut (impl Write + Send),
    limits: Limits,
    progress: &Progress,
) -> Result<(), OutputError> {
    let pacer = Pacer::new(limits);
    let paced = limits.rate.is_some();
    let chunk = if paced { 10 } else { 2048 };
    let (chunks, received) = std::sync::mpsc::sync_channel::<Vec<Generated>>(8);
    std::thread::scope(|scope| {
        let serializer = scope.spawn(move || -> Result<(), OutputError> {
            let mut buf = Vec::with_capacity(1 << 20);
            for chunk in received {
                buf.clear();
                for g in &chunk {
                    g.write_line(&mut buf);
                }
                writer.write_all(&buf)?;
                if paced {
                    writer.flush()?;
                }
                progress
                    .bytes
                    .fetch_add(buf.len() as u64, Ordering::Relaxed);
            }
            writer.flush()?;
            Ok(())
        });
        let mut sent = 0u64;
        while !pacer.done(sent) {
            if let Some(d) = pacer.delay(sent) {
                std::thread::sleep(d);
            }
            let n = pacer.allowance(sent, chunk);
            let batch: Vec<Generated> = (0..n).map(|_| generator.next_generated()).collect();
            let invalid = batch
                .iter()
                .filter(|g| matches!(g, Generated::Invalid { .. }))
                .count();
            progress
                .invalid
                .fetch_add(invalid as u64, Ordering::Relaxed);
            if chunks.send(batch).is_err() {
                break; // the writer failed; its error is returned below
            }
            sent += n;
            progress.generated.fetch_add(n, Ordering::Relaxed);
        }
        drop(chunks);
        serializer
            .join()
            .unwrap_or_else(|_| Err(OutputError::Usage("the writer thread panicked".into())))
    })
}

/// Where and as whom batches are posted: an ingest endpoint (`.../v1/events`) and the producer
/// token sent as `Authorization: Bearer` (one whose scopes cover every type the generator makes:
/// `emporium token --producer generator --scope storefront,orders,catalog,accounts`).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: String,
    pub token: String,
}

/// Sends NDJSON batches to an ingest endpoint, `concurrency` requests at once, resending a batch
/// whole when ingest answers 503 (safe: event ids make it idempotent).
pub async fn send_http(
    generator: &mut Generator,
    endpoint: &Endpoint,
    batch_size: usize,
    concurrency: usize,
    limits: Limits,
    progress: Arc<Progress>,
) -> Result<(), OutputError> {
    let counters = Arc::clone(&progress);
    let lines = move |n: u64, body: &mut Vec<u8>| {
        next_batch(generator, n, &counters, body);
    };
    send_http_lines(lines, endpoint, batch_size, concurrency, limits, progress).await
}

/// [`send_http`] with the lines from `lines(n, body)`, which appends `n` NDJSON lines to `body`:
/// for a caller that made its traffic beforehand (a benchmark keeping the generator's CPU out of
/// what it measures).
pub async fn send_http_lines(
    mut lines: impl FnMut(u64, &mut Vec<u8>),
    endpoint: &Endpoint,
    batch_size: usize,
    concurrency: usize,
    limits: Limits,
    progress: Arc<Progress>,
) -> Result<(), OutputError> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .map_err(|e| OutputError::Http {
            url: endpoint.url.clone(),
            message: e.to_string(),
        })?;
    let pacer = Pacer::new(limits);
    let mut sent = 0u64;
    let mut in_flight = FuturesUnordered::new();
    let batch_size = batch_size.max(1) as u64;
    loop {
        while in_flight.len() < concurrency.max(1) && !pacer.done(sent) {
            if let Some(d) = pacer.delay(sent) {
                // Small batches at low rates, so a demo looks live.
                if in_flight.is_empty() {
                    tokio::time::sleep(d).await;
                } else {
                    break;
                }
            }
            let want = match limits.rate {
                Some(rate) => ((rate / 10.0).ceil() as u64).clamp(1, batch_size),
                None => batch_size,
            };
            let n = pacer.allowance(sent, want);
            let mut body = Vec::with_capacity(n as usize * 320);
            lines(n, &mut body);
            sent += n;
            in_flight.push(post_batch(
                client.clone(),
                endpoint.clone(),
                Bytes::from(body),
                Arc::clone(&progress),
            ));
        }
        match in_flight.next().await {
            Some(result) => result?,
            None => break,
        }
    }
    Ok(())
}

async fn post_batch(
    client: reqwest::Client,
    endpoint: Endpoint,
    body: Bytes,
    progress: Arc<Progress>,
) -> Result<(), OutputError> {
    let fail = |message: String| OutputError::Http {
        url: endpoint.url.clone(),
        message,
    };
    for attempt in 0..20 {
        let response = client
            .post(&endpoint.url)
            .bearer_auth(&endpoint.token)
            .header("content-type", "application/x-ndjson")
            .body(body.clone())
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) if attempt < 19 && (e.is_connect() || e.is_timeout()) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(e) => return Err(fail(e.to_string())),
        };
        let status = response.status();
        if status.as_u16() == 503 {
            let wait = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        let text = response.text().await.map_err(|e| fail(e.to_string()))?;
        if status.as_u16() != 200 && status.as_u16() != 422 {
            return Err(fail(format!("{status}: {text}")));
        }
        let report: IntakeReport = serde_json::from_str(&text)
            .map_err(|e| fail(format!("unexpected answer ({e}): {text}")))?;
        progress
            .accepted
            .fetch_add(report.accepted as u64, Ordering::Relaxed);
        progress
            .duplicates
            .fetch_add(report.duplicates as u64, Ordering::Relaxed);
        progress
            .rejected
            .fetch_add(report.rejected.len() as u64, Ordering::Relaxed);
        return Ok(());
    }
    Err(fail("still unavailable after 20 attempts".into()))
}

/// Appends valid events straight to the log (no ingest validation: invalid lines are refused).
pub async fn send_to_log(
    generator: &mut Generator,
    log: &dyn EventLog,
    batch_size: usize,
    limits: Limits,
    progress: Arc<Progress>,
) -> Result<(), OutputError> {
    if generator.config().invalid_fraction > 0.0 {
        return Err(OutputError::Usage(
            "--invalid-fraction needs an output that validates (stdout, a file or --http): \
             writing to the log directly would skip validation"
                .into(),
        ));
    }
    let pacer = Pacer::new(limits);
    let mut sent = 0u64;
    while !pacer.done(sent) {
        if let Some(d) = pacer.delay(sent) {
            tokio::time::sleep(d).await;
        }
        let want = match limits.rate {
            Some(rate) => ((rate / 10.0).ceil() as u64).clamp(1, batch_size as u64),
            None => batch_size as u64,
        };
        let n = pacer.allowance(sent, want);
        let mut records = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let event = generator.next_event();
            let value = event.to_json();
            progress
                .bytes
                .fetch_add(value.len() as u64, Ordering::Relaxed);
            records.push(Record::new(
                event.partition_key().as_bytes().to_vec(),
                value,
            ));
        }
        log.append(EVENTS_TOPIC, records).await?;
        sent += n;
        progress.generated.fetch_add(n, Ordering::Relaxed);
        progress.accepted.fetch_add(n, Ordering::Relaxed);
    }
    Ok(())
}
