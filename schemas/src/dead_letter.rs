//! The dead-letter log's records: every rejected input line, kept with why it was rejected
//! (card numbers masked). Written by ingest to the log's dead-letter topic; read by `GET /v1/dlq`,
//! `emporium dlq` and the lakehouse's `rejected` table.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::{FieldError, RejectReason, pci};

/// Raw bytes kept per dead letter; the rest of an oversize line is cut (its size is in the errors).
pub const MAX_RAW_BYTES: usize = 64 * 1024;

/// One rejected line, as stored in the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub received_at: String,
    /// Where it came from, e.g. `http 127.0.0.1:50122`.
    pub source: String,
    /// Index of the line in its request body (0-based).
    pub line: usize,
    pub reason: String,
    pub errors: Vec<DeadLetterError>,
    /// The raw bytes (card numbers masked, at most [`MAX_RAW_BYTES`]) when they are UTF-8 ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// ... base64 otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_base64: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterError {
    pub path: String,
    pub message: String,
}

impl DeadLetter {
    pub fn new(
        received_at: DateTime<Utc>,
        source: &str,
        line: usize,
        reason: RejectReason,
        errors: &[FieldError],
        raw: &[u8],
    ) -> Self {
        // Card numbers are never stored, not even in the dead-letter log: masked first — read
        // through JSON escapes and across bytes that are not UTF-8 — then cut to the size kept
        // (cutting first could split a number and leave its digits).
        let kept = pci::mask_raw_line(raw, MAX_RAW_BYTES);
        let (raw, raw_base64) = match String::from_utf8(kept) {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(BASE64.encode(e.as_bytes()))),
        };
        Self {
            received_at: received_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            source: source.to_owned(),
            line,
            reason: reason.as_str().to_owned(),
            // Messages and paths can echo input (`invalid type: string "…"`): mask them too.
            errors: errors
                .iter()
                .map(|e| DeadLetterError {
                    path: pci::mask_card_numbers_in_quoted(&e.path).into_owned(),
                    message: pci::mask_card_numbers_in_quoted(&e.message).into_owned(),
                })
                .collect(),
            raw,
            raw_base64,
        }
    }
}

impl DeadLetter {
    /// The record's JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings always serializes.
        serde_json::to_vec(self).expect("dead letters serialize")
    }
}
