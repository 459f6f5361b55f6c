//! The Kafka backend: any Kafka-protocol broker through librdkafka (rdkafka). It must never report
//! an append as done before every record is acknowledged by all in-sync replicas.
//!
//! Producer: idempotent (`enable.idempotence=true`, so librdkafka's own retries never duplicate or
//! reorder), `acks=all`, lz4 compression, a short linger so concurrent appends share requests.
//! Partitions are chosen here with [`partition_for`] (Kafka's murmur2), not by librdkafka, so both
//! backends place a key identically. Consumers use consumer groups with manual commits.
//! See `specs/adr/0002-topics-and-partition-keys.md`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::join_all;
use parking_lot::RwLock;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::{
    ConsumedRecord, EventLog, LogConsumer, LogError, PartitionReader, Position, Record, Result,
    WriterClaim, partition_for,
};

/// Settings of the Kafka backend.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port...]` of the bootstrap brokers.
    pub brokers: String,
    /// Replicas of each topic created by Emporium (3 in production; 1 for a one-broker setup).
    pub replication_factor: i32,
    /// `compression.type` of the producer: none, gzip, snappy, lz4, zstd.
    pub compression: String,
    /// How long librdkafka keeps retrying a record before reporting failure.
    pub delivery_timeout: Duration,
    /// Extra librdkafka properties for every client, applied last (e.g. security settings).
    pub properties: HashMap<String, String>,
    /// Extra librdkafka properties for consumer-group members only (e.g. `session.timeout.ms`).
    pub consumer_properties: HashMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            replication_factor: 1,
            compression: "lz4".into(),
            delivery_timeout: Duration::from_secs(30),
            properties: HashMap::new(),
            consumer_properties: HashMap::new(),
        }
    }
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            ..Self::default()
        }
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        // Reconnect within a second of a broker's return, as Java clients do (librdkafka's
        // default backs off up to 10 s): appends held during an outage land soon after it.
        c.set("reconnect.backoff.max.ms", "1000");
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

/// The event log on a Kafka cluster.
pub struct KafkaLog {
    config: KafkaConfig,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// Metadata and watermark queries.
    meta: Arc<BaseConsumer>,
    partitions: RwLock<HashMap<String, u32>>,
    /// The writers claimed by this client, by name: the newest claim of each (ADR 0012).
    writers: parking_lot::Mutex<HashMap<String, Arc<TransactionalWriter>>>,
}

/// A claimed writer: a transactional producer, one transaction per append.
struct TransactionalWriter {
    epoch: u64,
    producer: Arc<FutureProducer>,
    /// One transaction at a time.
    busy: tokio::sync::Mutex<()>,
}

/// Sends every record to the partition of its key (of `n`) and waits for each delivery report.
async fn send_all(
    producer: &FutureProducer,
    topic: &str,
    n: u32,
    records: &[Record],
    timeout: Duration,
) -> Vec<rdkafka::producer::future_producer::OwnedDeliveryResult> {
    let sends = records.iter().map(|r| {
        let partition = partition_for(&r.key, n);
        let record = FutureRecord::to(topic)
            .key(r.key.as_ref())
            .payload(r.value.as_ref())
            .partition(partition as i32);
        producer.send(record, timeout)
    });
    join_all(sends).await
}

/// Whether a transactional call failed because a newer claim of the `transactional.id` fenced
/// this producer (the broker's answer, or librdkafka's fatal error after it).
fn is_fenced(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
        )
    )
}

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

impl KafkaLog {
    /// The producer's settings: every producer of this client, transactional or not.
    fn producer_config(config: &KafkaConfig) -> ClientConfig {
        let mut producer_config = config.client();
        producer_config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", &config.compression)
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set(
                "delivery.timeout.ms",
                config.delivery_timeout.as_millis().to_string(),
            );
        for (k, v) in &config.properties {
            producer_config.set(k, v);
        }
        producer_config
    }

