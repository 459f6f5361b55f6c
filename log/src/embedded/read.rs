//! Reads: a partition's durable records from any offset, through the sparse segment index.

use super::*;

/// A cursor over one partition of the embedded log.
pub(super) struct EmbeddedReader {
    pub(super) topic: Arc<Topic>,
    pub(super) name: String,
    pub(super) partition: u32,
    pub(super) next: u64,
}

#[async_trait]
impl PartitionReader for EmbeddedReader {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<ConsumedRecord>> {
        let batch = read_partition(
            &self.topic.partitions[self.partition as usize],
            &self.name,
            self.partition,
            self.next,
            max,
        )?;
        if let Some(last) = batch.last() {
            self.next = last.offset + 1;
        }
        Ok(batch)
    }

    fn position(&self) -> u64 {
        self.next
    }
}

/// Reads up to `max` durable records of a partition starting at `from`; a `from` below the first
/// retained offset (or a segment that retention deletes before it is read) is a gap, an error.
pub(super) fn read_partition(
    partition: &Partition,
    topic: &str,
    id: u32,
    from: u64,
    max: usize,
) -> Result<Vec<ConsumedRecord>> {
    let end = partition.durable_end.load(Ordering::Acquire);
    let mut out = Vec::new();
    let segments: Vec<SegmentIndex> = {
        let all = partition.segments.read();
        let first = all.first().map_or(end, |s| s.base.min(end));
        if from < first {
            return Err(LogError::gap(topic, id, from, first));
        }
        if from >= end || max == 0 {
            return Ok(out);
        }
        // The segment holding `from`, and every later one.
        let start = all.partition_point(|s| s.base <= from).saturating_sub(1);
        all[start..].to_vec()
    };
    let mut next = from;
    for (i, seg) in segments.iter().enumerate() {
        let position = if i == 0 {
            let at = seg
                .entries
                .partition_point(|(o, _)| *o <= next)
                .saturating_sub(1);
            seg.entries.get(at).map(|e| e.1).unwrap_or(0)
        } else {
            0
        };
        let file = match File::open(&seg.path) {
            Ok(f) => f,
            // Deleted by retention between the listing and the open: its records are gone.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LogError::gap(topic, id, next, partition.first_retained()));
            }
            Err(e) => return Err(LogError::io(&seg.path, e)),
        };
        let file_len = file
            .metadata()
            .map_err(|e| LogError::io(&seg.path, e))?
            .len();
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        reader
            .seek(SeekFrom::Start(position))
            .map_err(|e| LogError::io(&seg.path, e))?;
        let mut position = position;
        // Stops at the end of this segment, or at frames beyond the durable end being written now.
        while let FrameRead::Frame(frame, size) =
            read_frame(&mut reader, max_body_at(file_len, position))
                .map_err(|e| LogError::io(&seg.path, e))?
        {
            position += size;
            if frame.offset >= end {
                return Ok(out);
            }
            if frame.offset >= next {
                next = frame.offset + 1;
                out.push(ConsumedRecord {
                    partition: id,
                    offset: frame.offset,
                    timestamp_ms: frame.timestamp_ms,
                    key: frame.key,
                    value: frame.value,
                });
                if out.len() >= max {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}
