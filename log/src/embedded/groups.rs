//! Consumer groups: each group's committed positions, one JSON file per group and topic, and the
//! consumer that polls from them.

use super::*;

#[derive(Serialize, Deserialize, Default)]
pub(super) struct GroupPositions {
    /// Next offset to read, per partition.
    pub(super) next: Vec<u64>,
}

/// The only member of its consumer group: it owns every partition of the topic.
pub(super) struct EmbeddedConsumer {
    pub(super) topic: Arc<Topic>,
    pub(super) name: String,
    pub(super) group_file: PathBuf,
    /// Next offset to hand out per partition (ahead of the committed position until commit).
    pub(super) next: Vec<u64>,
    pub(super) turn: usize,
}

#[async_trait]
impl LogConsumer for EmbeddedConsumer {
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<Vec<ConsumedRecord>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.topic.appended.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut out = Vec::new();
            let n = self.topic.partitions.len();
            for i in 0..n {
                if out.len() >= max {
                    break;
                }
                let p = (self.turn + i) % n;
                let partition = &self.topic.partitions[p];
                // Kafka's `auto.offset.reset=earliest`: a position retention removed (or none
                // committed) reads from the first offset kept.
                self.next[p] = self.next[p].max(partition.first_retained());
                let batch = read_partition(
                    partition,
                    &self.name,
                    p as u32,
                    self.next[p],
                    max - out.len(),
                )?;
                if let Some(last) = batch.last() {
                    self.next[p] = last.offset + 1;
                }
                out.extend(batch);
            }
            self.turn = (self.turn + 1) % n.max(1);
            if !out.is_empty() {
                return Ok(out);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(out);
            }
        }
    }

    async fn commit(&mut self, next: &[Position]) -> Result<()> {
        let mut positions = if self.group_file.is_file() {
            read_json::<GroupPositions>(&self.group_file)?.next
        } else {
            Vec::new()
        };
        positions.resize(self.topic.partitions.len(), 0);
        for pos in next {
            let slot = positions
                .get_mut(pos.partition as usize)
                .ok_or_else(|| LogError::Config(format!("no partition {}", pos.partition)))?;
            *slot = pos.offset;
        }
        write_json_durably(&self.group_file, &GroupPositions { next: positions })
    }
}