    pub fn connect(config: KafkaConfig) -> Result<Self> {
        let producer: FutureProducer = Self::producer_config(&config).create()?;
        let admin: AdminClient<DefaultClientContext> = config.client().create()?;
        let meta: BaseConsumer = config
            .client()
            .set("group.id", "emporium-metadata")
            .set("enable.auto.commit", "false")
            .create()?;
        Ok(Self {
            config,
            producer,
            admin,
            meta: Arc::new(meta),
            partitions: RwLock::new(HashMap::new()),
            writers: parking_lot::Mutex::new(HashMap::new()),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(Arc<BaseConsumer>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let meta = Arc::clone(&self.meta);
        tokio::task::spawn_blocking(move || f(meta))
            .await
            .map_err(|e| LogError::Unavailable(format!("metadata task failed: {e}")))?
    }

    /// Each partition's (low, high) watermarks: its first retained offset and its end.
    async fn watermarks(&self, topic: &str) -> Result<Vec<(u64, u64)>> {
        let n = self.partition_count(topic).await?;
        let name = topic.to_owned();
        self.blocking(move |meta| {
            (0..n)
                .map(|p| {
                    let (low, high) = meta.fetch_watermarks(&name, p as i32, METADATA_TIMEOUT)?;
                    Ok((low.max(0) as u64, high.max(0) as u64))
                })
                .collect()
        })
        .await
    }

    /// The partition count from cluster metadata (`None` when the topic does not exist yet).
    async fn fetch_partition_count(&self, topic: &str) -> Result<Option<u32>> {
        let name = topic.to_owned();
        self.blocking(move |meta| {
            let md = meta.fetch_metadata(Some(&name), METADATA_TIMEOUT)?;
            Ok(md
                .topics()
                .iter()
                .find(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty())
                .map(|t| t.partitions().len() as u32))
        })
        .await
    }
}

#[async_trait]
impl EventLog for KafkaLog {
    fn describe(&self) -> String {
        format!("Kafka at {}", self.config.brokers)
    }

    fn last_unreachable_ms(&self) -> Option<i64> {
        Some(LAST_UNREACHABLE_MS.load(Ordering::Relaxed)).filter(|&ms| ms > 0)
    }

    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32> {
        if partitions == 0 {
            return Err(LogError::Config(
                "a topic needs at least one partition".into(),
            ));
        }
        if let Some(n) = self.fetch_partition_count(topic).await? {
            self.partitions.write().insert(topic.to_owned(), n);
            return Ok(n);
        }
        let new = NewTopic::new(
            topic,
            partitions as i32,
            TopicReplication::Fixed(self.config.replication_factor),
        );
        let results = self
            .admin
            .create_topics(
                [&new],
                &AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT)),
            )
            .await?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(LogError::Unavailable(format!(
                        "creating topic {name}: {}",
                        KafkaError::AdminOp(code)
                    )));
                }
            }
        }
        // Metadata propagates asynchronously after creation.
        let deadline = Instant::now() + METADATA_TIMEOUT;
        loop {
            if let Some(n) = self.fetch_partition_count(topic).await? {
                self.partitions.write().insert(topic.to_owned(), n);
                return Ok(n);
            }
            if Instant::now() > deadline {
                return Err(LogError::Unavailable(format!(
                    "topic {topic} was created but does not appear in metadata"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn partition_count(&self, topic: &str) -> Result<u32> {
        if let Some(&n) = self.partitions.read().get(topic) {
            return Ok(n);
        }
        let n = self
            .fetch_partition_count(topic)
            .await?
            .ok_or_else(|| LogError::UnknownTopic(topic.to_owned()))?;
        self.partitions.write().insert(topic.to_owned(), n);
        Ok(n)
    }

    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Position>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let n = self.partition_count(topic).await?;
        let deliveries = send_all(
            &self.producer,
            topic,
            n,
            &records,
            self.config.delivery_timeout,
        )
        .await;
        let mut positions = Vec::with_capacity(deliveries.len());
        let mut failure = None;
        for d in deliveries {
            match d {
                Ok(delivery) => positions.push(Some(Position {
                    partition: delivery.partition as u32,
                    offset: delivery.offset as u64,
                })),
                Err((e, _)) => {
                    failure.get_or_insert(e);
                    positions.push(None);
                }
            }
        }
        match failure {
            None => Ok(positions.into_iter().flatten().collect()),
            Some(e) => {
                let appended: Vec<usize> = positions
                    .iter()
                    .enumerate()
                    .filter_map(|(i, p)| p.map(|_| i))
                    .collect();
                let cause = format!("Kafka did not acknowledge the append: {e}");
                Err(if appended.is_empty() {
                    LogError::Unavailable(cause)
                } else {
                    LogError::PartiallyAppended { appended, cause }
                })
            }
        }
    }

    async fn claim_writer(&self, writer: &str) -> Result<WriterClaim> {
        if writer.is_empty()
            || !writer
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(LogError::Config(format!(
                "writer name {writer:?}: expected letters, digits, '.', '_' or '-'"
            )));
        }
        let mut config = Self::producer_config(&self.config);
        // A transaction must outlive the deliveries in it.
        let timeout = self.config.delivery_timeout.max(Duration::from_secs(60));
        config
            .set("transactional.id", format!("emporium-{writer}"))
            .set("transaction.timeout.ms", timeout.as_millis().to_string());
        let producer: Arc<FutureProducer> = Arc::new(config.create()?);
        // Registers the id with the transaction coordinator: the previous producer with this id
        // is fenced, and its open transaction aborted.
        let init = Arc::clone(&producer);
        let wait = self.config.delivery_timeout;
        tokio::task::spawn_blocking(move || init.init_transactions(wait))
            .await
            .map_err(|e| LogError::Unavailable(format!("claim task failed: {e}")))?
            .map_err(|e| LogError::Unavailable(format!("claiming writer {writer:?}: {e}")))?;
        let mut writers = self.writers.lock();
        let epoch = writers.get(writer).map_or(0, |w| w.epoch) + 1;
        writers.insert(
            writer.to_owned(),
            Arc::new(TransactionalWriter {
                epoch,
                producer,
                busy: tokio::sync::Mutex::new(()),
            }),
        );
        Ok(WriterClaim {
            name: writer.to_owned(),
            epoch,
        })
    }

    async fn append_as(
        &self,
        claim: &WriterClaim,
        topic: &str,
        records: Vec<Record>,
    ) -> Result<Vec<Position>> {
        let fenced = || LogError::Fenced {
            writer: claim.name.clone(),
            epoch: claim.epoch,
        };
        let writer = self
            .writers
            .lock()
            .get(&claim.name)
            .filter(|w| w.epoch == claim.epoch)
            .cloned()
            .ok_or_else(fenced)?;
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let n = self.partition_count(topic).await?;
        let _one_at_a_time = writer.busy.lock().await;
        let timeout = self.config.delivery_timeout;
        let call = |what: &'static str, f: fn(&FutureProducer, Duration) -> KafkaResult<()>| {
            let producer = Arc::clone(&writer.producer);
            async move {
                tokio::task::spawn_blocking(move || f(&producer, timeout))
                    .await
                    .map_err(|e| LogError::Unavailable(format!("{what} task failed: {e}")))?
                    .map_err(|e| {
                        if is_fenced(&e) {
                            fenced()
                        } else {
                            LogError::Unavailable(format!("{what}: {e}"))
                        }
                    })
            }
        };
        call("begin the transaction", |p, _| p.begin_transaction()).await?;
        let mut positions = Vec::with_capacity(records.len());
        let mut failure = None;
        for delivery in send_all(&writer.producer, topic, n, &records, timeout).await {
            match delivery {
                Ok(d) => positions.push(Position {
                    partition: d.partition as u32,
                    offset: d.offset as u64,
                }),
                Err((e, _)) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            // Nothing of the batch becomes visible: abort (a fenced producer cannot, and the
            // broker aborted its transaction already).
            if is_fenced(&e) {
                return Err(fenced());
            }
            call("abort the transaction", |p, t| p.abort_transaction(t)).await?;
            return Err(LogError::Unavailable(format!(
                "Kafka did not acknowledge the append (the transaction was aborted): {e}"
            )));
        }
        // A retriable commit error leaves the outcome open: committing again settles it.
        let commit = |p: &FutureProducer, t: Duration| {
            let mut tries = 0;
            loop {
                match p.commit_transaction(t) {
                    Err(KafkaError::Transaction(e)) if e.is_retriable() && tries < 3 => tries += 1,
                    result => return result,
                }
            }
        };
        if let Err(e) = call("commit the transaction", commit).await {
            if !matches!(e, LogError::Fenced { .. }) {
                // Whatever the commit's outcome, abort what may still be open; an aborted
                // batch is safe to send again.
                let _ = call("abort the transaction", |p, t| p.abort_transaction(t)).await;
            }
            return Err(e);
        }
        Ok(positions)
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<u64>> {
        Ok(self
            .watermarks(topic)
            .await?
            .into_iter()
            .map(|(_, high)| high)
            .collect())
    }

    async fn start_offsets(&self, topic: &str) -> Result<Vec<u64>> {
        Ok(self
            .watermarks(topic)
            .await?
            .into_iter()
            .map(|(low, _)| low)
            .collect())
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<ConsumedRecord>> {
        let n = self.partition_count(topic).await?;
        if partition >= n {
            return Err(LogError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
            });
        }
        let config = self.config.client();
        let name = topic.to_owned();
        self.blocking(move |meta| {
            let (low, high) = meta.fetch_watermarks(&name, partition as i32, METADATA_TIMEOUT)?;
            let (low, high) = (low.max(0) as u64, high.max(0) as u64);
            if from < low {
                return Err(LogError::gap(&name, partition, from, low));
            }
            let mut out = Vec::new();
            if from >= high || max == 0 {
                return Ok(out);
            }
            let reader: BaseConsumer = config
                .clone()
                .set("group.id", "emporium-reader")
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "error")
                .set("enable.partition.eof", "true")
                // The end is seen on an empty fetch: do not let the broker hold it long.
                .set("fetch.wait.max.ms", "10")
                .create()?;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&name, partition as i32, Offset::Offset(from as i64))?;
            reader.assign(&tpl)?;
            // Records up to `max` or the partition's end (`PartitionEOF`, at the last stable
            // offset). Not `high - from` records: transaction markers and aborted records take
            // offsets that are never returned (ADR 0012).
            let deadline = Instant::now() + METADATA_TIMEOUT;
            let mut at_end = false;
            while out.len() < max && !at_end && Instant::now() < deadline {
                match reader.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        let record = owned(&m);
                        at_end = record.offset + 1 >= high;
                        out.push(record);
                    }
                    Some(Err(KafkaError::PartitionEOF(_))) => at_end = true,
                    Some(Err(e)) if is_offset_reset(&e) => {
                        let next = out.last().map_or(from, |r| r.offset + 1);
                        return Err(gap_at(&reader, &name, partition, next));
                    }
                    Some(Err(e)) => return Err(e.into()),
                    // Nothing fetched: at the end if the position passed the markers up to it.
                    None => {
                        at_end = position_of(&reader, &name, partition).is_some_and(|p| p >= high)
                    }
                }
            }
            // Callers take a short read for the end of the partition: never return one early.
            if out.len() < max && !at_end {
                return Err(LogError::Unavailable(format!(
                    "read {} records of {name}/{partition} from offset {from} (ending at {high}) \
                     before the deadline",
                    out.len()
                )));
            }
            Ok(out)
        })
        .await
    }

    async fn partition_reader(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
    ) -> Result<Box<dyn PartitionReader>> {
        let n = self.partition_count(topic).await?;
        if partition >= n {
            return Err(LogError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
            });
        }
        // One long-lived consumer assigned to the partition: no group, no commits. Retention
        // overtaking it later is an error from `poll`, not a silent jump (`auto.offset.reset`).
        let consumer: BaseConsumer = self
            .config
            .client()
            .set("group.id", "emporium-partition-reader")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "error")
            .set("enable.partition.eof", "false")
            .create()?;
        let name = topic.to_owned();
        let (consumer, low) = self
            .blocking(move |_| {
                let (low, _) =
                    consumer.fetch_watermarks(&name, partition as i32, METADATA_TIMEOUT)?;
                Ok((consumer, low.max(0) as u64))
            })
            .await?;
        if from < low {
            return Err(LogError::gap(topic, partition, from, low));
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition as i32, Offset::Offset(from as i64))?;
        consumer.assign(&tpl)?;
        Ok(Box::new(KafkaPartitionReader {
            consumer,
            topic: topic.to_owned(),
            partition,
            next: from,
        }))
    }

    async fn consumer(&self, group: &str, topic: &str) -> Result<Box<dyn LogConsumer>> {
        let mut config = self.config.client();
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false");
        for (k, v) in &self.config.consumer_properties {
            config.set(k, v);
        }
        let consumer: StreamConsumer = config.create()?;
        consumer.subscribe(&[topic])?;
        Ok(Box::new(KafkaConsumer {
            consumer: Arc::new(consumer),
            topic: topic.to_owned(),
        }))
    }
}

