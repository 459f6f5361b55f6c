//! Events delivered hours out of order, and duplicate deliveries: events resent inside later
//! batches, whole batches sent again, and batches sent twice at once (a retry racing its first
//! attempt). Ingest keeps each event once; the late ones count at their partition's bound, as
//! the reference counts them.

use std::time::Duration;

use emporium_log::embedded::{EmbeddedConfig, EmbeddedLog};
use emporium_pipeline::PipelineConfig;

use super::harness::{self, Backoff, Process, Producers, Profile, Traffic};
use super::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_hours_out_of_order_and_duplicate_deliveries_land_once_and_decide_as_the_reference()
{
    let profile = Profile::get();
    let seed = harness::seed("hours out of order, duplicates", 11);
    let dir = harness::data_dir();
    let port = harness::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let token = support::producer_token(dir.path());
    let run = Process::run(dir.path(), port, &[], &[]);
    // 20,000 events a day of event time: 2,500 events are 3 hours. One event in 50 arrives that
    // much later than its neighbours.
    let traffic = Traffic {
        events_per_day: 20_000.0,
        held_back: Some((0.02, 2_500)),
        duplicates: true,
        ..Traffic::new(seed, profile)
    };
    let batches = traffic.batches();
    let resent =
        batches.iter().map(|b| b.ids.len()).sum::<usize>() - profile.batches * profile.batch_size;
    let producers = Producers::start(
        &base,
        &token,
        batches,
        4,
        Backoff {
            first: Duration::from_millis(200),
            cap: Duration::from_secs(2),
            pause: Duration::ZERO,
        },
        seed,
    );
    let acked = producers.finish().await;
    assert_eq!(acked.len(), profile.batches * profile.batch_size);
    let client = reqwest::Client::new();
    support::wait_until_caught_up(&client, &base, acked.len() as u64).await;
    run.stop();

    let log = EmbeddedLog::open(EmbeddedConfig::in_dir(dir.path().join("log"))).expect("log");
    let outcome = harness::check(dir.path(), &log, &acked, &PipelineConfig::default()).await;
    println!("{outcome:?}; {resent} events delivered again");
    assert!(resent > 0);
    assert!(
        outcome.late as f64 > 0.01 * acked.len() as f64,
        "the held-back events are late: {outcome:?}"
    );
}
