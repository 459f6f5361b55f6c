//! One conformance suite for every [`EventLog`] backend: a backend that passes it is
//! interchangeable. It runs against the embedded log and against a real Kafka-protocol broker:
//! librdkafka's mock cluster (in-process, real protocol), and also an external broker when
//! `EMPORIUM_TEST_KAFKA_BROKERS` is set (e.g. tansu; see README).

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use emporium_log::embedded::{EmbeddedConfig, EmbeddedLog};
use emporium_log::kafka::{KafkaConfig, KafkaLog};
use emporium_log::{EventLog, LogError, Position, Record, partition_for, read_all};
use rdkafka::mocking::MockCluster;

const PARTITIONS: u32 = 4;

/// Short group sessions so a re-joining member is assigned partitions quickly.
fn kafka_test_config(brokers: String) -> KafkaConfig {
    let mut config = KafkaConfig::new(brokers);
    for (k, v) in [
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
    ] {
        config.consumer_properties.insert(k.into(), v.into());
    }
    config
}

fn record(key: &str, n: usize) -> Record {
    Record::new(
        key.to_owned().into_bytes(),
        format!("{key}#{n}").into_bytes(),
    )
}

async fn appends_are_ordered_per_key_and_readable(log: &dyn EventLog, topic: &str) {
    assert_eq!(
        log.ensure_topic(topic, PARTITIONS).await.expect("create"),
        PARTITIONS
    );
    // Creating again is harmless and keeps the count.
    assert_eq!(
        log.ensure_topic(topic, 9).await.expect("re-create"),
        PARTITIONS
    );
    assert_eq!(log.partition_count(topic).await.expect("count"), PARTITIONS);

    let keys = ["o-1", "o-2", "u-7", "p-1-black", "p-9", "o-3"];
    let mut sent = Vec::new();
    for round in 0..5 {
        let batch: Vec<Record> = keys.iter().map(|k| record(k, round)).collect();
        let positions = log.append(topic, batch.clone()).await.expect("append");
        assert_eq!(positions.len(), batch.len());
        for (r, p) in batch.iter().zip(&positions) {
            assert_eq!(
                p.partition,
                partition_for(&r.key, PARTITIONS),
                "murmur2 placement"
            );
        }
        sent.extend(batch.into_iter().zip(positions));
    }
    assert!(
        log.append(topic, Vec::new())
            .await
            .expect("empty append")
            .is_empty()
    );

    // Offsets per partition are dense from 0 and follow append order.
    let mut per_partition: BTreeMap<u32, Vec<(u64, Record)>> = BTreeMap::new();
    for (r, p) in &sent {
        per_partition
            .entry(p.partition)
            .or_default()
            .push((p.offset, r.clone()));
    }
    let ends = log.end_offsets(topic).await.expect("ends");
    assert_eq!(ends.len(), PARTITIONS as usize);
    for (partition, records) in &per_partition {
        let offsets: Vec<u64> = records.iter().map(|(o, _)| *o).collect();
        let dense: Vec<u64> = (0..records.len() as u64).collect();
        assert_eq!(offsets, dense, "partition {partition} offsets");
        assert_eq!(ends[*partition as usize], records.len() as u64);
        let read = log
            .read(topic, *partition, 0, 1000)
            .await
            .expect("read partition");
        let got: Vec<(u64, &[u8], &[u8])> = read
            .iter()
            .map(|c| (c.offset, c.key.as_ref(), c.value.as_ref()))
            .collect();
        let want: Vec<(u64, &[u8], &[u8])> = records
            .iter()
            .map(|(o, r)| (*o, r.key.as_ref(), r.value.as_ref()))
            .collect();
        assert_eq!(got, want, "partition {partition} contents");
        assert!(
            read.iter()
                .all(|c| c.partition == *partition && c.timestamp_ms > 0)
        );
        // Reading from the middle starts exactly there; max is honoured.
        if records.len() > 2 {
            let tail = log.read(topic, *partition, 2, 2).await.expect("read tail");
            assert_eq!(
                tail.iter().map(|c| c.offset).collect::<Vec<_>>(),
                vec![2, 3]
            );
        }
    }
    let past_end = log.read(topic, 0, 10_000, 10).await.expect("read past end");
    assert!(past_end.is_empty());
    assert_eq!(
        read_all(log, topic).await.expect("read all").len(),
        sent.len()
    );
}