/// When a reader in this process last met a Kafka outage (ms since the epoch; 0: never):
/// [`EventLog::last_unreachable_ms`].
static LAST_UNREACHABLE_MS: AtomicI64 = AtomicI64::new(0);

/// Whether a consumer error is a broker or network outage that librdkafka recovers from by
/// itself, from the same fetch position, so that nothing is skipped: a broker down, a transport
/// failure, a name that does not resolve, a leader or coordinator moving, a timeout. They come
/// through `poll` as information; they are logged and counted
/// (`emporium_log_consumer_errors_total{code}`), and the reader carries on. Every other error
/// goes to the caller, fatal ones and per-record ones (a record that fails its CRC check, which
/// librdkafka would skip) included, as do permanent ones (an unknown topic, no authorization).
fn recoverable(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    let KafkaError::MessageConsumption(code) = e else {
        return false;
    };
    let outage = matches!(
        code,
        C::BrokerTransportFailure
            | C::AllBrokersDown
            | C::Resolve
            | C::OperationTimedOut
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::RequestTimedOut
            | C::BrokerNotAvailable
            | C::NetworkException
            | C::CoordinatorLoadInProgress
            | C::CoordinatorNotAvailable
            | C::NotCoordinator
    );
    if outage {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        LAST_UNREACHABLE_MS.store(now_ms, Ordering::Relaxed);
        tracing::warn!(error = %e, "Kafka unreachable for now; librdkafka retries");
        metrics::counter!("emporium_log_consumer_errors_total", "code" => format!("{code:?}"))
            .increment(1);
    }
    outage
}

