//! The broker down and back: `emporium run --kafka` against librdkafka's mock cluster (a real
//! Kafka-protocol broker in this process), whose only broker goes down under load and comes
//! back. Ingest answers 503 or waits while it is down; producers retry; the transactional
//! decider and the lakehouse sink resume. Nothing acknowledged is lost and nothing is doubled.

use std::time::Duration;

use emporium_log::kafka::{KafkaConfig, KafkaLog};
use emporium_pipeline::PipelineConfig;

use super::harness::{self, Backoff, Profile, Shop, Traffic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_down_and_back_loses_and_doubles_nothing() {
    let profile = Profile::get();
    let seed = harness::seed("the broker down and back", 5);
    let (cluster, brokers) = harness::mock_broker();
    let shop = Shop::new();
    let run = shop.run(&["--kafka", &brokers], &[]);
    let producers = shop.producers(
        Traffic::new(seed, profile).batches(),
        4,
        Backoff {
            pause: harness::PACED,
            ..Backoff::SLOW
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
    shop.stop_caught_up(run, acked.len()).await;

    let log = KafkaLog::connect(KafkaConfig::new(brokers)).expect("connect");
    let outcome = harness::check(shop.dir.path(), &log, &acked, &PipelineConfig::default()).await;
    println!("{outcome:?}; {failed} failed attempts retried");
    assert!(
        outcome.orders > 50,
        "the traffic placed orders: {outcome:?}"
    );
}
