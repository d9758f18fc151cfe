//! Why a review request gets no page: one typed error per cause, with a
//! stable kebab-case code (sent as the `x-cutout-error` header), its HTTP
//! status and a message that names the parameter and the fix.
//!
//! Must not: put folders, config values or secrets into a message (only
//! file names and the request's own parameters).

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::pages;

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("`{key}` = {value:?} is not a date; write it as YYYY-MM-DD")]
    BadDate { key: &'static str, value: String },
    #[error("`{key}` = {value:?} is not a number")]
    BadNumber { key: &'static str, value: String },
    #[error("ask for `original` or `out<N>` (N = 0, 1, …)")]
    BadPicture,
    #[error("{0}")]
    NotFound(String),
    #[error("refused: the picture is not under this instance's configured folders (an outcome of another instance on the shared state is served only where its folders are mounted at the same paths here)")]
    Outside,
    #[error("cannot read the picture: {0}")]
    Unreadable(String),
    #[error("no thumbnail: {0}")]
    Thumbnail(String),
    #[error("the outcome index could not be read; see the daemon's log")]
    Index,
}

impl PageError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            PageError::BadDate { .. } => "bad-date",
            PageError::BadNumber { .. } => "bad-number",
            PageError::BadPicture => "bad-picture-name",
            PageError::NotFound(_) => "not-found",
            PageError::Outside => "outside-folders",
            PageError::Unreadable(_) => "unreadable",
            PageError::Thumbnail(_) => "no-thumbnail",
            PageError::Index => "index-unreadable",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            PageError::BadDate { .. } | PageError::BadNumber { .. } | PageError::BadPicture => {
                StatusCode::BAD_REQUEST
            }
            PageError::NotFound(_) | PageError::Unreadable(_) => StatusCode::NOT_FOUND,
            PageError::Outside => StatusCode::FORBIDDEN,
            PageError::Thumbnail(_) => StatusCode::UNPROCESSABLE_ENTITY,
            PageError::Index => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The index could not be read (logged here, not shown).
    pub fn index(e: impl std::fmt::Display) -> PageError {
        tracing::warn!("review page: {e}");
        PageError::Index
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let page = pages::message(self.code(), &self.to_string()).into_string();
        (self.status(), [("x-cutout-error", self.code())], Html(page)).into_response()
    }
}