fn owned<M: Message>(m: &M) -> ConsumedRecord {
    ConsumedRecord {
        partition: m.partition() as u32,
        offset: m.offset() as u64,
        timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
        key: Bytes::copy_from_slice(m.key().unwrap_or_default()),
        value: Bytes::copy_from_slice(m.payload().unwrap_or_default()),
    }
}

/// Whether librdkafka reports that a fetch position is out of range (with
/// `auto.offset.reset=error`): retention removed what the reader was about to read.
fn is_offset_reset(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageConsumption(
            RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange
        )
    )
}

/// The gap error for a reader whose position `next` fell below the partition's start.
fn gap_at(consumer: &BaseConsumer, topic: &str, partition: u32, next: u64) -> LogError {
    match consumer.fetch_watermarks(topic, partition as i32, METADATA_TIMEOUT) {
        Ok((low, _)) => LogError::gap(topic, partition, next, low.max(0) as u64),
        Err(e) => LogError::Unavailable(format!(
            "offset {next} of {topic}/{partition} is out of range, and the partition's start \
             could not be fetched: {e}"
        )),
    }
}

struct KafkaPartitionReader {
    consumer: BaseConsumer,
    topic: String,
    partition: u32,
    /// The offset after the last record handed out.
    next: u64,
}

