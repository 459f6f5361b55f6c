//! The broker down and back: `emporium run --kafka` against librdkafka's mock cluster (a real
//! Kafka-protocol broker in this process), whose only broker goes down under load and comes
//! back. Ingest answers 503 or waits while it is down; producers retry; the transactional
//! decider and the lakehouse sink resume. Nothing acknowledged is lost and nothing is doubled.

use std::time::Duration;

use emporium_log::kafka::{KafkaConfig, KafkaLog};
use emporium_log::{DEAD_LETTER_TOPIC, EVENTS_TOPIC};
use emporium_pipeline::PipelineConfig;
use rdkafka::mocking::MockCluster;

use super::harness::{self, Backoff, Process, Producers, Profile, Traffic};
use super::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_down_and_back_loses_and_doubles_nothing() {
    let profile = Profile::get();
    let seed = harness::seed("the broker down and back", 5);
    let cluster = MockCluster::new(1).expect("mock cluster");
    // The topics as `emporium run` would create them (the mock answers CreateTopics from
    // another process with a timeout).
    cluster
        .create_topic(EVENTS_TOPIC, 4, 1)
        .expect("events topic");
    cluster
        .create_topic(DEAD_LETTER_TOPIC, 1, 1)
        .expect("dead-letter topic");
    let brokers = cluster.bootstrap_servers();
    let dir = harness::data_dir();
    let port = harness::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let token = support::producer_token(dir.path());
    let run = Process::run(dir.path(), port, &["--kafka", &brokers], &[]);
    let producers = Producers::start(
        &base,
        &token,
        Traffic::new(seed, profile).batches(),
        4,
        Backoff {
            first: Duration::from_millis(500),
            cap: Duration::from_secs(4),
            pause: Duration::ZERO,
        },
        seed,
    );
    let outages = if profile.long { 3 } else { 1 };
    let down_for = Duration::from_secs(if profile.long { 10 } else { 4 });
    for k in 1..=outages {
        producers
            .wait_for(producers.batches() * k / (outages + 1))
            .await;
        cluster.broker_down(1).expect("broker down");
        tokio::time::sleep(down_for).await;
        cluster.broker_up(1).expect("broker up");
        println!(
            "broker down for {down_for:?} after {} batches",
            producers.acked_batches()
        );
    }
    let failed = producers.failed_attempts();
    let acked = producers.finish().await;
    let client = reqwest::Client::new();
    support::wait_until_caught_up(&client, &base, acked.len() as u64).await;
    run.stop();

    let log = KafkaLog::connect(KafkaConfig::new(brokers)).expect("connect");
    let outcome = harness::check(dir.path(), &log, &acked, &PipelineConfig::default()).await;
    println!("{outcome:?}; {failed} failed attempts retried");
    assert!(
        outcome.orders > 50,
        "the traffic placed orders: {outcome:?}"
    );
}
