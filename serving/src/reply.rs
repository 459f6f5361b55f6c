//! What every read route shares: the routes' state, the authenticated caller, the one error
//! envelope, and whether a user was erased. Its own module, so that the route modules (`api`,
//! `recommendations`) depend on it and not on each other.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::{Audience, AuthError, Authenticator, Principal};
use crate::store::{Store, StoreError};

#[derive(Clone)]
pub(crate) struct Serving {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) auth: Authenticator,
    /// The candidates' popularity the user recommendations rerank by, reused for a second.
    pub(crate) popularity: Arc<crate::popularity::PopularityCache>,
    /// The item-to-item lists the user recommendations walk, reused for a second.
    pub(crate) lists: Arc<crate::lists::ListCache>,
    /// The declared feature views `/v1/features` serves.
    pub(crate) features: Arc<emporium_features::Declarations>,
    /// `/openapi.json`, naming the declared feature views and features.
    pub(crate) openapi: bytes::Bytes,
}

/// An error answer of the read API, sent in the one envelope (`emporium_ops::ApiError`):
/// `{"error": {"code": code, "message": text}}`.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn not_found(what: &str, id: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: format!("no {what} with id {id:?}"),
        }
    }

    pub(crate) fn forbidden(message: String) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message,
        }
    }

    pub(crate) fn bad_request(message: String) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message,
        }
    }

    pub(crate) fn unavailable(code: &'static str, message: &str) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code,
            message: message.to_owned(),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: e.to_string(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::BadCursor(_) => Self::bad_request(e.to_string()),
            e => {
                tracing::error!(error = %e, "store read failed");
                Self {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: "store_unavailable",
                    message: "the store could not answer; try again".into(),
                }
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The one envelope of every route (`{"error": {"code", "message"}}`, a bearer challenge
        // on 401).
        emporium_ops::ApiError::new(self.status, self.code, self.message).into_response()
    }
}

/// The authenticated caller of a request, from its `Authorization` header (read in place, not
/// copied out of the request).
pub(crate) struct Caller(pub(crate) Principal);

impl FromRequestParts<Serving> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &Serving) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().map_err(|_| AuthError::NotBearer))
            .transpose()?;
        Ok(Caller(s.auth.authenticate(value, Audience::Read)?))
    }
}

/// Whether `user` asked to be forgotten (`user_erased`): the `erased_users` view holds a
/// tombstone for them (ADR 0015). Their per-user answers are 404 from then on. One point read
/// that, for everyone else, finds nothing.
pub(crate) async fn erased(s: &Serving, user: &str) -> Result<bool, ApiError> {
    let doc = s.store.view("erased_users", user).await?;
    Ok(doc.is_some_and(|d| d.json.as_ref() != b"null"))
}

/// A `limit` parameter: `default` when absent, else an integer from 1 to `max`, or a 400 naming
/// it.
pub(crate) fn limit(text: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    match text {
        None => Ok(default),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "limit: expected an integer from 1 to {max}, got {text:?}"
            ))),
        },
    }
}
