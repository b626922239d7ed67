//! Octopus service messages: how a script talks to the server through its output.
//!
//! A message is `##octopus[name attr='base64' attr2='base64' …]` anywhere in an output line (as
//! Calamari's `ServiceMessageParser` finds them; one line may hold several). Attribute values are
//! the base64 of UTF-8 text, quoted with `'` or `"`; attribute names are case-insensitive. The
//! messages Ferry understands:
//!
//! - `setVariable name= value= [sensitive=]`: an output variable (`set_octopusvariable`);
//! - `createArtifact path= name= length=`: a file to collect (`new_octopusartifact`);
//! - `resultMessage message=`: the failure text (`fail_step`, which then exits non-zero);
//! - `progress percentage= message=` (`update_progress`);
//! - `mask value=`: one more value to mask in the log;
//! - `stdout-default|verbose|warning|highlight|wait|error|ignore` and
//!   `stderr-default|error|progress|ignore`: the level of the following lines of that stream,
//!   until the next switch (`write_verbose` etc. are a switch, the text, `stdout-default`).
//!
//! Any other well-formed name is [`ServiceMessage::Other`]. A message that cannot be read
//! (missing name, bad syntax, invalid base64, no `name` on `setVariable`, …) is a
//! [`BadMessage`]; nothing here panics on any input.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ferry_domain::task::LogCategory;

use crate::target::Stream;

/// The marker that starts a message.
pub const PREFIX: &str = "##octopus[";

/// A service message that was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceMessage {
    /// `setVariable`: an output variable. A missing value is the empty string (Calamari's Bash
    /// helper leaves `value` out when it is empty).
    SetVariable {
        name: String,
        value: String,
        sensitive: bool,
    },
    /// `createArtifact`. `name` defaults to the file name of `path`; `length` is the size the
    /// script reported, if it is a number.
    CreateArtifact {
        path: String,
        name: String,
        length: Option<u64>,
    },
    /// `resultMessage` (what `fail_step "…"` / `failstep("…")` print before exiting non-zero):
    /// the text to show instead of "the script returned exit code N". The step fails because of
    /// the exit code, not because of this message.
    StepFailed {
        message: String,
    },
    /// `progress`: percentage (0–100) when it is a number.
    Progress {
        percentage: Option<u8>,
        message: String,
    },
    /// `mask`: a value to mask from now on (Calamari emits it for its own key).
    Mask {
        value: String,
    },
    StdoutDefault,
    StdoutVerbose,
    StdoutWarning,
    StdoutHighlight,
    StdoutWait,
    StdoutError,
    StdoutIgnore,
    StderrDefault,
    StderrError,
    StderrProgress,
    StderrIgnore,
    /// A well-formed message Ferry does not act on (e.g. `delete-target`,
    /// `createStepPackageTarget`): its name.
    Other(String),
}

/// A message that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadMessage {
    /// The message name, when one could be read.
    pub name: Option<String>,
    pub reason: String,
}

impl std::fmt::Display for BadMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(n) => write!(
                f,
                "the service message '{n}' could not be read: {}",
                self.reason
            ),
            None => write!(f, "a service message could not be read: {}", self.reason),
        }
    }
}

/// A piece of an output line: plain text, or a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment<'a> {
    Text(&'a str),
    Message(Result<ServiceMessage, BadMessage>),
}

/// Splits a line into text and messages, in order. A `##octopus[` without a closing `]` on the
/// same line is text (Calamari would swallow the following lines until a `]`).
pub fn split_line(line: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find(PREFIX) {
        let body_start = start + PREFIX.len();
        let Some(len) = rest[body_start..].find(']') else {
            break;
        };
        if start > 0 {
            out.push(Segment::Text(&rest[..start]));
        }
        out.push(Segment::Message(parse(&rest[body_start..body_start + len])));
        rest = &rest[body_start + len + 1..];
    }
    if !rest.is_empty() || out.is_empty() {
        out.push(Segment::Text(rest));
    }
    out
}