async fn concurrent_appends_all_land_once(log: &dyn EventLog, topic: &str) {
    log.ensure_topic(topic, PARTITIONS).await.expect("create");
    let tasks = (0..8).map(|t| async move {
        let mut positions = Vec::new();
        for round in 0..10 {
            let batch: Vec<Record> = (0..25)
                .map(|i| record(&format!("k-{t}-{i}"), round))
                .collect();
            positions.extend(log.append(topic, batch).await.expect("append"));
        }
        positions
    });
    let all: Vec<Position> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(all.len(), 8 * 10 * 25);
    let unique: HashSet<Position> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "no two records share a position");
    let read = read_all(log, topic).await.expect("read all");
    assert_eq!(read.len(), all.len());
    let values: HashSet<Vec<u8>> = read.iter().map(|c| c.value.to_vec()).collect();
    assert_eq!(values.len(), all.len(), "every record exactly once");
}

async fn poll_until(
    consumer: &mut dyn emporium_log::LogConsumer,
    want: usize,
    limit: Duration,
) -> Vec<emporium_log::ConsumedRecord> {
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < want && start.elapsed() < limit {
        got.extend(
            consumer
                .poll(1000, Duration::from_millis(500))
                .await
                .expect("poll"),
        );
    }
    got
}

fn next_positions(records: &[emporium_log::ConsumedRecord]) -> Vec<Position> {
    let mut next: BTreeMap<u32, u64> = BTreeMap::new();
    for r in records {
        let e = next.entry(r.partition).or_default();
        *e = (*e).max(r.offset + 1);
    }
    next.into_iter()
        .map(|(partition, offset)| Position { partition, offset })
        .collect()
}

async fn consumer_groups_resume_from_commits(log: &dyn EventLog, topic: &str) {
    log.ensure_topic(topic, PARTITIONS).await.expect("create");
    let first: Vec<Record> = (0..40).map(|i| record(&format!("k{i}"), i)).collect();
    log.append(topic, first).await.expect("append");

    let mut a = log.consumer("group-a", topic).await.expect("consumer");
    let got = poll_until(a.as_mut(), 40, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 40, "a new group starts at the earliest offset");
    // Commit only what was handed out for 30 of them: take a prefix per partition.
    a.commit(&next_positions(&got)).await.expect("commit");
    drop(a);

    log.append(
        topic,
        (40..50).map(|i| record(&format!("k{i}"), i)).collect(),
    )
    .await
    .expect("append more");
    let mut a2 = log
        .consumer("group-a", topic)
        .await
        .expect("consumer again");
    let got2 = poll_until(a2.as_mut(), 10, Duration::from_secs(30)).await;
    let mut values: Vec<String> = got2
        .iter()
        .map(|c| String::from_utf8_lossy(&c.value).into_owned())
        .collect();
    values.sort();
    let mut want: Vec<String> = (40..50).map(|i| format!("k{i}#{i}")).collect();
    want.sort();
    assert_eq!(
        values, want,
        "the group resumes after its committed positions"
    );
    a2.commit(&next_positions(&got2)).await.expect("commit");
    let nothing = a2
        .poll(100, Duration::from_millis(500))
        .await
        .expect("poll");
    assert!(nothing.is_empty(), "nothing new after the commit");
    drop(a2);

    let mut b = log.consumer("group-b", topic).await.expect("other group");
    let all = poll_until(b.as_mut(), 50, Duration::from_secs(30)).await;
    assert_eq!(all.len(), 50, "groups are independent");
}

async fn partition_readers_follow_one_partition(log: &dyn EventLog, topic: &str) {
    log.ensure_topic(topic, PARTITIONS).await.expect("create");
    let key = "o-42";
    let p = partition_for(key.as_bytes(), PARTITIONS);
    log.append(topic, (0..30).map(|i| record(key, i)).collect())
        .await
        .expect("append");
    // Read it all from offset 10, in order, through small batches.
    let mut reader = log.partition_reader(topic, p, 10).await.expect("reader");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < 20 && Instant::now() < deadline {
        let batch = reader.next_batch(7).await.expect("batch");
        assert!(batch.len() <= 7);
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        got.extend(batch);
    }
    let offsets: Vec<u64> = got.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (10..30).collect::<Vec<u64>>());
    assert!(
        got.iter()
            .all(|r| r.partition == p && r.key.as_ref() == key.as_bytes())
    );
    // At the end it returns nothing, then what is appended later.
    assert!(reader.next_batch(10).await.expect("batch").is_empty());
    log.append(topic, vec![record(key, 30)])
        .await
        .expect("append");
    let mut later = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while later.is_empty() && Instant::now() < deadline {
        later = reader.next_batch(10).await.expect("batch");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(later.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![30]);
    assert!(
        log.partition_reader(topic, PARTITIONS + 1, 0)
            .await
            .is_err()
    );
}

