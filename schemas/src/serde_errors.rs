//! serde's errors as field errors: the path and a message that says what was expected, with
//! card numbers masked (a message can echo the input), for every parse of the envelope.

use crate::validate::{FieldError, RejectReason};

/// Turns a serde error into a field error with a JSON path under `prefix`.
/// A deserialization error as a field error: path and message echo input (a key, a value), so
/// card numbers in them are masked, in the answer to the producer as in the dead letter.
pub(crate) fn serde_error(
    prefix: &str,
    e: serde_path_to_error::Error<serde_json::Error>,
) -> FieldError {
    let mut error = serde_error_unmasked(prefix, e);
    error.path = crate::pci::mask_card_numbers_in_quoted(&error.path).into_owned();
    error.message = crate::pci::mask_card_numbers_in_quoted(&error.message).into_owned();
    error
}

fn serde_error_unmasked(
    prefix: &str,
    e: serde_path_to_error::Error<serde_json::Error>,
) -> FieldError {
    let mut path = String::from(prefix);
    for seg in e.path().iter() {
        match seg {
            serde_path_to_error::Segment::Seq { index } => path.push_str(&format!("[{index}]")),
            serde_path_to_error::Segment::Map { key } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            serde_path_to_error::Segment::Enum { variant } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(variant);
            }
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    let inner = e.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        return FieldError {
            path: "$".into(),
            message: format!("malformed JSON: {inner}"),
            reason: RejectReason::MalformedJson,
        };
    }
    let message = without_position(&inner);
    let join = |path: &str, field: &str| {
        if path.is_empty() {
            field.to_owned()
        } else if path.ends_with(&format!(".{field}")) || path == field {
            path.to_owned()
        } else {
            format!("{path}.{field}")
        }
    };
    if let Some(field) = backticked(&message, "missing field `") {
        return FieldError {
            path: join(&path, field),
            message: "missing required field".into(),
            reason: RejectReason::MissingField,
        };
    }
    if let Some(field) = backticked(&message, "unknown field `") {
        let expected = message
            .split_once(", expected ")
            .map(|(_, e)| e)
            .unwrap_or("");
        return FieldError {
            path: join(&path, field),
            message: format!("unknown field; expected {expected}"),
            reason: RejectReason::UnknownField,
        };
    }
    if path.is_empty() {
        path.push('$');
    }
    FieldError {
        path,
        message,
        reason: RejectReason::InvalidValue,
    }
}

fn backticked<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split_once('`').map(|(field, _)| field)
}

/// serde_json appends " at line L column C"; in a per-field message it is noise.
pub(crate) fn without_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

pub(crate) fn clip(s: &str) -> String {
    crate::validate::echo(s, 64)
}