/// Parses the inside of a message: the text between `##octopus[` and `]`.
pub fn parse(body: &str) -> Result<ServiceMessage, BadMessage> {
    let body = body.trim();
    let name_len = body.find(|c: char| !is_name_char(c)).unwrap_or(body.len());
    let name = &body[..name_len];
    if name.is_empty() {
        return Err(BadMessage {
            name: None,
            reason: "the message has no name".to_string(),
        });
    }
    let bad = |reason: String| BadMessage {
        name: Some(name.to_string()),
        reason,
    };
    let rest = &body[name_len..];
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return Err(bad(
            "the message name is followed by an unexpected character".into(),
        ));
    }
    let raw = attributes(rest).map_err(bad)?;
    let lower = name.to_ascii_lowercase();
    let switch = match lower.as_str() {
        "stdout-default" => Some(ServiceMessage::StdoutDefault),
        "stdout-verbose" => Some(ServiceMessage::StdoutVerbose),
        "stdout-warning" => Some(ServiceMessage::StdoutWarning),
        "stdout-highlight" => Some(ServiceMessage::StdoutHighlight),
        "stdout-wait" => Some(ServiceMessage::StdoutWait),
        "stdout-error" => Some(ServiceMessage::StdoutError),
        "stdout-ignore" => Some(ServiceMessage::StdoutIgnore),
        "stderr-default" => Some(ServiceMessage::StderrDefault),
        "stderr-error" => Some(ServiceMessage::StderrError),
        "stderr-progress" => Some(ServiceMessage::StderrProgress),
        "stderr-ignore" => Some(ServiceMessage::StderrIgnore),
        _ => None,
    };
    if let Some(s) = switch {
        return Ok(s);
    }
    if !matches!(
        lower.as_str(),
        "setvariable" | "createartifact" | "resultmessage" | "progress" | "mask"
    ) {
        return Ok(ServiceMessage::Other(name.to_string()));
    }
    // As Calamari: every attribute of a message it reads must be valid base64.
    let mut attrs: Vec<(String, String)> = Vec::with_capacity(raw.len());
    for (k, v) in raw {
        let decoded = decode_value(v)
            .ok_or_else(|| bad(format!("the attribute '{k}' is not valid base64")))?;
        attrs.push((k, decoded));
    }
    let get = |key: &str| {
        attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    Ok(match lower.as_str() {
        "setvariable" => {
            let name = get("name").unwrap_or("");
            if name.trim().is_empty() {
                return Err(bad("the variable has no name".into()));
            }
            ServiceMessage::SetVariable {
                name: name.to_string(),
                value: get("value").unwrap_or("").to_string(),
                sensitive: get("sensitive").is_some_and(|s| s.trim().eq_ignore_ascii_case("true")),
            }
        }
        "createartifact" => {
            let path = get("path").unwrap_or("");
            if path.trim().is_empty() {
                return Err(bad("the artifact has no path".into()));
            }
            let name = match get("name") {
                Some(n) if !n.trim().is_empty() => n.to_string(),
                _ => path
                    .rsplit(['/', '\\'])
                    .find(|s| !s.is_empty())
                    .unwrap_or(path)
                    .to_string(),
            };
            ServiceMessage::CreateArtifact {
                path: path.to_string(),
                name,
                length: get("length").and_then(|l| l.trim().parse().ok()),
            }
        }
        "resultmessage" => ServiceMessage::StepFailed {
            message: get("message").unwrap_or("").to_string(),
        },
        "progress" => ServiceMessage::Progress {
            percentage: get("percentage")
                .and_then(|p| p.trim().parse::<i64>().ok())
                .map(|p| u8::try_from(p.clamp(0, 100)).unwrap_or(100)),
            message: get("message").unwrap_or("").to_string(),
        },
        _ => match get("value") {
            Some(v) => ServiceMessage::Mask {
                value: v.to_string(),
            },
            None => return Err(bad("the mask message has no value".into())),
        },
    })
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')
}

