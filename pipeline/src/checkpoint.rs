//! Checkpoints of the decider: its whole state with the log positions it had read, so that a
//! restart reads only the records after them instead of the whole log (ADR 0008).
//!
//! One file, `<dir>/decider.ckpt`, replaced atomically (written to a temporary file, fsynced,
//! renamed, directory fsynced): a crash leaves the previous checkpoint or the new one, never a
//! mix. Format: the magic line `EMPORIUM-CHECKPOINT-1\n`, the bincode encoding of
//! [`Checkpoint`], then the SHA-256 of both (32 bytes), so a torn or altered file is refused
//! instead of resumed from. The same bytes are also put in the store
//! ([`emporium_serving::store::Store::put_checkpoint`]), beside the documents they go with: that
//! copy outlives process 0's disk (a new machine, a lost volume) and the log's retention, and a
//! restart resumes from the newer of the two.
//!
//! The pipeline writes a checkpoint only after the store holds every document up to its `seq`
//! and the log every decision up to it; it resumes from one only if the store's positions are at
//! or past the checkpoint's. Anything else falls back to a replay from the start, which is
//! correct, only slower, while the log still holds its beginning: when retention has removed it
//! (or the records after the checkpoint's positions), the pipeline stops with
//! [`crate::PipelineError::Gap`] instead of deciding on what is left.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const MAGIC: &[u8] = b"EMPORIUM-CHECKPOINT-1\n";
const FILE: &str = "decider.ckpt";

/// The version of [`Checkpoint`] and of the decider state inside: bumped whenever either changes,
/// so another version of Emporium refuses a checkpoint instead of misreading it.
pub const FORMAT: u32 = 6;

/// The decider at the end of one round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// [`FORMAT`] when written.
    pub format: u32,
    /// The decider's `seq`: events applied so far.
    pub seq: u64,
    /// Per partition, the next offset to read: every record before it is in the state.
    pub positions: Vec<u64>,
    /// The settings the state was taken with; another setting would decide differently.
    pub allowed_lateness_ms: i64,
    pub reservation_ttl_ms: i64,
    /// [`emporium_dataflows::decider::Decider::state`].
    pub state: Vec<u8>,
    /// Each maintained view's name and input collection
    /// ([`emporium_dataflows::view::Installed::state`]), in the pipeline's order.
    pub views: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoint {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// The checkpoint file in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// The checkpoint's bytes: the magic line, the bincode body, the SHA-256 of both. The same bytes
/// go to the file and to the store's copy ([`emporium_serving::store::Store::put_checkpoint`]).
pub fn encode(checkpoint: &Checkpoint) -> Result<Vec<u8>, CheckpointError> {
    let body = bincode::serialize(checkpoint).map_err(|e| CheckpointError::Corrupt {
        path: PathBuf::from(FILE),
        reason: format!("cannot encode: {e}"),
    })?;
    let mut bytes = Vec::with_capacity(MAGIC.len() + body.len() + 32);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&body);
    let sum = Sha256::digest(&bytes);
    bytes.extend_from_slice(&sum);
    Ok(bytes)
}

/// Replaces the checkpoint in `dir` (created if missing) with `bytes` ([`encode`]); returns
/// their size.
pub fn write_bytes(dir: &Path, bytes: &[u8]) -> Result<u64, CheckpointError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| CheckpointError::Io { path, source }
    };
    let target = path(dir);
    fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = dir.join(format!("{FILE}.tmp"));
    {
        let mut file = File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, &target).map_err(io(&target))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(bytes.len() as u64)
}

/// Replaces the checkpoint in `dir` (created if missing); returns the file's size in bytes.
pub fn write(dir: &Path, checkpoint: &Checkpoint) -> Result<u64, CheckpointError> {
    write_bytes(dir, &encode(checkpoint)?)
}

/// The checkpoint in `dir`; `None` if there is none.
pub fn read(dir: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
    let target = path(dir);
    let bytes = match fs::read(&target) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CheckpointError::Io {
                path: target,
                source,
            });
        }
    };
    decode(&bytes, &target).map(Some)
}

/// The checkpoint in `bytes` ([`encode`]), read from `origin` (named in errors).
pub fn decode(bytes: &[u8], origin: &Path) -> Result<Checkpoint, CheckpointError> {
    let corrupt = |reason: String| CheckpointError::Corrupt {
        path: origin.to_owned(),
        reason,
    };
    if bytes.len() < MAGIC.len() + 32 || !bytes.starts_with(MAGIC) {
        return Err(corrupt(format!(
            "expected a file starting with {:?}",
            String::from_utf8_lossy(MAGIC).trim_end()
        )));
    }
    let (content, sum) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(content).as_slice() != sum {
        return Err(corrupt("checksum mismatch (torn or altered file)".into()));
    }
    // The format comes first: an unknown one is refused before the rest is decoded.
    let body = &content[MAGIC.len()..];
    match bincode::deserialize::<u32>(body) {
        Ok(FORMAT) => {}
        Ok(other) if other < FORMAT => {
            // Format 1 numbered the steps differently (ADR 0005): the store this checkpoint went
            // with holds documents at seqs a replay would not reach, so they would stay stale.
            return Err(corrupt(format!(
                "written by another version of Emporium (format {other}, this one reads {FORMAT}); \
                 the store written with it may keep stale documents: start from an empty data \
                 directory (or a new ScyllaDB keyspace)"
            )));
        }
        Ok(other) => {
            return Err(corrupt(format!(
                "written by another version of Emporium (format {other}, this one reads {FORMAT})"
            )));
        }
        Err(e) => return Err(corrupt(format!("cannot decode: {e}"))),
    }
    bincode::deserialize(body).map_err(|e| corrupt(format!("cannot decode: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            format: FORMAT,
            seq: 42,
            positions: vec![3, 0, 7],
            allowed_lateness_ms: 500,
            reservation_ttl_ms: 900_000,
            state: vec![1, 2, 3, 4],
            views: vec![("product_ratings".into(), vec![5, 6])],
        }
    }

    #[test]
    fn a_written_checkpoint_reads_back_and_replaces_the_previous_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read(dir.path()).expect("read"), None);
        write(dir.path(), &checkpoint()).expect("write");
        let next = Checkpoint {
            seq: 43,
            ..checkpoint()
        };
        write(dir.path(), &next).expect("write");
        assert_eq!(read(dir.path()).expect("read"), Some(next));
    }

    #[test]
    fn a_torn_or_altered_checkpoint_is_refused_with_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let size = write(dir.path(), &checkpoint()).expect("write");
        let file = path(dir.path());
        let mut bytes = fs::read(&file).expect("read");
        assert_eq!(bytes.len() as u64, size);
        bytes[MAGIC.len() + 2] ^= 1;
        fs::write(&file, &bytes).expect("alter");
        let err = read(dir.path()).expect_err("altered").to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
        let other = Checkpoint {
            format: FORMAT + 1,
            ..checkpoint()
        };
        write(dir.path(), &other).expect("write");
        let err = read(dir.path()).expect_err("other format").to_string();
        assert!(err.contains("another version of Emporium"), "{err}");
        assert!(!err.contains("stale documents"), "{err}");
        let older = Checkpoint {
            format: FORMAT - 1,
            ..checkpoint()
        };
        write(dir.path(), &older).expect("write");
        let err = read(dir.path()).expect_err("older format").to_string();
        assert!(err.contains("start from an empty data directory"), "{err}");
        fs::write(&file, &bytes[..10]).expect("tear");
        let err = read(dir.path()).expect_err("torn").to_string();
        assert!(err.contains("expected a file starting with"), "{err}");
    }
}
