//! Graph's error body: `{"error": {"code", "message", "innerError": {…}}}`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Nullable;

/// The body of a Graph error response.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GraphErrorBody {
    /// The error.
    pub error: GraphErrorDetail,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `error` object.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphErrorDetail {
    /// Machine-readable code to act on.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub code: Nullable<String>,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub message: Nullable<String>,
    /// Request ids and date.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub inner_error: Nullable<InnerError>,
    /// Any other property (`details`, …), written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `innerError`: what support needs to find the request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct InnerError {
    /// The service's id for the request.
    #[serde(
        rename = "request-id",
        default,
        skip_serializing_if = "Nullable::is_absent"
    )]
    pub request_id: Nullable<String>,
    /// The id the client sent.
    #[serde(
        rename = "client-request-id",
        default,
        skip_serializing_if = "Nullable::is_absent"
    )]
    pub client_request_id: Nullable<String>,
    /// When it happened.
    #[serde(default, skip_serializing_if = "Nullable::is_absent")]
    pub date: Nullable<String>,
    /// Any other property, written back unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