/// `key='v' key2="v"` … → (lower-cased key, raw value). Whitespace is allowed around `=`.
fn attributes(mut s: &str) -> Result<Vec<(String, &str)>, String> {
    let mut out: Vec<(String, &str)> = Vec::new();
    loop {
        s = s.trim_start();
        if s.is_empty() {
            return Ok(out);
        }
        let key_len = s.find(|c: char| !is_name_char(c)).unwrap_or(s.len());
        if key_len == 0 {
            return Err("an attribute has no name".to_string());
        }
        let key = s[..key_len].to_ascii_lowercase();
        s = s[key_len..].trim_start();
        let Some(after_eq) = s.strip_prefix('=') else {
            return Err(format!("the attribute '{key}' has no value"));
        };
        s = after_eq.trim_start();
        let Some(quote) = s.chars().next().filter(|c| *c == '\'' || *c == '"') else {
            return Err(format!("the value of the attribute '{key}' is not quoted"));
        };
        s = &s[1..];
        let Some(end) = s.find(quote) else {
            return Err(format!("the value of the attribute '{key}' is not closed"));
        };
        if out.iter().any(|(k, _)| *k == key) {
            return Err(format!("the attribute '{key}' appears twice"));
        }
        out.push((key, &s[..end]));
        s = &s[end + 1..];
        if !s.is_empty() && !s.starts_with(char::is_whitespace) {
            return Err("attributes must be separated by spaces".to_string());
        }
    }
}

