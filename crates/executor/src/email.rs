//! The email step (`Octopus.Email`) and a small SMTP client for it.
//!
//! The server's SMTP settings are one system document (`Configuration` / `smtp-configuration`,
//! written by `PUT /api/smtpconfiguration`); the password is sealed with the master key. The
//! client speaks plain SMTP (RFC 5321) with `EHLO`, optional `STARTTLS` (when `EnableSsl`,
//! verified against the system's CA bundle), optional `AUTH PLAIN`, then one message: UTF-8,
//! base64 body, `text/plain` or `text/html`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The id of the SMTP settings document.
pub const SMTP_DOC_ID: &str = "smtp-configuration";
/// The collection of system settings documents.
pub const CONFIG_COLLECTION: &str = "Configuration";

/// The stored SMTP settings (Octopus's `SmtpConfigurationResource`, password sealed).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct SmtpSettings {
    pub smtp_host: String,
    pub smtp_port: u16,
    pub send_email_from: String,
    pub smtp_login: String,
    /// The sealed password (never returned by the API).
    pub sealed_password: Option<String>,
    pub enable_ssl: bool,
    /// Milliseconds for the whole conversation (Octopus's `Timeout`; 0 means 60 s).
    pub timeout: u64,
}

impl SmtpSettings {
    pub fn is_configured(&self) -> bool {
        !self.smtp_host.trim().is_empty() && !self.send_email_from.trim().is_empty()
    }
}

/// The associated data sealing the SMTP password.
pub fn password_aad() -> Vec<u8> {
    b"ferry:smtp-configuration:password".to_vec()
}

/// One message.
#[derive(Clone, Debug, Default)]
pub struct Message {
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub subject: String,
    pub body: String,
    pub is_html: bool,
}

/// Splits an address list on `,` and `;`, trimming and dropping empties.
pub fn addresses(list: &str) -> Vec<String> {
    list.split([',', ';'])
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether an address is plausible and safe to put in an SMTP command (no spaces, angle
/// brackets or line breaks; one `@` with text on both sides).
pub fn valid_address(a: &str) -> bool {
    let a = a.trim();
    !a.is_empty()
        && a.len() <= 254
        && !a
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
        && a.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

struct Conn {
    io: BufReader<Box<dyn Stream>>,
}

impl Conn {
    /// Reads one (possibly multi-line) reply: its code and text.
    async fn reply(&mut self) -> Result<(u16, String), String> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = self
                .io
                .read_line(&mut line)
                .await
                .map_err(|e| format!("reading from the SMTP server failed: {e}"))?;
            if n == 0 {
                return Err("the SMTP server closed the connection".to_string());
            }
            if line.len() < 4 {
                return Err(format!("the SMTP server sent a malformed reply: {line:?}"));
            }
            let code: u16 = line[..3]
                .parse()
                .map_err(|_| format!("the SMTP server sent a malformed reply: {line:?}"))?;
            text.push_str(line[4..].trim_end());
            text.push('\n');
            if line.as_bytes()[3] != b'-' {
                return Ok((code, text.trim_end().to_string()));
            }
        }
    }

    async fn send(&mut self, line: &str) -> Result<(), String> {
        let w = self.io.get_mut();
        w.write_all(line.as_bytes())
            .await
            .and(w.write_all(b"\r\n").await)
            .and(w.flush().await)
            .map_err(|e| format!("writing to the SMTP server failed: {e}"))
    }

    /// Sends a command and expects a reply code in `ok`.
    async fn command(&mut self, line: &str, ok: &[u16], what: &str) -> Result<String, String> {
        self.send(line).await?;
        let (code, text) = self.reply().await?;
        if ok.contains(&code) {
            Ok(text)
        } else {
            Err(format!("the SMTP server refused {what}: {code} {text}"))
        }
    }
}

fn tls_config() -> Result<Arc<tokio_rustls::rustls::ClientConfig>, String> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for path in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ] {
        if let Ok(iter) = CertificateDer::pem_file_iter(path) {
            for c in iter.flatten() {
                let _ = roots.add(c);
            }
        }
    }
    if roots.is_empty() {
        return Err("EnableSsl needs the system's CA certificates (/etc/ssl/certs/ca-certificates.crt), which were not found".to_string());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

fn header_text(s: &str) -> String {
    // Encoded-word for anything beyond printable ASCII (RFC 2047); line breaks never pass.
    let clean: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    if clean.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
        clean
    } else {
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(clean.as_bytes())
        )
    }
}

/// The message as sent after `DATA` (headers, base64 body, CRLF line ends).
pub fn render(from: &str, m: &Message, now: chrono::DateTime<chrono::Utc>) -> String {
    let mut out = String::new();
    out.push_str(&format!("From: {from}\r\n"));
    if !m.to.is_empty() {
        out.push_str(&format!("To: {}\r\n", m.to.join(", ")));
    }
    if !m.cc.is_empty() {
        out.push_str(&format!("Cc: {}\r\n", m.cc.join(", ")));
    }
    out.push_str(&format!("Subject: {}\r\n", header_text(&m.subject)));
    out.push_str(&format!("Date: {}\r\n", now.to_rfc2822()));
    out.push_str(&format!(
        "Message-ID: <{}@ferry>\r\n",
        uuid::Uuid::new_v4().simple()
    ));
    out.push_str("MIME-Version: 1.0\r\n");
    out.push_str(&format!(
        "Content-Type: text/{}; charset=utf-8\r\n",
        if m.is_html { "html" } else { "plain" }
    ));
    out.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
    let b64 = base64::engine::general_purpose::STANDARD.encode(m.body.as_bytes());
    for chunk in b64.as_bytes().chunks(76) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push_str("\r\n");
    }
    out
}

