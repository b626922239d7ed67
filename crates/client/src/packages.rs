//! The built-in feed: pushing a package file (multipart, the file streamed from disk with a
//! progress callback, never read into memory) and listing packages.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;

use crate::url::segment;
use crate::{ApiKey, Client, ClientError};

/// How long one upload may take in all (the usual request timeout is far too short for a large
/// package on a slow link).
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// What a push does when the package already exists (`overwriteMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverwriteMode {
    FailIfExists,
    OverwriteExisting,
    IgnoreIfExists,
}

impl OverwriteMode {
    pub fn as_str(self) -> &'static str {
        match self {
            OverwriteMode::FailIfExists => "FailIfExists",
            OverwriteMode::OverwriteExisting => "OverwriteExisting",
            OverwriteMode::IgnoreIfExists => "IgnoreIfExists",
        }
    }
}

/// What the server did with a pushed file.
#[derive(Clone, Debug, PartialEq)]
pub enum Pushed {
    /// 201: the file was stored (new, or replacing the one there).
    Stored(Value),
    /// 200: the package existed and was kept (`IgnoreIfExists`).
    Ignored(Value),
}

impl Pushed {
    pub fn package(&self) -> &Value {
        match self {
            Pushed::Stored(v) | Pushed::Ignored(v) => v,
        }
    }
}

/// Called with (bytes sent, file size) as the upload proceeds.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

impl Client {
    /// `POST /api/{space}/packages/raw?overwriteMode=…` with the file as the multipart part
    /// `fileToUpload`, streamed from disk. The file's name must be `PackageId.Version.ext`.
    pub async fn push_package(
        &self,
        space_id: &str,
        path: &Path,
        mode: OverwriteMode,
        progress: Option<Progress>,
    ) -> Result<Pushed, ClientError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let file = tokio::fs::File::open(path).await.map_err(|error| {
            ClientError::Transport(format!("cannot read {}: {error}", path.display()))
        })?;
        let size = file
            .metadata()
            .await
            .map_err(|error| {
                ClientError::Transport(format!("cannot read {}: {error}", path.display()))
            })?
            .len();
        let mut sent = 0u64;
        let stream =
            tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024).map(move |chunk| {
                if let (Ok(c), Some(p)) = (&chunk, &progress) {
                    sent += c.len() as u64;
                    p(sent, size);
                }
                chunk
            });
        let part =
            reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), size)
                .file_name(name)
                .mime_str("application/octet-stream")
                .map_err(|error| {
                    ClientError::Transport(format!("cannot build the upload: {error}"))
                })?;
        let form = reqwest::multipart::Form::new().part("fileToUpload", part);
        let path_and_query = format!(
            "/api/{}/packages/raw?overwriteMode={}",
            segment(space_id),
            mode.as_str()
        );
        let mut request = self
            .http
            .post(crate::url::join(&self.base, &path_and_query))
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(UPLOAD_TIMEOUT)
            .multipart(form);
        if let Some(ApiKey(key)) = &self.api_key {
            request = request.header("X-Octopus-ApiKey", key);
        }
        let response = request
            .send()
            .await
            .map_err(|error| self.transport_error(&error))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|error| self.transport_error(&error))?;
        if !status.is_success() {
            return Err(ClientError::from_error_body(
                status.as_u16(),
                status.canonical_reason(),
                &text,
            ));
        }
        let body: Value = serde_json::from_str(&text).map_err(|error| {
            ClientError::Decode(format!(
                "the answer to the upload of {} is not JSON: {error}",
                path.display()
            ))
        })?;
        Ok(if status == StatusCode::CREATED {
            Pushed::Stored(body)
        } else {
            Pushed::Ignored(body)
        })
    }

    /// `GET /api/{space}/packages?filter=…&latest=…`: every matching package, by id then
    /// version descending.
    pub async fn packages(
        &self,
        space_id: &str,
        filter: Option<&str>,
        latest: bool,
    ) -> Result<Vec<Value>, ClientError> {
        let mut path = format!("/api/{}/packages?skip=0&take=2147483647", segment(space_id));
        if let Some(f) = filter.filter(|f| !f.is_empty()) {
            path.push_str(&format!("&filter={}", segment(f)));
        }
        if latest {
            path.push_str("&latest=true");
        }
        match self.get_json(&path).await? {
            Value::Object(mut page) => match page.remove("Items") {
                Some(Value::Array(items)) => Ok(items),
                _ => Err(ClientError::Decode(format!(
                    "the answer to GET {path} has no Items list"
                ))),
            },
            other => Err(ClientError::Decode(format!(
                "expected a page of packages from GET {path} but the server sent {}",
                crate::model::json_kind(&other)
            ))),
        }
    }
}
