//! Events sent hours after they occurred (an offline device), and duplicate deliveries: events resent inside later
//! batches, whole batches sent again, and batches sent twice at once (a retry racing its first
//! attempt). Ingest keeps each event once; the late ones count at their partition's bound, as
//! the reference counts them.

use super::harness::{self, Backoff, Profile, Shop, Traffic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_hours_out_of_order_and_duplicate_deliveries_land_once_and_decide_as_the_reference()
{
    let profile = Profile::get();
    let seed = harness::seed("hours out of order, duplicates", 11);
    let shop = Shop::new();
    let run = shop.run(&[], &[]);
    // One event in 50 occurred 3 hours before its neighbours (sent by a device that was
    // offline): late, counted at its partition's bound.
    let traffic = Traffic {
        skewed: Some((0.02, chrono::Duration::hours(3))),
        duplicates: true,
        ..Traffic::new(seed, profile)
    };
    let batches = traffic.batches();
    let resent =
        batches.iter().map(|b| b.ids.len()).sum::<usize>() - profile.batches * profile.batch_size;
    let producers = shop.producers(batches, 4, Backoff::QUICK, seed);
    let acked = producers.finish().await;
    assert_eq!(acked.len(), profile.batches * profile.batch_size);
    shop.stop_caught_up(run, acked.len()).await;

    let outcome = harness::check_embedded(shop.dir.path(), &acked).await;
    println!("{outcome:?}; {resent} events delivered again");
    assert!(resent > 0);
    assert!(
        outcome.late as f64 > 0.01 * acked.len() as f64,
        "the skewed events are late: {outcome:?}"
    );
}
