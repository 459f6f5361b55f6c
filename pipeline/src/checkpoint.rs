//! Checkpoints of the decider: its state with the log positions it had read, so that a restart
//! reads only the records after them instead of the whole log (ADR 0008).
//!
//! A checkpoint is incremental: a *head* (positions, settings, the decider's clocks and buffered
//! events, the views) that names a chain of *pieces*, one full piece of the decider's folds and
//! the deltas taken after it ([`emporium_dataflows::decider::Decider::take_state`]). Each
//! checkpoint writes its head and one new piece, usually a delta: what changed since the last
//! checkpoint, not the whole state. The writer starts a new chain with a full piece when the
//! deltas since the last full one weigh as much as it, or a piece could not be written
//! ([`crate::writer`]).
//!
//! On disk: the head in `<dir>/decider.ckpt`, each piece in `<dir>/pieces/<name>`, every file
//! replaced atomically (written to a temporary file, fsynced, renamed, directory fsynced). A
//! piece is written before the head that names it, and pieces no head names any more are
//! deleted after the new head is durable: a crash leaves the previous checkpoint or the new one,
//! never a mix. The head's format: the magic line `EMPORIUM-CHECKPOINT-1\n`, the bincode encoding
//! of [`Checkpoint`], then the SHA-256 of both (32 bytes), so a torn or altered file is refused
//! instead of resumed from; the head holds each piece's size and SHA-256, so a piece is checked
//! the same way. The same head and pieces are also put in the store
//! ([`emporium_serving::store::Store::put_checkpoint`],
//! [`emporium_serving::store::Store::put_checkpoint_piece`]), beside the documents they go with:
//! that copy outlives process 0's disk (a new machine, a lost volume) and the log's retention,
//! and a restart resumes from the newer of the two that reads back whole.
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
const PIECES: &str = "pieces";

/// The version of [`Checkpoint`] and of the decider state inside: bumped whenever either changes,
/// so another version of Emporium refuses a checkpoint instead of misreading it.
pub const FORMAT: u32 = 10;

/// A piece of a checkpoint's chain, as its head names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    /// Its name, unique to the writer that wrote it (`pieces/<name>`, and the store's key).
    pub name: String,
    pub len: u64,
    pub sha256: [u8; 32],
}

impl Piece {
    pub fn of(name: String, bytes: &[u8]) -> Self {
        Self {
            name,
            len: bytes.len() as u64,
            sha256: Sha256::digest(bytes).into(),
        }
    }

    /// `bytes` read back for this piece, checked; `origin` names where they came from.
    pub fn check(&self, bytes: &[u8], origin: &str) -> Result<(), CheckpointError> {
        let corrupt = |reason: String| CheckpointError::Corrupt {
            path: PathBuf::from(format!("{origin}: piece {}", self.name)),
            reason,
        };
        if bytes.len() as u64 != self.len {
            return Err(corrupt(format!(
                "{} bytes, the head names {}",
                bytes.len(),
                self.len
            )));
        }
        if Sha256::digest(bytes).as_slice() != self.sha256 {
            return Err(corrupt("checksum mismatch (torn or altered piece)".into()));
        }
        Ok(())
    }
}

/// A piece taken by worker 0 and not written yet: full, or a delta over the piece before it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewPiece {
    pub full: bool,
    pub bytes: Vec<u8>,
}

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
    /// The decider's head ([`emporium_dataflows::decider::TakenState::head`]).
    pub state: Vec<u8>,
    /// Each maintained view's name and input collection
    /// ([`emporium_dataflows::view::Installed::state`]), in the pipeline's order.
    pub views: Vec<(String, Vec<u8>)>,
    /// The chain the decider resumes from: a full piece, then the deltas after it, in order.
    pub pieces: Vec<Piece>,
    /// Pieces taken with this checkpoint (or with earlier ones it replaced before they were
    /// written), in order: written before the head. Not part of the head.
    #[serde(skip)]
    pub new_pieces: Vec<NewPiece>,
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

/// Writes a piece under `dir/pieces/`, durably, before a head names it.
pub fn write_piece(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), CheckpointError> {
    let pieces = dir.join(PIECES);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| CheckpointError::Io { path, source }
    };
    fs::create_dir_all(&pieces).map_err(io(&pieces))?;
    let target = pieces.join(name);
    let tmp = pieces.join(format!("{name}.tmp"));
    {
        let mut file = File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, &target).map_err(io(&target))?;
    File::open(&pieces)
        .and_then(|d| d.sync_all())
        .map_err(io(&pieces))
}

/// A piece of the chain of the head in `dir`, checked against the head.
pub fn read_piece(dir: &Path, piece: &Piece) -> Result<Vec<u8>, CheckpointError> {
    let path = dir.join(PIECES).join(&piece.name);
    let bytes = fs::read(&path).map_err(|source| CheckpointError::Io {
        path: path.clone(),
        source,
    })?;
    piece.check(&bytes, &dir.display().to_string())?;
    Ok(bytes)
}

/// Deletes the pieces in `dir` that `keep` does not name (a head naming `keep` is durable);
/// returns how many went.
pub fn remove_pieces_except(dir: &Path, keep: &[Piece]) -> Result<usize, CheckpointError> {
    let pieces = dir.join(PIECES);
    let entries = match fs::read_dir(&pieces) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => {
            return Err(CheckpointError::Io {
                path: pieces,
                source,
            });
        }
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|source| CheckpointError::Io {
            path: pieces.clone(),
            source,
        })?;
        let name = entry.file_name();
        if keep.iter().any(|p| name.to_str() == Some(p.name.as_str())) {
            continue;
        }
        fs::remove_file(entry.path()).map_err(|source| CheckpointError::Io {
            path: entry.path(),
            source,
        })?;
        removed += 1;
    }
    Ok(removed)
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
            pieces: vec![
                Piece::of("a-1".into(), b"full"),
                Piece::of("a-2".into(), b"delta"),
            ],
            new_pieces: Vec::new(),
        }
    }

    #[test]
    fn pieces_are_written_checked_against_the_head_and_removed_when_no_head_names_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let head = checkpoint();
        write_piece(dir.path(), "a-1", b"full").expect("write");
        write_piece(dir.path(), "a-2", b"delta").expect("write");
        write_piece(dir.path(), "old-1", b"older chain").expect("write");
        write(dir.path(), &head).expect("write");
        let read = read(dir.path()).expect("read").expect("a head");
        let bytes: Vec<Vec<u8>> = read
            .pieces
            .iter()
            .map(|p| read_piece(dir.path(), p).expect("piece"))
            .collect();
        assert_eq!(bytes, [b"full".to_vec(), b"delta".to_vec()]);
        assert_eq!(
            remove_pieces_except(dir.path(), &head.pieces).expect("remove"),
            1
        );
        assert!(!dir.path().join(PIECES).join("old-1").exists());
        // A piece altered or cut short is refused with its name.
        write_piece(dir.path(), "a-2", b"delt4").expect("alter");
        let err = read_piece(dir.path(), &head.pieces[1]).expect_err("altered");
        assert!(
            err.to_string().contains("piece a-2: checksum mismatch"),
            "{err}"
        );
        write_piece(dir.path(), "a-2", b"del").expect("cut");
        let err = read_piece(dir.path(), &head.pieces[1]).expect_err("cut");
        assert!(
            err.to_string().contains("3 bytes, the head names 5"),
            "{err}"
        );
        fs::remove_file(dir.path().join(PIECES).join("a-1")).expect("remove");
        assert!(read_piece(dir.path(), &head.pieces[0]).is_err(), "missing");
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
