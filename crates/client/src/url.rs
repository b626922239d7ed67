//! Building request URLs: normalising the server's base URL and encoding names that are put
//! into path segments (`/api/Spaces-1/projects/Hello%20World`).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::ClientError;

/// Everything but RFC 3986 "unreserved" characters is encoded, so a name can never add a
/// segment (`/`), start a query (`?`) or a fragment (`#`).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes one path segment, e.g. a project name used in the id slot.
pub fn segment(value: &str) -> String {
    utf8_percent_encode(value, SEGMENT).to_string()
}

/// Normalises a user-supplied server URL to `scheme://host[:port][/prefix]` with no trailing
/// slash. A trailing `/api` is dropped so that both `http://host` and `http://host/api` work,
/// as they do for the official Octopus clients.
pub fn normalize_base(raw: &str) -> Result<String, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidUrl {
        url: raw.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = raw.trim();
    let parsed = reqwest::Url::parse(trimmed).map_err(|error| invalid(&error.to_string()))?;
    match parsed.scheme() {
        "http" | "https" => {}
        other => {
            return Err(invalid(&format!(
                "the scheme must be http or https, not {other}"
            )));
        }
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("it must not have a query or fragment"));
    }
    let mut path = parsed.path().trim_end_matches('/').to_owned();
    if path.eq_ignore_ascii_case("/api") || path.to_ascii_lowercase().ends_with("/api") {
        path.truncate(path.len() - "/api".len());
    }
    let mut base = format!(
        "{}://{}",
        parsed.scheme(),
        parsed.host_str().unwrap_or_default()
    );
    if let Some(port) = parsed.port() {
        base.push_str(&format!(":{port}"));
    }
    base.push_str(&path);
    Ok(base)
}

/// Joins a normalised base with an absolute API path such as `/api/spaces/all`.
pub fn join(base: &str, path: &str) -> String {
    if path.starts_with('/') {
        format!("{base}{path}")
    } else {
        format!("{base}/{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_encoding_keeps_ids_and_escapes_names() {
        let cases = [
            ("Spaces-1", "Spaces-1"),
            ("hello_world.v2~x", "hello_world.v2~x"),
            ("Hello World", "Hello%20World"),
            ("a/b", "a%2Fb"),
            ("what?#", "what%3F%23"),
            ("100%", "100%25"),
            ("a+b&c=d", "a%2Bb%26c%3Dd"),
            ("Développement", "D%C3%A9veloppement"),
        ];
        for (input, expected) in cases {
            assert_eq!(segment(input), expected, "segment({input:?})");
        }
    }

    #[test]
    fn base_urls_are_normalised() {
        let cases = [
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
            ("http://localhost:8080/api", "http://localhost:8080"),
            ("http://localhost:8080/api/", "http://localhost:8080"),
            (
                "https://deploy.example.com/octopus",
                "https://deploy.example.com/octopus",
            ),
            (
                "https://deploy.example.com/octopus/API",
                "https://deploy.example.com/octopus",
            ),
            ("  http://h  ", "http://h"),
            ("http://h:80", "http://h"),
        ];
        for (input, expected) in cases {
            match normalize_base(input) {
                Ok(base) => assert_eq!(base, expected, "normalize_base({input:?})"),
                Err(error) => assert_eq!(error.to_string(), expected, "normalize_base({input:?})"),
            }
        }
    }

    #[test]
    fn unusable_base_urls_are_refused_with_a_reason() {
        for input in [
            "127.0.0.1:8080",
            "ftp://h",
            "http://h/?x=1",
            "not a url",
            "",
        ] {
            let result = normalize_base(input);
            assert!(
                matches!(result, Err(ClientError::InvalidUrl { .. })),
                "{input:?} gave {result:?}"
            );
        }
    }

    #[test]
    fn join_puts_the_path_after_the_base() {
        assert_eq!(
            join("http://h:1", "/api/spaces/all"),
            "http://h:1/api/spaces/all"
        );
        assert_eq!(join("http://h/octopus", "/api"), "http://h/octopus/api");
        assert_eq!(join("http://h", "api/x"), "http://h/api/x");
    }
}
