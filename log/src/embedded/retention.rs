//! Retention: closed segments deleted by age or by a partition's total size.

use super::*;

pub(super) fn apply_retention(partition: &Partition, config: &EmbeddedConfig) {
    let mut segments = partition.segments.write();
    let sizes: Vec<u64> = segments
        .iter()
        .map(|s| fs::metadata(&s.path).map(|m| m.len()).unwrap_or(0))
        .collect();
    let mut total: u64 = sizes.iter().sum();
    let mut remove = 0;
    // Never the active (last) segment.
    while remove + 1 < segments.len() {
        let seg = &segments[remove];
        let too_old = config.retention.is_some_and(|keep| {
            fs::metadata(&seg.path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > keep)
        });
        let too_big = config.retention_bytes.is_some_and(|max| total > max);
        if !(too_old || too_big) {
            break;
        }
        total -= sizes[remove];
        remove += 1;
    }
    // Oldest first, stopping at the first failure: the segments kept stay contiguous.
    let mut deleted = 0;
    for seg in segments.iter().take(remove) {
        if let Err(e) = fs::remove_file(&seg.path) {
            tracing::warn!(path = %seg.path.display(), error = %e, "could not delete expired segment");
            break;
        }
        deleted += 1;
    }
    segments.drain(..deleted);
}
