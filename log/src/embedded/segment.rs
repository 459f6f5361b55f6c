//! The on-disk format: segment file names, the frame codec, and durable JSON metadata files.

use super::*;

/// Topic and group names become directory and file names: keep them to one plain path segment.
pub(super) fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(LogError::Config(format!(
            "{what} {name:?} must be non-empty, not start with '.', and hold no slashes"
        )));
    }
    Ok(())
}

pub(super) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.{SEGMENT_SUFFIX}"))
}

pub(super) fn create_segment(path: &Path, dir: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .append(true)
        .open(path)
        .map_err(|e| LogError::io(path, e))?;
    sync_dir(dir)?;
    Ok(file)
}

pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io(dir, e))
}

pub(super) fn encode_frame(
    out: &mut Vec<u8>,
    offset: u64,
    timestamp_ms: i64,
    key: &[u8],
    value: &[u8],
) {
    let body_len = FIXED_BODY_BYTES + key.len() + value.len();
    out.reserve(HEADER_BYTES + body_len);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    let crc_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let body_at = out.len();
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&timestamp_ms.to_le_bytes());
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    let crc = crc32c::crc32c(&out[body_at..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
}

/// One decoded frame.
pub(super) struct Frame {
    pub(super) offset: u64,
    pub(super) timestamp_ms: i64,
    pub(super) key: Bytes,
    pub(super) value: Bytes,
}

pub(super) enum FrameRead {
    Frame(Frame, u64),
    /// Clean end of file.
    End,
    /// A frame that is cut short or fails its checksum: a torn write.
    Torn(String),
}

/// Reads the frame at the reader's position; `max_body` bounds a sane length.
pub(super) fn read_frame(reader: &mut impl Read, max_body: usize) -> std::io::Result<FrameRead> {
    let mut header = [0u8; HEADER_BYTES];
    let mut got = 0;
    while got < HEADER_BYTES {
        match reader.read(&mut header[got..])? {
            0 if got == 0 => return Ok(FrameRead::End),
            0 => {
                return Ok(FrameRead::Torn(format!(
                    "header cut short after {got} bytes"
                )));
            }
            n => got += n,
        }
    }
    let body_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if !(FIXED_BODY_BYTES..=max_body).contains(&body_len) {
        return Ok(FrameRead::Torn(format!(
            "implausible frame length {body_len}"
        )));
    }
    let mut body = vec![0u8; body_len];
    let mut got = 0;
    while got < body_len {
        match reader.read(&mut body[got..])? {
            0 => {
                return Ok(FrameRead::Torn(format!(
                    "frame cut short: {got} of {body_len} bytes"
                )));
            }
            n => got += n,
        }
    }
    if crc32c::crc32c(&body) != crc {
        return Ok(FrameRead::Torn("checksum mismatch".into()));
    }
    let offset = u64::from_le_bytes(body[0..8].try_into().expect("8 bytes"));
    let timestamp_ms = i64::from_le_bytes(body[8..16].try_into().expect("8 bytes"));
    let key_len = u32::from_le_bytes(body[16..20].try_into().expect("4 bytes")) as usize;
    if FIXED_BODY_BYTES + key_len > body_len {
        return Ok(FrameRead::Torn(format!(
            "key length {key_len} beyond frame"
        )));
    }
    let body = Bytes::from(body);
    let key = body.slice(FIXED_BODY_BYTES..FIXED_BODY_BYTES + key_len);
    let value = body.slice(FIXED_BODY_BYTES + key_len..);
    Ok(FrameRead::Frame(
        Frame {
            offset,
            timestamp_ms,
            key,
            value,
        },
        (HEADER_BYTES + body_len) as u64,
    ))
}

/// The largest body a frame at `position` of a file of `file_len` bytes can have: a length
/// field beyond it is a torn or garbled write (and is never allocated). A setting such as
/// `max_record_bytes` must not decide this, or lowering it would cut acknowledged records.
pub(super) fn max_body_at(file_len: u64, position: u64) -> usize {
    file_len
        .saturating_sub(position)
        .saturating_sub(HEADER_BYTES as u64)
        .min(u32::MAX as u64) as usize
}

pub(super) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).map_err(|e| LogError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| LogError::Corrupt {
        path: path.to_owned(),
        position: 0,
        detail: e.to_string(),
    })
}

/// Write to a temporary file, fsync it, rename it over `path`, fsync the directory.
pub(super) fn write_json_durably<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(value).map_err(|e| LogError::Config(e.to_string()))?;
    let mut f = File::create(&tmp).map_err(|e| LogError::io(&tmp, e))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| LogError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| LogError::io(path, e))?;
    sync_dir(dir)
}
