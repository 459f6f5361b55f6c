//! The one writer thread: it stages queued appends, writes them, fdatasyncs each touched segment
//! once and then answers every caller (group commit); a failed group is truncated away.

use super::*;

/// The writer thread's state: the open active segment of every partition.
pub(super) struct Writer {
    pub(super) shared: Arc<Shared>,
    pub(super) active: HashMap<String, Vec<ActiveSegment>>,
    /// Each writer name's current epoch, as in `writers.json` (ADR 0012).
    pub(super) writers: HashMap<String, u64>,
}

pub(super) struct ActiveSegment {
    pub(super) file: File,
    pub(super) path: PathBuf,
    pub(super) len: u64,
    pub(super) next_offset: u64,
    pub(super) last_indexed: u64,
    /// `last_indexed` as of the last durable write, restored when a write fails.
    pub(super) durable_last_indexed: u64,
    /// Frames staged in the current group commit, not yet written.
    pub(super) staged: Vec<u8>,
    pub(super) staged_count: u64,
    pub(super) staged_index: Vec<(u64, u64)>,
}

pub(super) struct Staged {
    pub(super) reply: oneshot::Sender<Result<Vec<Position>>>,
    pub(super) result: Result<Vec<Position>>,
}

impl Writer {
    pub(super) fn run(mut self, commands: mpsc::Receiver<Command>) {
        /// Marks the log failed if the writer thread unwinds, so readiness reports it.
        struct PanicGuard(Arc<Shared>);
        impl Drop for PanicGuard {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.fail("the writer thread panicked".into());
                }
            }
        }
        let _guard = PanicGuard(Arc::clone(&self.shared));
        while let Ok(first) = commands.recv() {
            let mut group = Vec::new();
            self.dispatch(first, &mut group);
            while group.len() < 4096 {
                match commands.try_recv() {
                    Ok(command) => self.dispatch(command, &mut group),
                    Err(_) => break,
                }
            }
            if !group.is_empty() {
                self.commit(group);
            }
        }
    }

    pub(super) fn dispatch(&mut self, command: Command, group: &mut Vec<Staged>) {
        match command {
            Command::EnsureTopic {
                topic,
                partitions,
                reply,
            } => {
                let _ = reply.send(self.ensure_topic(&topic, partitions));
            }
            Command::Append {
                topic,
                records,
                reply,
            } => {
                let result = self.stage(&topic, records);
                group.push(Staged { reply, result });
            }
            Command::ClaimWriter { name, reply } => {
                // Appends staged before the claim are durable (and readable) before it is
                // answered: the new writer then reads everything the fenced one appended.
                if !group.is_empty() {
                    self.commit(std::mem::take(group));
                }
                let _ = reply.send(self.claim_writer(&name));
            }
            Command::AppendAs {
                claim,
                topic,
                records,
                reply,
            } => {
                let current = self.writers.get(&claim.name).copied().unwrap_or(0);
                let result = if current == claim.epoch {
                    self.stage(&topic, records)
                } else {
                    Err(LogError::Fenced {
                        writer: claim.name,
                        epoch: claim.epoch,
                    })
                };
                group.push(Staged { reply, result });
            }
        }
    }

    /// The next epoch of writer `name`, durable before it is answered: a claim that survives a
    /// crash keeps fencing the claims before it.
    pub(super) fn claim_writer(&mut self, name: &str) -> Result<u64> {
        self.shared.check()?;
        let mut writers = self.writers.clone();
        let epoch = writers.get(name).copied().unwrap_or(0) + 1;
        writers.insert(name.to_owned(), epoch);
        write_json_durably(&self.shared.config.dir.join(WRITERS_FILE), &writers)?;
        self.writers = writers;
        Ok(epoch)
    }

    pub(super) fn ensure_topic(&mut self, name: &str, partitions: u32) -> Result<u32> {
        if let Some(t) = self.shared.topics.read().get(name) {
            return Ok(t.partitions.len() as u32);
        }
        let dir = self.shared.config.dir.join(name);
        fs::create_dir_all(&dir).map_err(|e| LogError::io(&dir, e))?;
        // The topic's directory entry must be durable before anything in it is acknowledged.
        sync_dir(&self.shared.config.dir)?;
        let (topic, writers) = recover_topic(&dir, partitions)?;
        // The metadata file is written last: a topic directory without it is ignored on open.
        write_json_durably(&dir.join("topic.json"), &TopicMeta { partitions })?;
        self.shared
            .topics
            .write()
            .insert(name.to_owned(), Arc::new(topic));
        self.active.insert(name.to_owned(), writers);
        Ok(partitions)
    }

    /// Encodes `records` into their partitions' staging buffers and assigns their offsets.
    pub(super) fn stage(&mut self, topic: &str, records: Vec<Record>) -> Result<Vec<Position>> {
        self.shared.check()?;
        let max = self.shared.config.max_record_bytes;
        if let Some(r) = records.iter().find(|r| r.key.len() + r.value.len() > max) {
            return Err(LogError::RecordTooLarge {
                size: r.key.len() + r.value.len(),
                max,
            });
        }
        let segments = self
            .active
            .get_mut(topic)
            .ok_or_else(|| LogError::UnknownTopic(topic.to_owned()))?;
        let n = segments.len() as u32;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let mut positions = Vec::with_capacity(records.len());
        for record in &records {
            let partition = partition_for(&record.key, n);
            let seg = &mut segments[partition as usize];
            let offset = seg.next_offset + seg.staged_count;
            let position = seg.len + seg.staged.len() as u64;
            if position - seg.last_indexed >= INDEX_INTERVAL {
                seg.staged_index.push((offset, position));
                seg.last_indexed = position;
            }
            encode_frame(&mut seg.staged, offset, now_ms, &record.key, &record.value);
            seg.staged_count += 1;
            positions.push(Position { partition, offset });
        }
        Ok(positions)
    }

    /// Writes and syncs everything staged, then answers every caller of the group.
    pub(super) fn commit(&mut self, group: Vec<Staged>) {
        let outcome = self.write_staged();
        let topics = self.shared.topics.read();
        for staged in group {
            let result = match (&outcome, staged.result) {
                (Ok(()), result) => result,
                (Err(e), Ok(_)) => Err(LogError::Unavailable(format!(
                    "write to the embedded log failed, nothing of this append was kept: {e}"
                ))),
                (Err(_), Err(e)) => Err(e),
            };
            let _ = staged.reply.send(result);
        }
        for topic in topics.values() {
            topic.appended.notify_waiters();
        }
    }

    pub(super) fn write_staged(&mut self) -> Result<()> {
        let mut touched: Vec<(String, usize)> = Vec::new();
        for (name, segments) in &self.active {
            for (i, seg) in segments.iter().enumerate() {
                if seg.staged_count > 0 {
                    touched.push((name.clone(), i));
                }
            }
        }
        let mut failure = None;
        for (name, i) in &touched {
            if let Err(e) = self.write_one(name, *i) {
                failure = Some(e);
                break;
            }
        }
        if let Some(e) = failure {
            // All or nothing: cut every touched partition back to its last durable length.
            for (name, i) in &touched {
                if let Some(seg) = self.active.get_mut(name).and_then(|s| s.get_mut(*i)) {
                    let restored = seg
                        .file
                        .set_len(seg.len)
                        .and_then(|()| seg.file.sync_data())
                        .and_then(|()| seg.file.metadata())
                        .map(|m| m.len() == seg.len);
                    if !matches!(restored, Ok(true)) {
                        // The file may hold frames that were never acknowledged: stop, so the
                        // next open's recovery decides what is in the log.
                        self.shared.fail(format!(
                            "could not cut {} back to {} bytes after a failed write: {restored:?}",
                            seg.path.display(),
                            seg.len
                        ));
                    }
                    seg.staged.clear();
                    seg.staged_count = 0;
                    seg.staged_index.clear();
                    seg.last_indexed = seg.durable_last_indexed;
                }
            }
            return Err(e);
        }
        // Everything is durable: publish the new ends and index entries.
        let topics = self.shared.topics.read();
        for (name, i) in touched {
            let (Some(seg), Some(topic)) = (
                self.active.get_mut(&name).and_then(|s| s.get_mut(i)),
                topics.get(&name),
            ) else {
                continue;
            };
            seg.len += seg.staged.len() as u64;
            seg.next_offset += seg.staged_count;
            seg.staged.clear();
            seg.staged_count = 0;
            seg.durable_last_indexed = seg.last_indexed;
            let partition = &topic.partitions[i];
            if !seg.staged_index.is_empty() {
                let mut segments = partition.segments.write();
                if let Some(last) = segments.last_mut() {
                    last.entries.append(&mut seg.staged_index);
                }
                seg.staged_index.clear();
            }
            partition
                .durable_end
                .store(seg.next_offset, Ordering::Release);
        }
        Ok(())
    }

    pub(super) fn write_one(&mut self, name: &str, i: usize) -> Result<()> {
        let config = self.shared.config.clone();
        let topic = self.shared.topics.read().get(name).cloned();
        let seg = self
            .active
            .get_mut(name)
            .and_then(|s| s.get_mut(i))
            .ok_or_else(|| LogError::UnknownTopic(name.to_owned()))?;
        if seg.len >= config.segment_bytes
            && let Some(topic) = &topic
        {
            roll(seg, &topic.partitions[i], &config)?;
        }
        seg.file
            .write_all(&seg.staged)
            .and_then(|()| {
                if !config.fsync_delay.is_zero() {
                    std::thread::sleep(config.fsync_delay);
                }
                seg.file.sync_data()
            })
            .map_err(|e| LogError::io(&seg.path, e))
    }
}

/// Closes the active segment and starts a new one at the next offset; applies retention.
pub(super) fn roll(
    seg: &mut ActiveSegment,
    partition: &Partition,
    config: &EmbeddedConfig,
) -> Result<()> {
    let base = seg.next_offset;
    // Staged frames move to the new segment: rebase their index positions.
    let path = segment_path(&partition.dir, base);
    let file = create_segment(&path, &partition.dir)?;
    for entry in &mut seg.staged_index {
        entry.1 -= seg.len;
    }
    seg.file = file;
    seg.path = path.clone();
    seg.len = 0;
    seg.last_indexed = 0;
    seg.durable_last_indexed = 0;
    {
        let mut segments = partition.segments.write();
        segments.push(SegmentIndex {
            base,
            path,
            entries: vec![(base, 0)],
        });
    }
    apply_retention(partition, config);
    Ok(())
}
