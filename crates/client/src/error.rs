//! The one error type of the client: what went wrong talking to a Ferry (or Octopus) server.

use serde_json::Value;

/// Why a request did not produce the expected result.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server URL given to [`crate::Client::new`] cannot be used.
    #[error("invalid server URL '{url}': {reason}")]
    InvalidUrl { url: String, reason: String },

    /// The server answered with a 4xx or 5xx status. `message` and `errors` are the
    /// `ErrorMessage` and `Errors` of the Octopus-shaped error body, exactly as sent.
    #[error("{}", api_error_text(.message, .errors))]
    Api {
        status: u16,
        message: String,
        errors: Vec<String>,
    },

    /// The server could not be reached: refused connection, DNS failure, timeout, reset.
    #[error("{0}")]
    Transport(String),

    /// The server answered 2xx but the body was not what the client expected.
    #[error("{0}")]
    Decode(String),

    /// A name given by the user matched nothing on the server (resolved client-side,
    /// e.g. a space, project group or lifecycle name).
    #[error("{0}")]
    NotFound(String),
}

fn api_error_text(message: &str, errors: &[String]) -> String {
    let mut text = message.to_owned();
    for error in errors {
        text.push('\n');
        text.push_str(error);
    }
    text
}

impl ClientError {
    /// Builds an [`ClientError::Api`] from a non-success response's status and body.
    ///
    /// Octopus error bodies are `{"ErrorMessage": "…", "Errors": ["…"]}`. A body that is not
    /// JSON, or has neither field, still yields a readable message naming the status.
    pub fn from_error_body(status: u16, reason: Option<&str>, body: &str) -> ClientError {
        let parsed: Option<Value> = serde_json::from_str(body).ok();
        let field = |name: &str| -> Option<&Value> {
            let object = parsed.as_ref()?.as_object()?;
            object
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value)
        };
        let message = field("ErrorMessage")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let errors: Vec<String> = field("Errors")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .map(|item| match item {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let message = match message {
            Some(message) => message,
            None => {
                let status_text = match reason {
                    Some(reason) => format!("the server answered {status} {reason}"),
                    None => format!("the server answered {status}"),
                };
                let trimmed = body.trim();
                if trimmed.is_empty() || parsed.is_some() {
                    status_text
                } else {
                    format!("{status_text}: {}", truncate(trimmed, 500))
                }
            }
        };
        ClientError::Api {
            status,
            message,
            errors,
        }
    }

    /// The HTTP status of an API error, if this is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_parts(error: ClientError) -> (u16, String, Vec<String>) {
        match error {
            ClientError::Api {
                status,
                message,
                errors,
            } => (status, message, errors),
            other => (0, format!("not an API error: {other:?}"), Vec::new()),
        }
    }

    #[test]
    fn octopus_error_body_is_kept_verbatim() {
        let body = r#"{"ErrorMessage":"There was a problem with your request.","Errors":["Project 'Foo' could not be found.","Second"],"FullException":null}"#;
        let (status, message, errors) =
            api_parts(ClientError::from_error_body(400, Some("Bad Request"), body));
        assert_eq!(status, 400);
        assert_eq!(message, "There was a problem with your request.");
        assert_eq!(errors, vec!["Project 'Foo' could not be found.", "Second"]);
    }

    #[test]
    fn display_joins_message_and_errors_by_line() {
        let error = ClientError::from_error_body(
            400,
            None,
            r#"{"ErrorMessage":"Bad","Errors":["one","two"]}"#,
        );
        assert_eq!(error.to_string(), "Bad\none\ntwo");
    }

    #[test]
    fn null_or_missing_errors_mean_none() {
        let (_, message, errors) = api_parts(ClientError::from_error_body(
            404,
            None,
            r#"{"ErrorMessage":"Not found","Errors":null}"#,
        ));
        assert_eq!(message, "Not found");
        assert!(errors.is_empty());
        let (_, _, errors) = api_parts(ClientError::from_error_body(
            404,
            None,
            r#"{"ErrorMessage":"Not found"}"#,
        ));
        assert!(errors.is_empty());
    }

    #[test]
    fn keys_are_matched_case_insensitively() {
        let (_, message, errors) = api_parts(ClientError::from_error_body(
            400,
            None,
            r#"{"errorMessage":"camel","errors":["x"]}"#,
        ));
        assert_eq!(message, "camel");
        assert_eq!(errors, vec!["x"]);
    }

    #[test]
    fn non_json_body_names_the_status_and_shows_the_text() {
        let (status, message, errors) = api_parts(ClientError::from_error_body(
            502,
            Some("Bad Gateway"),
            "upstream down\n",
        ));
        assert_eq!(status, 502);
        assert_eq!(
            message,
            "the server answered 502 Bad Gateway: upstream down"
        );
        assert!(errors.is_empty());
    }

    #[test]
    fn empty_body_names_the_status() {
        let (_, message, _) =
            api_parts(ClientError::from_error_body(401, Some("Unauthorized"), ""));
        assert_eq!(message, "the server answered 401 Unauthorized");
    }

    #[test]
    fn errors_without_message_keep_the_errors() {
        let (_, message, errors) = api_parts(ClientError::from_error_body(
            400,
            None,
            r#"{"Errors":["only"]}"#,
        ));
        assert_eq!(message, "the server answered 400");
        assert_eq!(errors, vec!["only"]);
    }

    #[test]
    fn long_text_bodies_are_truncated() {
        let body = "x".repeat(2000);
        let (_, message, _) = api_parts(ClientError::from_error_body(500, None, &body));
        assert!(message.chars().count() < 600, "{message}");
        assert!(message.ends_with('…'));
    }
}
