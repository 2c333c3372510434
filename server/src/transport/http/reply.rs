//! The bridge's error bodies: `{"success": false, "error": MESSAGE}`, as the original API
//! answered, with the JSON-RPC error object as `detail` when a method refused.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jsonrpsee_types::ErrorObjectOwned;
use mcli_protocol::code;
use serde_json::json;

pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "success": false, "error": message.into() }))).into_response()
}

/// The answer to a method's error, with the HTTP status that fits its code.
pub fn rpc_error(error: ErrorObjectOwned) -> Response {
    let message = error.message().to_owned();
    (status_of(&error), axum::Json(json!({ "success": false, "error": message, "detail": error }))).into_response()
}

/// The HTTP status for a JSON-RPC error.
fn status_of(error: &ErrorObjectOwned) -> StatusCode {
    match error.code() {
        code::COMMAND_NOT_FOUND | code::JOB_NOT_FOUND => StatusCode::NOT_FOUND,
        code::SERVER_BUSY | code::SHUTTING_DOWN => StatusCode::SERVICE_UNAVAILABLE,
        code::INVALID_PARAMS | code::INVALID_REQUEST | code::PARSE_ERROR => StatusCode::BAD_REQUEST,
        code::COMMAND_BROKEN => StatusCode::UNPROCESSABLE_ENTITY,
        code::UNAUTHORIZED => StatusCode::UNAUTHORIZED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
