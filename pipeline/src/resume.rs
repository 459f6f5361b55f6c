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
    // The local file and the store's copy: the newer whose pieces read back whole.
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
    // The newer first; the file first at equal seqs (no network).
    let mut candidates: Vec<(Checkpoint, Origin)> = local
        .map(|c| (c, Origin::File))
        .into_iter()
        .chain(kept.map(|c| (c, Origin::Store)))
        .collect();
    candidates.sort_by_key(|(c, origin)| (std::cmp::Reverse(c.seq), *origin));
    let mut chosen = None;
    for (candidate, origin) in candidates {
        let resumed =
            read_pieces(&candidate, origin, &checkpoints.dir, store, runtime).and_then(|pieces| {
                let decider = Decider::resume_pieces(
                    &candidate.state,
                    &pieces,
                    partitions as usize,
                    config.allowed_lateness,
                    config.inventory.clone(),
                )?;
                Ok((
                    decider,
                    pieces.len(),
                    pieces.iter().map(Vec::len).sum::<usize>(),
                ))
            });
        match resumed {
            Ok(resumed) => {
                if origin == Origin::Store {
                    tracing::info!(
                        seq = candidate.seq,
                        "resuming from the store's checkpoint (newer than the file, or no file)"
                    );
                }
                chosen = Some((candidate, resumed));
                break;
            }
            Err(e) => tracing::warn!(
                seq = candidate.seq,
                error = %e,
                "ignoring the {} checkpoint: its state does not read back",
                origin.name()
            ),
        }
    }
    let Some((checkpoint, (decider, pieces, bytes))) = chosen else {
        return Ok(None);
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
    tracing::info!(
        seq = checkpoint.seq,
        positions = ?checkpoint.positions,
        pieces,
        bytes,
        "resuming from the checkpoint"
    );
    Ok(Some((decider, checkpoint)))
}

/// Where a checkpoint was read from: its pieces are read from the same place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Origin {
    File,
    Store,
}

impl Origin {
    fn name(self) -> &'static str {
        match self {
            Origin::File => "file",
            Origin::Store => "store's",
        }
    }
}

/// The pieces `checkpoint` names, read from where it was read and checked against it.
fn read_pieces(
    checkpoint: &Checkpoint,
    origin: Origin,
    dir: &std::path::Path,
    store: &dyn Store,
    runtime: &tokio::runtime::Handle,
) -> Result<Vec<Vec<u8>>, PipelineError> {
    checkpoint
        .pieces
        .iter()
        .map(|piece| match origin {
            Origin::File => Ok(checkpoint::read_piece(dir, piece)?),
            Origin::Store => {
                let bytes = runtime
                    .block_on(store.checkpoint_piece(&piece.name))?
                    .ok_or_else(|| checkpoint::CheckpointError::Corrupt {
                        path: format!("in the store: piece {}", piece.name).into(),
                        reason: "missing".into(),
                    })?;
                piece.check(&bytes, "in the store")?;
                Ok(bytes)
            }
        })
        .collect()
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
