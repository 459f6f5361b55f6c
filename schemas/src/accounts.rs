//! Account events. Keyed by `user_id`, so a user's erasure lands after everything that user did
//! in the same partition.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validate::{TextSize, Validator};

/// A user asked to be forgotten (GDPR article 17): from its place in the log on, every derived
/// view leaves out everything that user did — their orders, views and reviews no longer count in
/// any recommendation, and per-user answers about them are 404 (ADR 0015). The raw events stay in
/// the log and the lakehouse until their retention ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserErased {
    pub user_id: String,
    /// Why, for the audit trail (e.g. `gdpr_request`).
    pub reason: String,
}

impl UserErased {
    pub(crate) fn validate(&self, v: &mut Validator) {
        v.id("user_id", &self.user_id);
        v.text("reason", &self.reason, TextSize::Short);
    }
}