/// Appends `record_bytes`-sized records to one partition until retention removes its oldest ones;
/// then every read below the first retained offset is an error naming that offset, never a read
/// that silently starts later (ADR 0003), while reads from it on work.
async fn reads_below_the_first_retained_offset_fail(
    log: &dyn EventLog,
    topic: &str,
    record_bytes: usize,
) {
    log.ensure_topic(topic, PARTITIONS).await.expect("create");
    let key = "o-7";
    let p = partition_for(key.as_bytes(), PARTITIONS);
    let starts = log.start_offsets(topic).await.expect("start offsets");
    assert_eq!(starts, vec![0; PARTITIONS as usize], "nothing removed yet");
    // Incompressible (a producer may compress batches): xorshift bytes.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let value: Vec<u8> = (0..record_bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let mut first = 0;
    for _ in 0..400 {
        log.append(topic, vec![Record::new(key, value.clone())])
            .await
            .expect("append");
        first = log.start_offsets(topic).await.expect("start offsets")[p as usize];
        if first > 0 {
            break;
        }
    }
    assert!(first > 0, "retention never removed a record of {topic}/{p}");
    let end = log.end_offsets(topic).await.expect("ends")[p as usize];
    assert!(first <= end);
    let starts = log.start_offsets(topic).await.expect("start offsets");
    for (other, &start) in starts.iter().enumerate() {
        if other as u32 != p {
            assert_eq!(start, 0, "partition {other} kept everything");
        }
    }

    let gap = |e: LogError, requested: u64| match e {
        LogError::OffsetOutOfRange {
            topic: t,
            partition,
            requested: r,
            first: f,
        } => {
            assert_eq!((t.as_str(), partition, r), (topic, p, requested));
            assert!(f >= first, "the partition starts at {f}, not below {first}");
        }
        other => panic!("expected a gap error, got {other}"),
    };
    for below in [0, first - 1] {
        gap(
            log.read(topic, p, below, 10)
                .await
                .expect_err("a read below the start"),
            below,
        );
        let reader = match log.partition_reader(topic, p, below).await {
            Err(e) => Err(e),
            Ok(mut reader) => reader.next_batch(10).await,
        };
        gap(reader.expect_err("a cursor below the start"), below);
    }
    // From the first retained offset on, everything is there.
    let from = log.start_offsets(topic).await.expect("start offsets")[p as usize];
    let got = log
        .read(topic, p, from, 1)
        .await
        .expect("read at the start");
    assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![from]);
    let mut reader = log.partition_reader(topic, p, from).await.expect("reader");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    while got.is_empty() && Instant::now() < deadline {
        got = reader.next_batch(1).await.expect("batch at the start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![from]);
    // Tools that read "everything" read what is kept.
    let all = read_all(log, topic).await.expect("read all");
    assert_eq!(all.len() as u64, end - from);
}

/// One writer per name (ADR 0012): a claim fences every earlier claim of its name, and an
/// append through a fenced claim appends nothing; appends as a writer read back like any others.
async fn a_claim_fences_the_earlier_claims_of_its_name(log: &dyn EventLog, topic: &str) {
    log.ensure_topic(topic, PARTITIONS).await.expect("topic");
    let batch = |from: usize| {
        (from..from + 5)
            .map(|n| record(&format!("k{}", n % 3), n))
            .collect::<Vec<_>>()
    };
    let first = log.claim_writer("decider").await.expect("claim");
    let kept = log
        .append_as(&first, topic, batch(0))
        .await
        .expect("the only claim appends");
    let second = log.claim_writer("decider").await.expect("claim again");
    assert_ne!(first, second);
    for _ in 0..2 {
        let refused = log.append_as(&first, topic, batch(100)).await;
        assert!(
            matches!(&refused, Err(LogError::Fenced { writer, .. }) if writer == "decider"),
            "the earlier claim is fenced: {refused:?}"
        );
        assert!(!refused.expect_err("fenced").is_retryable());
    }
    let other = log
        .claim_writer("other-writer")
        .await
        .expect("another name");
    let later = log
        .append_as(&second, topic, batch(5))
        .await
        .expect("the newest claim appends");
    log.append_as(&other, topic, batch(10))
        .await
        .expect("names are independent");
    log.append(topic, vec![record("k0", 99)])
        .await
        .expect("plain appends are not writers'");
    let all = read_all(log, topic).await.expect("read");
    let values: HashSet<Vec<u8>> = all.iter().map(|r| r.value.to_vec()).collect();
    assert_eq!(
        all.len(),
        16,
        "5 + 5 + 5 + 1, nothing of the fenced appends"
    );
    for n in 100..105 {
        assert!(
            !values.contains(format!("k{}#{n}", n % 3).as_bytes()),
            "fenced #{n} landed"
        );
    }
    let read_at: HashSet<Position> = all
        .iter()
        .map(|r| Position {
            partition: r.partition,
            offset: r.offset,
        })
        .collect();
    for p in kept.iter().chain(&later) {
        assert!(read_at.contains(p), "{p:?} acknowledged and read back");
    }
}

async fn conformance(log: &dyn EventLog, prefix: &str) {
    appends_are_ordered_per_key_and_readable(log, &format!("{prefix}.order")).await;
    a_claim_fences_the_earlier_claims_of_its_name(log, &format!("{prefix}.writers")).await;
    concurrent_appends_all_land_once(log, &format!("{prefix}.concurrent")).await;
    consumer_groups_resume_from_commits(log, &format!("{prefix}.groups")).await;
    partition_readers_follow_one_partition(log, &format!("{prefix}.cursor")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_log_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EmbeddedLog::open(EmbeddedConfig::in_dir(dir.path())).expect("open");
    conformance(&log, "t").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_log_with_tiny_segments_conforms() {
    // Segments of 1 KiB force many rolls: reads must cross segment boundaries.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = EmbeddedConfig {
        segment_bytes: 1024,
        ..EmbeddedConfig::in_dir(dir.path())
    };
    let log = EmbeddedLog::open(config).expect("open");
    conformance(&log, "t").await;
}

/// A claim outlives the process: reopened, the log still fences the claims before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_writer_claims_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let open = || EmbeddedLog::open(EmbeddedConfig::in_dir(dir.path())).expect("open");
    let log = open();
    log.ensure_topic("t", PARTITIONS).await.expect("topic");
    let first = log.claim_writer("decider").await.expect("claim");
    let second = log.claim_writer("decider").await.expect("claim");
    drop(log);
    let log = open();
    assert!(matches!(
        log.append_as(&first, "t", vec![record("k", 1)]).await,
        Err(LogError::Fenced { .. })
    ));
    log.append_as(&second, "t", vec![record("k", 2)])
        .await
        .expect("the newest claim still appends");
    let third = log.claim_writer("decider").await.expect("claim");
    assert_eq!(third.epoch, second.epoch + 1);
    assert!(matches!(
        log.claim_writer("../escape").await,
        Err(LogError::Config(_))
    ));
}

/// Two clients of one broker claim the same writer: the broker fences the first one's
/// transactional producer (its `transactional.id` was initialised again, bumping the producer
/// epoch), so its appends fail as fenced and none of their records is read back. librdkafka's
/// mock cluster cannot show this: it gives every new producer of a `transactional.id` a fresh
/// producer id instead of bumping the epoch (`rd_kafka_mock_handle_InitProducerId`), so the
/// older producer is never fenced there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a broker that fences transactional producers (librdkafka's mock cluster does not): EMPORIUM_TEST_KAFKA_BROKERS=host:port, then --ignored"]
async fn a_kafka_writer_claimed_by_another_client_is_fenced_by_the_broker() {
    let brokers = std::env::var("EMPORIUM_TEST_KAFKA_BROKERS")
        .expect("EMPORIUM_TEST_KAFKA_BROKERS=host:port names the broker");
    let topic = format!("fence-{}", std::process::id());
    let connect = || KafkaLog::connect(kafka_test_config(brokers.clone())).expect("connect");
    let (one, two) = (connect(), connect());
    one.ensure_topic(&topic, PARTITIONS).await.expect("topic");
    let name = format!("fence-test-{}", std::process::id());
    let first = one.claim_writer(&name).await.expect("claim");
    one.append_as(&first, &topic, vec![record("k", 1)])
        .await
        .expect("appends while it is the only one");
    let second = two
        .claim_writer(&name)
        .await
        .expect("claim from the other client");
    let refused = one.append_as(&first, &topic, vec![record("k", 2)]).await;
    assert!(
        matches!(refused, Err(LogError::Fenced { .. })),
        "the broker fenced the first: {refused:?}"
    );
    two.append_as(&second, &topic, vec![record("k", 3)])
        .await
        .expect("the second appends");
    let values: Vec<Vec<u8>> = read_all(&two, &topic)
        .await
        .expect("read")
        .into_iter()
        .map(|r| r.value.to_vec())
        .collect();
    assert_eq!(values, [b"k#1".to_vec(), b"k#3".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_log_reads_below_retention_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = EmbeddedConfig {
        segment_bytes: 64 * 1024,
        retention_bytes: Some(256 * 1024),
        ..EmbeddedConfig::in_dir(dir.path())
    };
    let log = EmbeddedLog::open(config).expect("open");
    reads_below_the_first_retained_offset_fail(&log, "t.retention", 10 * 1024).await;
}

/// The mock broker keeps at most 5 MB per partition (librdkafka's `rd_kafka_mock_msgset_new`),
/// the real protocol's log start offset moving as a broker's retention would move it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_log_reads_below_retention_fail() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster
        .create_topic("t.retention", PARTITIONS as i32, 1)
        .expect("mock topic");
    let log = KafkaLog::connect(kafka_test_config(cluster.bootstrap_servers())).expect("connect");
    reads_below_the_first_retained_offset_fail(&log, "t.retention", 200 * 1024).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_log_on_librdkafka_mock_cluster_conforms() {
    let cluster = MockCluster::new(3).expect("mock cluster");
    // librdkafka's mock cluster does not implement CreateTopics: create them the mock's way.
    for suffix in ["order", "writers", "concurrent", "groups", "cursor"] {
        cluster
            .create_topic(&format!("t.{suffix}"), PARTITIONS as i32, 3)
            .expect("mock topic");
    }
    let log = KafkaLog::connect(kafka_test_config(cluster.bootstrap_servers())).expect("connect");
    conformance(&log, "t").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a broker process: EMPORIUM_TEST_KAFKA_BROKERS=host:port, then --ignored (scripts/test does both when the variable is set)"]
async fn kafka_log_on_external_broker_conforms() {
    let brokers = std::env::var("EMPORIUM_TEST_KAFKA_BROKERS").expect(
        "EMPORIUM_TEST_KAFKA_BROKERS=host:port names the broker to run the conformance suite against",
    );
    let log = KafkaLog::connect(kafka_test_config(brokers)).expect("connect");
    let prefix = format!("conformance-{}", std::process::id());
    conformance(&log, &prefix).await;
}

/// A broker outage while a partition reader waits: librdkafka reports it through `poll` as
/// information and recovers by itself, so the reader answers empty batches (no error, which
/// stopped the dataflow) and, once the broker is back, reads on from where it was: every record
/// once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_partition_reader_rides_out_a_broker_outage() {
    emporium_ops::metrics::install();
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("outage", 1, 1).expect("mock topic");
    let log = KafkaLog::connect(kafka_test_config(cluster.bootstrap_servers())).expect("connect");
    log.append("outage", (0..100).map(|i| record("k", i)).collect())
        .await
        .expect("append");
    let mut reader = log.partition_reader("outage", 0, 0).await.expect("reader");
    let mut values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while values.len() < 100 && Instant::now() < deadline {
        let batch = reader
            .next_batch(64)
            .await
            .expect("batch before the outage");
        values.extend(batch.into_iter().map(|r| (r.offset, r.value)));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(values.len(), 100);

    // Counted by code; other tests in this process use other clusters, but none of them loses
    // a broker.
    let outage_errors = || {
        emporium_ops::metrics::render()
            .lines()
            .filter(|l| l.starts_with("emporium_log_consumer_errors_total"))
            .filter(|l| l.contains("BrokerTransportFailure") || l.contains("AllBrokersDown"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let before = outage_errors();
    cluster.broker_down(1).expect("broker down");
    let outage = Instant::now() + Duration::from_secs(4);
    while Instant::now() < outage {
        let batch = reader
            .next_batch(64)
            .await
            .expect("no error while the broker is down");
        assert!(batch.is_empty());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(outage_errors() > before, "librdkafka reported the outage");

    cluster.broker_up(1).expect("broker up");
    // Append once the broker answers again (a retried append could land twice).
    let deadline = Instant::now() + Duration::from_secs(30);
    while log.end_offsets("outage").await.is_err() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let more = log
        .append("outage", (100..200).map(|i| record("k", i)).collect())
        .await
        .expect("append after the outage");
    assert_eq!(more.len(), 100);
    while values.len() < 200 && Instant::now() < deadline {
        let batch = reader.next_batch(64).await.expect("batch after the outage");
        values.extend(batch.into_iter().map(|r| (r.offset, r.value)));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let offsets: Vec<u64> = values.iter().map(|(o, _)| *o).collect();
    assert_eq!(
        offsets,
        (0..200).collect::<Vec<u64>>(),
        "every record once, in order"
    );
    for (i, (_, v)) in values.iter().enumerate() {
        assert_eq!(v.as_ref(), format!("k#{i}").as_bytes());
    }
}
