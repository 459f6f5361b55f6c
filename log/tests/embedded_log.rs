//! What only the embedded log has to prove itself: durability across reopen, torn-tail recovery,
//! segment rolling and retention, and exclusive ownership of its directory.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use emporium_log::embedded::{EmbeddedConfig, EmbeddedLog};
use emporium_log::{EventLog, LogError, Record, read_all};

fn segments(dir: &Path, topic: &str, partition: u32) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir.join(topic).join(format!("{partition:04}")))
        .expect("partition dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

fn values(records: &[emporium_log::ConsumedRecord]) -> Vec<String> {
    let mut v: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn records_survive_reopen_and_offsets_continue() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = EmbeddedLog::open(EmbeddedConfig::in_dir(dir.path())).expect("open");
        log.ensure_topic("t", 2).await.expect("topic");
        log.append(
            "t",
            (0..10).map(|i| Record::new("k", format!("v{i}"))).collect(),
        )
        .await
        .expect("append");
    }
    let log = EmbeddedLog::open(EmbeddedConfig::in_dir(dir.path())).expect("reopen");
    assert_eq!(log.partition_count("t").await.expect("count"), 2);
    let positions = log
        .append("t", vec![Record::new("k", "v10")])
        .await
        .expect("append after reopen");
    assert_eq!(positions[0].offset, 10, "offsets continue after a restart");
    let all = read_all(&log, "t").await.expect("read");
    assert_eq!(all.len(), 11);
}

#[tokio::test]
async fn a_torn_tail_is_truncated_on_open_and_earlier_records_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = EmbeddedLog::open(EmbeddedConfig::in_dir(dir.path())).expect("open");
        log.ensure_topic("t", 1).await.expect("topic");
        log.append(
            "t",
            (0..5).map(|i| Record::new("k", format!("v{i}"))).collect(),
        )
        .await
        .expect("append");
    }
    let seg = segments(dir.path(), "t", 0).pop().expect("a segment");
    let good_len = fs::metadata(&seg).expect("meta").len();
    // A crash mid-write: half a frame (a plausible length, then too few bytes).
    let mut f = OpenOptions::new()
        .append(true)
        .open(&seg)
        .expect("open seg");
    f.write_all(&100u32.to_le_bytes()).expect("write");
    f.write_all(&[7u8; 30]).expect("write");
    drop(f);

    let log = EmbeddedLog::open(EmbeddedConfig::in_dir(dir.path())).expect("reopen");
    assert_eq!(
        fs::metadata(&seg).expect("meta").len(),
        good_len,
        "tail cut off"
    );
    let all = read_all(&log, "t").await.expect("read");
    assert_eq!(values(&all), vec!["v0", "v1", "v2", "v3", "v4"]);
    let p = log
        .append("t", vec![Record::new("k", "v5")])
        .await
        .expect("append");
    assert_eq!(p[0].offset, 5);
}

#[tokio::test]
async fn a_corrupted_last_frame_is_detected_by_its_checksum() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = EmbeddedLog::open(EmbeddedConfig::in_dir(dir.path())).expect("open");
        log.ensure_topic("t", 1).await.expect("topic");
        log.append(
            "t",
            (0..3)
                .map(|i| Record::new("k", format!("value-{i}")))
                .collect(),
        )
        .await
        .expect("append");
    }
    let seg = segments(dir.path(), "t", 0).pop().expect("a segment");
    let mut bytes = fs::read(&seg).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff; // flip the last byte of the last record's value
    fs::write(&seg, &bytes).expect("write");

    let log = EmbeddedLog::open(EmbeddedConfig::in_dir(dir.path())).expect("reopen");
    let all = read_all(&log, "t").await.expect("read");
    assert_eq!(values(&all), vec!["value-0", "value-1"]);
}

#[tokio::test]
async fn segments_roll_and_retention_deletes_old_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = EmbeddedConfig {
        segment_bytes: 2048,
        retention: None,
        retention_bytes: Some(8 * 1024),
        ..EmbeddedConfig::in_dir(dir.path())
    };
    let log = EmbeddedLog::open(config).expect("open");
    log.ensure_topic("t", 1).await.expect("topic");
    for round in 0..40 {
        let batch = (0..5)
            .map(|i| Record::new("k", format!("{round}-{i}-{}", "x".repeat(100))))
            .collect();
        log.append("t", batch).await.expect("append");
    }
    let segs = segments(dir.path(), "t", 0);
    let total: u64 = segs
        .iter()
        .map(|s| fs::metadata(s).expect("meta").len())
        .sum();
    assert!(
        segs.len() > 2,
        "expected several segments, got {}",
        segs.len()
    );
    assert!(
        total <= 8 * 1024 + 4096,
        "retention keeps about 8 KiB, kept {total}"
    );
    // The log starts at the oldest record kept: reading from before it is an error, not a read
    // that silently starts later; reading from it reads to the end. Reopening keeps the start.
    let first = log.start_offsets("t").await.expect("starts")[0];
    assert!(first > 0, "the oldest records were deleted");
    assert!(matches!(
        log.read("t", 0, 0, 10_000).await,
        Err(LogError::OffsetOutOfRange { requested: 0, first: f, .. }) if f == first
    ));
    let kept = log.read("t", 0, first, 10_000).await.expect("read");
    assert_eq!(kept.first().expect("records remain").offset, first);
    assert_eq!(kept.last().expect("records").offset, 199);
    assert_eq!(kept.len() as u64, 200 - first);
    drop(log);
    let log = EmbeddedLog::open(EmbeddedConfig {
        segment_bytes: 2048,
        retention: None,
        retention_bytes: Some(8 * 1024),
        ..EmbeddedConfig::in_dir(dir.path())
    })
    .expect("reopen");
    assert_eq!(log.start_offsets("t").await.expect("starts"), vec![first]);
}

