//! The answer of `POST /v1/events`, as ingest sends it and producers (the generator, any client)
//! read it: what happened to each line of a request.

use serde::{Deserialize, Serialize};

use crate::FieldError;

/// What happened to each line of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntakeReport {
    /// Lines appended to the log by this request.
    pub accepted: usize,
    /// Lines whose `event_id` was already in the log: acknowledged, not appended again.
    pub duplicates: usize,
    pub rejected: Vec<RejectedLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedLine {
    /// 0-based index of the line in the body.
    pub index: usize,
    pub errors: Vec<RejectedField>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedField {
    pub path: String,
    pub message: String,
    pub reason: String,
}

impl From<&FieldError> for RejectedField {
    fn from(e: &FieldError) -> Self {
        Self {
            path: e.path.clone(),
            message: e.message.clone(),
            reason: e.reason.as_str().to_owned(),
        }
    }
}