#[async_trait]
impl PartitionReader for KafkaPartitionReader {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<ConsumedRecord>> {
        let mut out = Vec::new();
        // Only what librdkafka has already fetched: a zero timeout never blocks the caller.
        while out.len() < max {
            match self.consumer.poll(Duration::ZERO) {
                Some(Ok(m)) => {
                    let record = owned(&m);
                    self.next = record.offset + 1;
                    out.push(record);
                }
                Some(Err(e)) if is_offset_reset(&e) => {
                    return Err(gap_at(
                        &self.consumer,
                        &self.topic,
                        self.partition,
                        self.next,
                    ));
                }
                // What was fetched so far; the next call polls again.
                Some(Err(e)) if recoverable(&e) => break,
                Some(Err(e)) => return Err(e.into()),
                None => {
                    // Transaction markers take offsets but are never returned: librdkafka's
                    // position moves past those it skipped (ADR 0012).
                    if let Some(position) = self.consumer_position() {
                        self.next = self.next.max(position);
                    }
                    break;
                }
            }
        }
        Ok(out)
    }

    fn position(&self) -> u64 {
        self.next
    }
}

impl KafkaPartitionReader {
    fn consumer_position(&self) -> Option<u64> {
        position_of(&self.consumer, &self.topic, self.partition)
    }
}

/// A consumer's own position in a partition (local, no request), if it has one: past the last
/// record polled and past the control records (transaction markers) librdkafka skipped.
fn position_of(consumer: &BaseConsumer, topic: &str, partition: u32) -> Option<u64> {
    let tpl = consumer.position().ok()?;
    match tpl.find_partition(topic, partition as i32)?.offset() {
        Offset::Offset(o) if o >= 0 => Some(o as u64),
        _ => None,
    }
}

struct KafkaConsumer {
    consumer: Arc<StreamConsumer>,
    topic: String,
}

#[async_trait]
impl LogConsumer for KafkaConsumer {
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<ConsumedRecord>> {
        let mut out = Vec::new();
        if max == 0 {
            return Ok(out);
        }
        match tokio::time::timeout(timeout, self.consumer.recv()).await {
            Err(_) => return Ok(out),
            Ok(Err(e)) if recoverable(&e) => return Ok(out),
            Ok(m) => out.push(owned(&m?)),
        }
        while out.len() < max {
            match self.consumer.recv().now_or_never() {
                Some(Err(e)) if recoverable(&e) => break,
                Some(m) => out.push(owned(&m?)),
                None => break,
            }
        }
        Ok(out)
    }

    async fn commit(&mut self, next: &[Position]) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for p in next {
            tpl.add_partition_offset(
                &self.topic,
                p.partition as i32,
                Offset::Offset(p.offset as i64),
            )?;
        }
        // A synchronous commit waits for the broker: not on a runtime thread.
        let consumer = Arc::clone(&self.consumer);
        tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
            .await
            .map_err(|e| LogError::Unavailable(format!("commit task failed: {e}")))??;
        Ok(())
    }
}