/// A cursor that retention overtakes (it deletes the segment the cursor is in) fails with the
/// gap at its next batch instead of jumping to the oldest record left.
#[tokio::test]
async fn a_cursor_overtaken_by_retention_reports_the_gap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = EmbeddedConfig {
        segment_bytes: 2048,
        retention: None,
        retention_bytes: Some(8 * 1024),
        ..EmbeddedConfig::in_dir(dir.path())
    };
    let log = EmbeddedLog::open(config).expect("open");
    log.ensure_topic("t", 1).await.expect("topic");
    let fill = |round: usize| {
        (0..5)
            .map(|i| Record::new("k", format!("{round}-{i}-{}", "x".repeat(100))))
            .collect::<Vec<_>>()
    };
    log.append("t", fill(0)).await.expect("append");
    let mut reader = log.partition_reader("t", 0, 0).await.expect("reader");
    let first = reader.next_batch(2).await.expect("batch");
    assert_eq!(first.iter().map(|r| r.offset).collect::<Vec<_>>(), [0, 1]);
    for round in 1..40 {
        log.append("t", fill(round)).await.expect("append");
    }
    let start = log.start_offsets("t").await.expect("starts")[0];
    assert!(start > 2, "retention moved the start past the cursor");
    match reader.next_batch(10).await {
        Err(LogError::OffsetOutOfRange {
            requested, first, ..
        }) => assert_eq!((requested, first), (2, start)),
        other => panic!("expected the gap at offset 2, got {other:?}"),
    }
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _log = EmbeddedLog::open(EmbeddedConfig::in_dir(dir.path())).expect("open");
    match EmbeddedLog::open(EmbeddedConfig::in_dir(dir.path())) {
        Err(LogError::Locked(path)) => assert_eq!(path, dir.path()),
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("a second open of the same directory must fail"),
    }
}

#[tokio::test]
async fn oversize_records_and_unknown_topics_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = EmbeddedConfig {
        max_record_bytes: 100,
        ..EmbeddedConfig::in_dir(dir.path())
    };
    let log = EmbeddedLog::open(config).expect("open");
    log.ensure_topic("t", 1).await.expect("topic");
    let err = log
        .append("t", vec![Record::new("k", vec![0u8; 200])])
        .await
        .expect_err("too large");
    assert!(matches!(err, LogError::RecordTooLarge { .. }), "{err}");
    let err = log
        .append("nope", vec![Record::new("k", "v")])
        .await
        .expect_err("unknown");
    assert!(matches!(err, LogError::UnknownTopic(_)), "{err}");
    assert!(
        read_all(&log, "t").await.expect("read").is_empty(),
        "nothing was written"
    );
}

#[tokio::test]
async fn consumers_wake_up_when_records_arrive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log =
        std::sync::Arc::new(EmbeddedLog::open(EmbeddedConfig::in_dir(dir.path())).expect("open"));
    log.ensure_topic("t", 2).await.expect("topic");
    let mut consumer = log.consumer("g", "t").await.expect("consumer");
    let writer = std::sync::Arc::clone(&log);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        writer
            .append("t", vec![Record::new("k", "late")])
            .await
            .expect("append");
    });
    let got = consumer
        .poll(10, Duration::from_secs(10))
        .await
        .expect("poll");
    assert_eq!(values(&got), vec!["late"]);
}

#[tokio::test]
async fn lowering_the_record_limit_keeps_records_already_in_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = EmbeddedLog::open(EmbeddedConfig::in_dir(dir.path())).expect("open");
        log.ensure_topic("t", 1).await.expect("topic");
        let big = "x".repeat(5_000);
        log.append(
            "t",
            vec![Record::new("k", big.clone()), Record::new("k", "small")],
        )
        .await
        .expect("append");
    }
    let config = EmbeddedConfig {
        max_record_bytes: 100,
        ..EmbeddedConfig::in_dir(dir.path())
    };
    let log = EmbeddedLog::open(config).expect("reopen with a lower limit");
    assert_eq!(
        read_all(&log, "t").await.expect("read").len(),
        2,
        "nothing was cut"
    );
}