const LENIENT_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes an attribute value: base64 (whitespace ignored, padding optional) of UTF-8 (invalid
/// sequences become U+FFFD, as .NET's decoder does).
pub fn decode_value(v: &str) -> Option<String> {
    let compact: String = v.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = LENIENT_B64.decode(compact.as_bytes()).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Encodes an attribute value (base64 of the UTF-8 text, padded).
pub fn encode_value(v: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(v.as_bytes())
}

/// What one line of script output amounts to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputEvent {
    /// Text for the task log (to be masked by the logger).
    Log { category: LogCategory, text: String },
    /// A message to act on. Mode switches are applied by the interpreter and also reported.
    Message(ServiceMessage),
    /// A message that could not be read (its text is not logged: it may carry a value).
    Malformed(BadMessage),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Log(LogCategory),
    Ignore,
}

/// Turns raw output lines into log lines and service messages, applying the `stdout-*` and
/// `stderr-*` level switches (each stream has its own; both are read from either stream).
/// Standard output defaults to Info, standard error to Error.
#[derive(Clone, Debug)]
pub struct OutputInterpreter {
    stdout: Mode,
    stderr: Mode,
}

impl Default for OutputInterpreter {
    fn default() -> Self {
        OutputInterpreter::new()
    }
}

impl OutputInterpreter {
    pub fn new() -> Self {
        OutputInterpreter {
            stdout: Mode::Log(LogCategory::Info),
            stderr: Mode::Log(LogCategory::Error),
        }
    }

    /// The level of the next plain line of `stream` (`None`: ignored).
    pub fn category(&self, stream: Stream) -> Option<LogCategory> {
        match self.mode(stream) {
            Mode::Log(c) => Some(c),
            Mode::Ignore => None,
        }
    }

    fn mode(&self, stream: Stream) -> Mode {
        match stream {
            Stream::Stdout => self.stdout,
            Stream::Stderr => self.stderr,
        }
    }

    /// Reads one line (without its line ending). A line without messages is logged as is (blank
    /// lines included); around messages, only text that is not blank is logged.
    pub fn line(&mut self, stream: Stream, text: &str) -> Vec<OutputEvent> {
        let segments = split_line(text);
        let only_text = segments.len() == 1 && matches!(segments[0], Segment::Text(_));
        let mut out = Vec::new();
        for seg in segments {
            match seg {
                Segment::Text(t) => {
                    if !only_text && t.trim().is_empty() {
                        continue;
                    }
                    if let Mode::Log(category) = self.mode(stream) {
                        out.push(OutputEvent::Log {
                            category,
                            text: t.to_string(),
                        });
                    }
                }
                Segment::Message(Ok(m)) => {
                    self.apply(&m);
                    out.push(OutputEvent::Message(m));
                }
                Segment::Message(Err(b)) => out.push(OutputEvent::Malformed(b)),
            }
        }
        out
    }

    fn apply(&mut self, m: &ServiceMessage) {
        use ServiceMessage as M;
        match m {
            M::StdoutDefault => self.stdout = Mode::Log(LogCategory::Info),
            M::StdoutVerbose => self.stdout = Mode::Log(LogCategory::Verbose),
            M::StdoutWarning => self.stdout = Mode::Log(LogCategory::Warning),
            M::StdoutHighlight => self.stdout = Mode::Log(LogCategory::Highlight),
            M::StdoutWait => self.stdout = Mode::Log(LogCategory::Wait),
            M::StdoutError => self.stdout = Mode::Log(LogCategory::Error),
            M::StdoutIgnore => self.stdout = Mode::Ignore,
            M::StderrDefault | M::StderrError => self.stderr = Mode::Log(LogCategory::Error),
            M::StderrProgress => self.stderr = Mode::Log(LogCategory::Verbose),
            M::StderrIgnore => self.stderr = Mode::Ignore,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    fn b(s: &str) -> String {
        encode_value(s)
    }

    #[test]
    fn parses_set_variable() {
        let line = format!(
            "##octopus[setVariable name='{}' value='{}' sensitive='{}']",
            b("Out"),
            b("a 'b' \"c\"\n"),
            b("True")
        );
        assert_eq!(
            split_line(&line),
            vec![Segment::Message(Ok(ServiceMessage::SetVariable {
                name: "Out".into(),
                value: "a 'b' \"c\"\n".into(),
                sensitive: true
            }))]
        );
        // Double quotes, spaces around '=', attribute case, missing value, no padding.
        let line = format!("  ##octopus[ setVariable  NAME = \"{}\" ]  ", "T3V0");
        assert_eq!(
            split_line(&line)
                .into_iter()
                .filter(|s| matches!(s, Segment::Message(_)))
                .collect::<Vec<_>>(),
            vec![Segment::Message(Ok(ServiceMessage::SetVariable {
                name: "Out".into(),
                value: String::new(),
                sensitive: false
            }))]
        );
        let sensitive_false = format!(
            "##octopus[setVariable name='{}' value='{}' sensitive='{}']",
            b("a"),
            b("b"),
            b("False")
        );
        assert!(matches!(
            &split_line(&sensitive_false)[0],
            Segment::Message(Ok(ServiceMessage::SetVariable {
                sensitive: false,
                ..
            }))
        ));
    }

    #[test]
    fn parses_other_messages() {
        let m = |s: String| parse(&s);
        assert_eq!(
            m(format!(
                "createArtifact path='{}' name='{}' length='{}'",
                b("/w/out.txt"),
                b("o.txt"),
                b("12")
            )),
            Ok(ServiceMessage::CreateArtifact {
                path: "/w/out.txt".into(),
                name: "o.txt".into(),
                length: Some(12)
            })
        );
        assert_eq!(
            m(format!("createArtifact path='{}'", b("C:\\x\\y.log"))),
            Ok(ServiceMessage::CreateArtifact {
                path: "C:\\x\\y.log".into(),
                name: "y.log".into(),
                length: None
            })
        );
        assert_eq!(
            m(format!("resultMessage message='{}'", b("It broke"))),
            Ok(ServiceMessage::StepFailed {
                message: "It broke".into()
            })
        );
        assert_eq!(
            m(format!(
                "progress percentage='{}' message='{}'",
                b("150"),
                b("m")
            )),
            Ok(ServiceMessage::Progress {
                percentage: Some(100),
                message: "m".into()
            })
        );
        assert_eq!(
            m(format!("progress percentage='{}'", b("x"))),
            Ok(ServiceMessage::Progress {
                percentage: None,
                message: String::new()
            })
        );
        assert_eq!(
            m(format!("mask value='{}'", b("k"))),
            Ok(ServiceMessage::Mask { value: "k".into() })
        );
        assert_eq!(
            m("stdout-verbose".into()),
            Ok(ServiceMessage::StdoutVerbose)
        );
        assert_eq!(
            m("STDERR-PROGRESS".into()),
            Ok(ServiceMessage::StderrProgress)
        );
        assert_eq!(
            m("delete-target machine='not base64!'".into()),
            Ok(ServiceMessage::Other("delete-target".into()))
        );
    }

    #[test]
    fn reports_bad_messages() {
        for body in [
            "",
            "   ",
            "'x'",
            "setVariable name='***'",
            "setVariable value='YQ=='",
            "setVariable name='YQ==' name='Yg=='",
            "setVariable name='YQ==",
            "setVariable name=YQ==",
            "setVariable name",
            "setVariable name='YQ=='value='Yg=='",
            "createArtifact name='YQ=='",
            "mask",
            "set!Variable",
        ] {
            assert!(parse(body).is_err(), "{body:?} should be bad");
        }
        let e = parse("setVariable name='@@'").unwrap_err();
        assert_eq!(e.name.as_deref(), Some("setVariable"));
        assert!(e.to_string().contains("not valid base64"));
    }

    #[test]
    fn splits_text_around_messages() {
        assert_eq!(split_line("plain"), vec![Segment::Text("plain")]);
        assert_eq!(split_line(""), vec![Segment::Text("")]);
        assert_eq!(
            split_line("a##octopus[stdout-verbose]b##octopus[stdout-default]"),
            vec![
                Segment::Text("a"),
                Segment::Message(Ok(ServiceMessage::StdoutVerbose)),
                Segment::Text("b"),
                Segment::Message(Ok(ServiceMessage::StdoutDefault)),
            ]
        );
        // Unterminated: plain text.
        assert_eq!(
            split_line("x ##octopus[stdout-verbose"),
            vec![Segment::Text("x ##octopus[stdout-verbose")]
        );
        assert_eq!(
            split_line("##octopus is great"),
            vec![Segment::Text("##octopus is great")]
        );
    }

    #[test]
    fn interpreter_applies_modes() {
        let mut it = OutputInterpreter::new();
        let mut logs = Vec::new();
        let mut feed = |it: &mut OutputInterpreter, s: Stream, l: &str| {
            for e in it.line(s, l) {
                if let OutputEvent::Log { category, text } = e {
                    logs.push((category, text));
                }
            }
        };
        feed(&mut it, Stream::Stdout, "one");
        feed(&mut it, Stream::Stdout, "##octopus[stdout-warning]");
        feed(&mut it, Stream::Stdout, "two");
        feed(&mut it, Stream::Stdout, "");
        feed(&mut it, Stream::Stderr, "err");
        feed(&mut it, Stream::Stdout, "##octopus[stdout-default]");
        feed(&mut it, Stream::Stdout, "three");
        feed(&mut it, Stream::Stdout, "##octopus[stderr-progress]");
        feed(&mut it, Stream::Stderr, "progress");
        feed(&mut it, Stream::Stdout, "##octopus[stderr-ignore]");
        feed(&mut it, Stream::Stderr, "hidden");
        feed(&mut it, Stream::Stdout, "##octopus[stderr-default]");
        feed(&mut it, Stream::Stderr, "err2");
        feed(&mut it, Stream::Stdout, "##octopus[stdout-ignore]");
        feed(&mut it, Stream::Stdout, "hidden");
        feed(&mut it, Stream::Stdout, "##octopus[stdout-highlight]");
        feed(&mut it, Stream::Stdout, "hi");
        feed(&mut it, Stream::Stdout, "##octopus[stdout-wait]");
        feed(&mut it, Stream::Stdout, "wait");
        feed(&mut it, Stream::Stdout, "##octopus[stdout-error]");
        feed(&mut it, Stream::Stdout, "oops");
        feed(&mut it, Stream::Stdout, "##octopus[stdout-verbose]");
        feed(&mut it, Stream::Stdout, "v");
        use LogCategory::*;
        let want: Vec<(LogCategory, String)> = vec![
            (Info, "one"),
            (Warning, "two"),
            (Warning, ""),
            (Error, "err"),
            (Info, "three"),
            (Verbose, "progress"),
            (Error, "err2"),
            (Highlight, "hi"),
            (Wait, "wait"),
            (Error, "oops"),
            (Verbose, "v"),
        ]
        .into_iter()
        .map(|(c, t)| (c, t.to_string()))
        .collect();
        assert_eq!(logs, want);
        assert_eq!(it.category(Stream::Stdout), Some(Verbose));
    }

    #[test]
    fn interpreter_reports_messages_and_hides_bad_ones() {
        let mut it = OutputInterpreter::new();
        let ev = it.line(
            Stream::Stdout,
            &format!("##octopus[setVariable name='{}' value='@@secret']", b("x")),
        );
        assert!(matches!(&ev[..], [OutputEvent::Malformed(_)]));
        let ev = it.line(
            Stream::Stdout,
            &format!(
                "##octopus[setVariable name='{}' value='{}']",
                b("x"),
                b("y")
            ),
        );
        assert_eq!(
            ev,
            vec![OutputEvent::Message(ServiceMessage::SetVariable {
                name: "x".into(),
                value: "y".into(),
                sensitive: false
            })]
        );
        let ev = it.line(Stream::Stdout, "before ##octopus[stdout-verbose] after");
        assert_eq!(
            ev,
            vec![
                OutputEvent::Log {
                    category: LogCategory::Info,
                    text: "before ".into()
                },
                OutputEvent::Message(ServiceMessage::StdoutVerbose),
                OutputEvent::Log {
                    category: LogCategory::Verbose,
                    text: " after".into()
                },
            ]
        );
    }

    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("##octopus[".to_string()),
            Just("]".to_string()),
            Just("'".to_string()),
            Just("\"".to_string()),
            Just("=".to_string()),
            Just(" ".to_string()),
            Just("setVariable".to_string()),
            Just("createArtifact".to_string()),
            Just("progress".to_string()),
            Just("mask".to_string()),
            Just("name".to_string()),
            Just("value".to_string()),
            Just("stdout-verbose".to_string()),
            Just("YQ==".to_string()),
            Just("\u{e9}".to_string()),
            "[a-zA-Z0-9+/=]{0,6}",
            any::<String>(),
        ]
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(s in any::<String>()) {
            let _ = split_line(&s);
            let _ = parse(&s);
            let _ = decode_value(&s);
            let mut it = OutputInterpreter::new();
            let _ = it.line(Stream::Stdout, &s);
            let _ = it.line(Stream::Stderr, &s);
        }

        #[test]
        fn never_panics_on_message_like_text(parts in proptest::collection::vec(fragment(), 0..24)) {
            let s = parts.concat();
            let mut it = OutputInterpreter::new();
            for stream in [Stream::Stdout, Stream::Stderr] {
                for e in it.line(stream, &s) {
                    if let OutputEvent::Log { text, .. } = e {
                        // Logged text always comes from the input.
                        prop_assert!(s.contains(&text));
                    }
                }
            }
        }

        #[test]
        fn set_variable_round_trips(name in "\\PC{1,20}", value in any::<String>(), sensitive: bool) {
            prop_assume!(!name.trim().is_empty());
            let mut line = format!("##octopus[setVariable name='{}' value='{}'", encode_value(&name), encode_value(&value));
            if sensitive {
                line.push_str(&format!(" sensitive='{}'", encode_value("True")));
            }
            line.push(']');
            prop_assert_eq!(
                parse(&line[PREFIX.len()..line.len() - 1]),
                Ok(ServiceMessage::SetVariable { name, value, sensitive })
            );
        }
    }
}
