//! API errors: an HTTP status and an Octopus-shaped JSON body `{ErrorMessage, Errors, …}`.
//! Internal failures are logged with their cause and answered with a generic message.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub errors: Vec<String>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            errors: Vec::new(),
        }
    }

    /// 400 with the headline "There was a problem with your request." and the details.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: "There was a problem with your request.".to_string(),
            errors: vec![detail.into()],
        }
    }

    /// 404 whose message names what was not found.
    pub fn not_found(what: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: what.into(),
            errors: Vec::new(),
        }
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::CONFLICT,
            message: "There was a conflict with the current state of the resource.".to_string(),
            errors: vec![detail.into()],
        }
    }

    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "You must be logged in to perform this action. Send an API key in the X-Octopus-ApiKey header.",
        )
    }

    /// A 500 whose cause is logged but never returned.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server could not complete the request because of an internal error. The server log has details.",
        )
    }
}

impl From<ferry_store::StoreError> for ApiError {
    fn from(e: ferry_store::StoreError) -> Self {
        match e {
            ferry_store::StoreError::Conflict => {
                ApiError::conflict("A resource with the same name already exists")
            }
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "ErrorMessage": self.message,
            "Errors": self.errors,
            "FullException": null,
            "HelpText": null,
            "HelpLink": null,
            "ParsedHelpLinks": [],
            "Details": {},
        });
        (self.status, axum::Json(body)).into_response()
    }
}
