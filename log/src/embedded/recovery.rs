//! Recovery on open: every partition's segments indexed and its torn tail cut off.

use super::*;

/// Opens every partition of a topic, creating missing ones, and recovers their tails.
pub(super) fn recover_topic(dir: &Path, partitions: u32) -> Result<(Topic, Vec<ActiveSegment>)> {
    let mut parts = Vec::with_capacity(partitions as usize);
    let mut writers = Vec::with_capacity(partitions as usize);
    for p in 0..partitions {
        let pdir = dir.join(format!("{p:04}"));
        fs::create_dir_all(&pdir).map_err(|e| LogError::io(&pdir, e))?;
        let (partition, active) = recover_partition(&pdir)?;
        parts.push(partition);
        writers.push(active);
    }
    let groups = dir.join("_groups");
    fs::create_dir_all(&groups).map_err(|e| LogError::io(&groups, e))?;
    sync_dir(dir)?;
    Ok((
        Topic {
            dir: dir.to_owned(),
            partitions: parts,
            appended: Notify::new(),
        },
        writers,
    ))
}

pub(super) fn recover_partition(dir: &Path) -> Result<(Partition, ActiveSegment)> {
    let mut bases: Vec<u64> = fs::read_dir(dir)
        .map_err(|e| LogError::io(dir, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(&format!(".{SEGMENT_SUFFIX}"))
                .and_then(|b| b.parse().ok())
        })
        .collect();
    bases.sort_unstable();
    if bases.is_empty() {
        bases.push(0);
        create_segment(&segment_path(dir, 0), dir)?;
    }
    let mut segments = Vec::with_capacity(bases.len());
    let mut expected = bases[0];
    let mut last_len = 0;
    let mut last_indexed = 0;
    for (i, &base) in bases.iter().enumerate() {
        let path = segment_path(dir, base);
        let is_last = i + 1 == bases.len();
        if base != expected {
            return Err(LogError::Corrupt {
                path,
                position: 0,
                detail: format!("segment starts at offset {base}, expected {expected}"),
            });
        }
        let file = File::open(&path).map_err(|e| LogError::io(&path, e))?;
        let file_len = file.metadata().map_err(|e| LogError::io(&path, e))?.len();
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut position = 0u64;
        let mut entries = vec![(base, 0)];
        let mut indexed = 0u64;
        loop {
            let read = read_frame(&mut reader, max_body_at(file_len, position))
                .map_err(|e| LogError::io(&path, e))?;
            let problem = match read {
                FrameRead::End => break,
                FrameRead::Frame(frame, size) if frame.offset == expected => {
                    if position - indexed >= INDEX_INTERVAL {
                        entries.push((frame.offset, position));
                        indexed = position;
                    }
                    position += size;
                    expected += 1;
                    continue;
                }
                FrameRead::Frame(frame, _) => {
                    format!("offset {} where {expected} was expected", frame.offset)
                }
                FrameRead::Torn(why) => why,
            };
            if !is_last {
                return Err(LogError::Corrupt {
                    path,
                    position,
                    detail: problem,
                });
            }
            tracing::warn!(path = %path.display(), position, problem, "truncating torn tail of the log");
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| LogError::io(&path, e))?;
            f.set_len(position)
                .and_then(|()| f.sync_all())
                .map_err(|e| LogError::io(&path, e))?;
            break;
        }
        if is_last {
            last_len = position;
            last_indexed = indexed;
        }
        segments.push(SegmentIndex {
            base,
            path,
            entries,
        });
    }
    let last = segments.last().expect("at least one segment").clone();
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .open(&last.path)
        .map_err(|e| LogError::io(&last.path, e))?;
    let active = ActiveSegment {
        file,
        path: last.path.clone(),
        len: last_len,
        next_offset: expected,
        last_indexed,
        durable_last_indexed: last_indexed,
        staged: Vec::new(),
        staged_count: 0,
        staged_index: Vec::new(),
    };
    let partition = Partition {
        dir: dir.to_owned(),
        durable_end: AtomicU64::new(expected),
        segments: RwLock::new(segments),
    };
    Ok((partition, active))
}