/// Sends one message. `password` is the opened SMTP password, if any.
pub async fn send(s: &SmtpSettings, password: Option<&str>, m: &Message) -> Result<(), String> {
    let timeout = Duration::from_millis(if s.timeout == 0 { 60_000 } else { s.timeout });
    tokio::time::timeout(timeout, send_inner(s, password, m))
        .await
        .map_err(|_| {
            format!(
                "the SMTP server {}:{} did not finish within {} ms",
                s.smtp_host,
                s.smtp_port,
                timeout.as_millis()
            )
        })?
}

async fn send_inner(s: &SmtpSettings, password: Option<&str>, m: &Message) -> Result<(), String> {
    let port = if s.smtp_port == 0 { 25 } else { s.smtp_port };
    let tcp = TcpStream::connect((s.smtp_host.trim(), port))
        .await
        .map_err(|e| {
            format!(
                "could not connect to the SMTP server {}:{port}: {e}",
                s.smtp_host
            )
        })?;
    let mut c = Conn {
        io: BufReader::new(Box::new(tcp) as Box<dyn Stream>),
    };
    let (code, text) = c.reply().await?;
    if code != 220 {
        return Err(format!("the SMTP server did not greet: {code} {text}"));
    }
    let mut caps = c.command("EHLO ferry", &[250], "EHLO").await?;
    if s.enable_ssl {
        if !caps
            .lines()
            .any(|l| l.trim().eq_ignore_ascii_case("STARTTLS"))
        {
            return Err("EnableSsl is set but the SMTP server does not offer STARTTLS".to_string());
        }
        c.command("STARTTLS", &[220], "STARTTLS").await?;
        let name =
            tokio_rustls::rustls::pki_types::ServerName::try_from(s.smtp_host.trim().to_string())
                .map_err(|e| format!("'{}' is not a host name for TLS: {e}", s.smtp_host))?;
        let plain = c.io.into_inner();
        let tls = tokio_rustls::TlsConnector::from(tls_config()?)
            .connect(name, plain)
            .await
            .map_err(|e| format!("the TLS handshake with the SMTP server failed: {e}"))?;
        c = Conn {
            io: BufReader::new(Box::new(tls) as Box<dyn Stream>),
        };
        caps = c.command("EHLO ferry", &[250], "EHLO").await?;
    }
    if !s.smtp_login.trim().is_empty() {
        if !caps.lines().any(|l| {
            let l = l.to_ascii_uppercase();
            l.starts_with("AUTH") && l.contains("PLAIN")
        }) {
            return Err(
                "a login is configured but the SMTP server does not offer AUTH PLAIN".to_string(),
            );
        }
        let token = base64::engine::general_purpose::STANDARD.encode(
            format!(
                "\0{}\0{}",
                s.smtp_login.trim(),
                password.unwrap_or_default()
            )
            .as_bytes(),
        );
        c.command(&format!("AUTH PLAIN {token}"), &[235], "the login")
            .await?;
    }
    let from = s.send_email_from.trim();
    c.command(&format!("MAIL FROM:<{from}>"), &[250], "the sender")
        .await?;
    for rcpt in m.to.iter().chain(m.cc.iter()).chain(m.bcc.iter()) {
        c.command(
            &format!("RCPT TO:<{}>", rcpt.trim()),
            &[250, 251],
            &format!("the recipient {rcpt}"),
        )
        .await?;
    }
    c.command("DATA", &[354], "DATA").await?;
    let body = render(from, m, chrono::Utc::now());
    // Base64 lines never start with '.', so no dot-stuffing is needed; headers are checked.
    c.send(body.trim_end_matches("\r\n")).await?;
    c.command(".", &[250], "the message").await?;
    let _ = c.command("QUIT", &[221], "QUIT").await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lists_and_validation() {
        assert_eq!(
            addresses(" a@x.io; b@y.io,, "),
            vec!["a@x.io".to_string(), "b@y.io".to_string()]
        );
        assert!(valid_address("ops@example.com"));
        assert!(!valid_address("ops@example.com>\r\nRCPT TO:<evil@x"));
        assert!(!valid_address("no-at-sign"));
        assert!(!valid_address("a@b@c"));
    }

    #[test]
    fn messages_are_base64_with_encoded_subjects() {
        let m = Message {
            to: vec!["a@x.io".into()],
            subject: "Déployé\r\nBcc: evil@x".into(),
            body: ".leading dot\nsecond".into(),
            ..Message::default()
        };
        let text = render("ferry@x.io", &m, chrono::Utc::now());
        assert!(text.contains("Subject: =?UTF-8?B?"), "{text}");
        assert!(!text.contains("\r\nBcc:"), "{text}");
        assert!(text.contains("Content-Transfer-Encoding: base64"));
        let body = text
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .replace("\r\n", "");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap_or_default();
        assert_eq!(String::from_utf8_lossy(&decoded), ".leading dot\nsecond");
    }
}
