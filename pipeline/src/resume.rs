//! Resuming from a checkpoint, when it fits this log, these settings and this store.

use emporium_dataflows::decider::Decider;
use emporium_log::{EVENTS_TOPIC, EventLog, LogError};
use emporium_serving::store::Store;

use crate::PipelineError;
use crate::checkpoint::{self, Checkpoint};
use crate::config::{CheckpointConfig, PipelineConfig};

/// The checkpoint to resume from, with the decider it holds, if there is one that fits this log,
/// these settings and this store (see [`checkpoint`]); `None`: replay from the start.
pub(crate) fn resume(
    checkpoints: &CheckpointConfig,
    store: &dyn Store,
    runtime: &tokio::runtime::Handle,
    partitions: u32,
    config: &PipelineConfig,
) -> Result<Option<(Decider, Checkpoint)>, PipelineError> {
    // The local file and the store's copy: the newer that reads back.
    let local = checkpoint::read(&checkpoints.dir).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "ignoring the checkpoint file");
        None
    });
    let kept = match runtime.block_on(store.checkpoint()) {
        Ok(Some(bytes)) => checkpoint::decode(&bytes, std::path::Path::new("in the store"))
            .map_err(|e| tracing::warn!(error = %e, "ignoring the store's checkpoint"))
            .ok(),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring the store's checkpoint: reading it failed");
            None
        }
    };
    let checkpoint = match (local, kept) {
        (Some(local), Some(kept)) if kept.seq > local.seq => {
            tracing::info!(
                seq = kept.seq,
                "the store's checkpoint is newer than the file"
            );
            kept
        }
        (Some(local), _) => local,
        (None, Some(kept)) => {
            tracing::info!(
                seq = kept.seq,
                "no checkpoint file: resuming from the store's copy"
            );
            kept
        }
        (None, None) => return Ok(None),
    };
    let stored = runtime.block_on(store.positions())?;
    let refuse = |why: String| {
        tracing::warn!(
            seq = checkpoint.seq,
            "ignoring the checkpoint ({why}): replaying the log from the start"
        );
        Ok(None)
    };
    if checkpoint.allowed_lateness_ms != config.allowed_lateness.num_milliseconds()
        || checkpoint.reservation_ttl_ms != config.inventory.reservation_ttl.num_milliseconds()
    {
        return refuse("taken with another allowed lateness or reservation TTL".into());
    }
    let names: Vec<&str> = checkpoint.views.iter().map(|(n, _)| n.as_str()).collect();
    let running: Vec<&str> = config.views.iter().map(|v| v.name).collect();
    if names != running {
        // Views' events are steps: other views give other seqs. Adding a view only raises them
        // (a replay overwrites every document); removing one lowers them, and documents stored
        // at the higher seqs stay until the replay passes them.
        tracing::warn!(
            "the views changed from {names:?} to {running:?}: if one was removed, documents in \
             the store keep their higher seqs; start from an empty store to rebuild them"
        );
        return refuse(format!(
            "taken with the views {names:?}, this pipeline runs {running:?}"
        ));
    }
    if checkpoint.positions.len() != partitions as usize {
        return refuse(format!(
            "taken over {} partitions, the log has {partitions}",
            checkpoint.positions.len()
        ));
    }
    let behind = stored.as_ref().is_none_or(|stored| {
        stored.len() != checkpoint.positions.len()
            || stored.iter().zip(&checkpoint.positions).any(|(s, c)| s < c)
    });
    if behind {
        return refuse("the store is behind it: it was taken with another store".into());
    }
    let decider = match Decider::resume(
        &checkpoint.state,
        partitions as usize,
        config.allowed_lateness,
        config.inventory.clone(),
    ) {
        Ok(d) => d,
        Err(e) => return refuse(e.to_string()),
    };
    tracing::info!(
        seq = checkpoint.seq,
        positions = ?checkpoint.positions,
        "resuming from the checkpoint"
    );
    Ok(Some((decider, checkpoint)))
}

/// Fails with [`PipelineError::Gap`] when the log no longer holds a partition from `start` on
/// (retention removed it): the pipeline never decides on a truncated history.
pub(crate) fn check_retained(
    log: &dyn EventLog,
    runtime: &tokio::runtime::Handle,
    start: &[u64],
    resumed: bool,
) -> Result<(), PipelineError> {
    let firsts = runtime.block_on(log.start_offsets(EVENTS_TOPIC))?;
    for (partition, (&from, &first)) in start.iter().zip(&firsts).enumerate() {
        if from < first {
            return Err(PipelineError::Gap {
                what: if resumed {
                    "resume from the checkpoint"
                } else {
                    "replay the log from the start (no usable checkpoint)"
                },
                source: LogError::out_of_range(EVENTS_TOPIC, partition as u32, from, first),
            });
        }
    }
    Ok(())
}
