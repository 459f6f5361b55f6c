//! The disk: a data directory that fills up and is then grown, and a slow fsync.
//!
//! Disk full mounts a size-capped tmpfs (root only, so it is `#[ignore]`d and `scripts/test`
//! runs it when it runs as root): appends fail with 503 and are not acknowledged, the store and
//! lakehouse writers fail and retry, and once the file system is grown everything catches up.
//! A slow fsync (`EMPORIUM_FAULT_FSYNC_DELAY_MS`, a pause before every fsync of the embedded
//! log) slows acknowledgements and nothing else.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::harness::{self, Backoff, Process, Producers, Profile, Shop, Traffic};
use super::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_fsync_slows_acknowledgements_and_changes_nothing_else() {
    let profile = Profile::get();
    let seed = harness::seed("a slow fsync", 3);
    let shop = Shop::new();
    let slow = [("EMPORIUM_FAULT_FSYNC_DELAY_MS", "40".to_owned())];
    let run = shop.run(&[], &slow);
    let traffic = Traffic {
        batches: profile.batches / 2,
        ..Traffic::new(seed, profile)
    };
    let producers = shop.producers(traffic.batches(), 4, Backoff::QUICK, seed);
    let started = std::time::Instant::now();
    let acked = producers.finish().await;
    let took = started.elapsed();
    shop.stop_caught_up(run, acked.len()).await;

    let outcome = harness::check_embedded(shop.dir.path(), &acked).await;
    println!(
        "{outcome:?}; {} events acknowledged in {took:?}",
        acked.len()
    );
}

/// Log lines that cannot be written (stderr on a full disk; here `/dev/full`, which refuses
/// every write with "no space left", no root needed) are dropped and stop nothing. Before, the
/// log subscriber reported each with `eprintln!`, which panics when stderr fails: the process
/// died at its first log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_that_cannot_be_written_stop_nothing() {
    let profile = Profile::get();
    let seed = harness::seed("stderr on a full disk", 19);
    let shop = Shop::new();
    let run = shop.run_logging_to(&[], Path::new("/dev/full"));
    let traffic = Traffic {
        batches: profile.batches / 4,
        ..Traffic::new(seed, profile)
    };
    let producers = shop.producers(traffic.batches(), 4, Backoff::QUICK, seed);
    let acked = producers.finish().await;
    shop.stop_caught_up(run, acked.len()).await;

    let outcome = harness::check_embedded(shop.dir.path(), &acked).await;
    println!("{outcome:?}");
}

/// A tmpfs of `mib` MiB mounted at `path`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, mib: u64) -> Self {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(path)
            .status()
            .expect("mount");
        assert!(status.success(), "mounting a tmpfs needs root");
        Self(path.to_owned())
    }

    fn grow(&self, mib: u64) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(&self.0)
            .status()
            .expect("remount");
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if std::env::var_os("EMPORIUM_FAULT_KEEP").is_some() {
            return;
        }
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root to mount a size-capped tmpfs; scripts/test runs it when it runs as root"]
async fn a_full_disk_refuses_appends_and_catches_up_once_it_is_grown() {
    let profile = Profile::get();
    let seed = harness::seed("the disk full", 13);
    let outer = harness::data_dir();
    let dir = outer.path().join("data");
    std::fs::create_dir_all(&dir).expect("mount point");
    let tmpfs = Tmpfs::mount(&dir, 5);
    let port = harness::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let token = support::producer_token(&dir);
    let run = Process::run(&dir, port, &[], &[]);
    let producers = Producers::start(
        &base,
        &token,
        Traffic::new(seed, profile).batches(),
        4,
        Backoff::QUICK,
        seed,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while producers.failed_attempts() == 0 && producers.acked_batches() < producers.batches() {
        assert!(
            std::time::Instant::now() < deadline,
            "the disk never filled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        producers.failed_attempts() > 0,
        "the disk filled before the traffic ended: {} of {} batches acknowledged",
        producers.acked_batches(),
        producers.batches()
    );
    let full_at = producers.acked_batches();
    // Full for a few seconds: appends keep failing, the read side keeps retrying.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        producers.acked_batches() <= full_at + 4,
        "appends went on while the disk was full"
    );
    tmpfs.grow(1024);
    println!("full after {full_at} batches; grown");
    let acked = producers.finish().await;
    let client = reqwest::Client::new();
    support::wait_until_caught_up(&client, &base, acked.len() as u64).await;
    run.stop();

    let outcome = harness::check_embedded(&dir, &acked).await;
    println!("{outcome:?}");
}
