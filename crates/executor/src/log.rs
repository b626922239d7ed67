//! The task log writer. A deployment's log is domain data: a tree of activities (task → step →
//! target) with timed, levelled lines, kept in the store and readable while the task runs.
//!
//! Writes go through one background writer per task that batches them (one transaction per
//! batch), so a chatty script costs few commits. Every line passes the secret masker first.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aho_corasick::{AhoCorasick, MatchKind};
use ferry_domain::task::{ActivityStatus, LogCategory};
use ferry_domain::time::now_ms;
use ferry_store::{ActivityRow, Db, NewLogLine};
use tokio::sync::{mpsc, oneshot};

/// What masked text is replaced with.
pub const MASK: &str = "********";

/// Replaces secret values in log text.
///
/// Every secret of 4 or more characters (shorter ones are not masked, as in Octopus: masking them
/// would hide ordinary text) is masked wherever it appears, and so are the forms a script most
/// often prints it in:
///
/// - Base64 (standard and URL-safe alphabets, with or without padding, and of the value followed
///   by a newline, as `echo "$S" | base64` encodes it);
/// - URL encoding (`Uri.EscapeDataString`/RFC 3986, `encodeURIComponent`, form encoding with `+`
///   for spaces, lower-case hex);
/// - JSON string escaping (minimal, as serde/Newtonsoft/`JSON.stringify`; ASCII-only as Python's
///   `json.dumps`; and .NET `System.Text.Json`'s default, which also escapes `<>&'+` and backtick).
///
/// The log is line-based, so a multi-line secret is masked line by line: each of its lines
/// (trimmed) of 4 or more characters is a secret of its own. Overlapping and adjacent matches of
/// different secrets are masked as one run.
///
/// Clones share their secrets: [`Masker::add`] on any clone (e.g. for a sensitive output
/// variable, while the task runs) masks the value in every clone from then on. Matching uses one
/// Aho-Corasick automaton over all forms of all secrets, rebuilt when secrets are added, so the
/// cost per line does not grow with the number of secrets.
#[derive(Clone, Default)]
pub struct Masker {
    inner: Arc<RwLock<MaskerInner>>,
}

#[derive(Default)]
struct MaskerInner {
    /// Every pattern (all forms), deduplicated.
    patterns: Vec<String>,
    seen: HashSet<String>,
    automaton: Option<AhoCorasick>,
}

impl std::fmt::Debug for Masker {
    // Never prints the secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("patterns", &self.read().patterns.len())
            .finish()
    }
}

impl Masker {
    pub fn new(secrets: Vec<String>) -> Self {
        let m = Masker::default();
        m.extend(secrets);
        m
    }

    /// Adds one secret (and its encoded forms). Values under 4 characters are ignored.
    pub fn add(&self, secret: &str) {
        self.extend(std::iter::once(secret));
    }

    /// Adds several secrets, rebuilding the automaton once.
    pub fn extend<I, S>(&self, secrets: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let mut changed = false;
        for secret in secrets {
            for form in secret_forms(secret.as_ref()) {
                if inner.seen.insert(form.clone()) {
                    inner.patterns.push(form);
                    changed = true;
                }
            }
        }
        if changed {
            // Standard match kind: needed for overlapping search.
            inner.automaton = AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(&inner.patterns)
                .ok();
            if inner.automaton.is_none() {
                tracing::error!("could not build the secret masker; masking is degraded");
            }
        }
    }

    /// Whether there is anything to mask.
    pub fn is_empty(&self) -> bool {
        self.read().patterns.is_empty()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, MaskerInner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn mask(&self, text: &str) -> String {
        let inner = self.read();
        if inner.patterns.is_empty() {
            return text.to_string();
        }
        let Some(ac) = &inner.automaton else {
            // The automaton could not be built (it should not happen): fall back to plain
            // replacement, longest patterns first.
            let mut sorted: Vec<&String> = inner.patterns.iter().collect();
            sorted.sort_by_key(|p| std::cmp::Reverse(p.len()));
            let mut out = text.to_string();
            for p in sorted {
                if out.contains(p.as_str()) {
                    out = out.replace(p.as_str(), MASK);
                }
            }
            return out;
        };
        // Merge all (overlapping) matches into runs, then replace each run once.
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for m in ac.find_overlapping_iter(text) {
            runs.push((m.start(), m.end()));
        }
        if runs.is_empty() {
            return text.to_string();
        }
        runs.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut pos = 0;
        let mut cur = runs[0];
        for &(s, e) in &runs[1..] {
            if s <= cur.1 {
                cur.1 = cur.1.max(e);
            } else {
                out.push_str(&text[pos..cur.0]);
                out.push_str(MASK);
                pos = cur.1;
                cur = (s, e);
            }
        }
        out.push_str(&text[pos..cur.0]);
        out.push_str(MASK);
        out.push_str(&text[cur.1..]);
        out
    }
}

/// Minimum length, in characters, of a value that is masked.
const MIN_SECRET_CHARS: usize = 4;

fn long_enough(s: &str) -> bool {
    s.chars().nth(MIN_SECRET_CHARS - 1).is_some()
}

/// Every form of `secret` to mask.
fn secret_forms(secret: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if !long_enough(secret) {
        return out;
    }
    let mut push = |s: String| {
        if long_enough(&s) && !out.contains(&s) {
            out.push(s);
        }
    };
    if secret.contains(['\n', '\r']) {
        for line in secret.split(['\n', '\r']) {
            push(line.trim().to_string());
        }
    } else {
        push(secret.to_string());
    }
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let with_newline = format!("{secret}\n");
    for raw in [secret, with_newline.as_str()] {
        // Unpadded forms also match the padded text (the `=` stays visible).
        push(STANDARD_NO_PAD.encode(raw));
        push(URL_SAFE_NO_PAD.encode(raw));
    }
    push(url_encode(secret, b"-_.~", false, true));
    push(url_encode(secret, b"-_.~!'()*", false, true));
    push(url_encode(secret, b"-_.~", true, true));
    push(url_encode(secret, b"-_.~", false, false));
    push(json_escape(secret, JsonStyle::Minimal));
    push(json_escape(secret, JsonStyle::Ascii));
    push(json_escape(secret, JsonStyle::DotNet));
    out
}

/// Percent-encoding of the UTF-8 bytes; ASCII alphanumerics and `keep` stay as they are.
fn url_encode(s: &str, keep: &[u8], plus_for_space: bool, upper: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(char::from(b));
        } else if b == b' ' && plus_for_space {
            out.push('+');
        } else if upper {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum JsonStyle {
    /// `"` `\` and control characters (serde_json, Newtonsoft, `JSON.stringify`).
    Minimal,
    /// Also every non-ASCII character as `\uxxxx` (Python's `json.dumps`).
    Ascii,
    /// System.Text.Json's default encoder: `\u0022` for `"`, upper-case hex, and `<>&'+` and
    /// backtick escaped too, besides non-ASCII.
    DotNet,
}

/// The inside of a JSON string literal holding `s`.
fn json_escape(s: &str, style: JsonStyle) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let hex = |out: &mut String, u: u16| {
        if style == JsonStyle::DotNet {
            out.push_str(&format!("\\u{u:04X}"));
        } else {
            out.push_str(&format!("\\u{u:04x}"));
        }
    };
    for c in s.chars() {
        match c {
            '"' if style == JsonStyle::DotNet => hex(&mut out, 0x22),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => hex(&mut out, c as u16),
            '<' | '>' | '&' | '\'' | '+' | '`' if style == JsonStyle::DotNet => {
                hex(&mut out, c as u16)
            }
            c if !c.is_ascii() && style != JsonStyle::Minimal => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    hex(&mut out, *u);
                }
            }
            c => out.push(c),
        }
    }
    out
}

enum Msg {
    Activity(ActivityRow),
    Line(NewLogLine),
    Flush(oneshot::Sender<()>),
}

/// A handle for writing one task's log. Cheap to clone.
#[derive(Clone)]
pub struct TaskLogger {
    task_id: Arc<str>,
    tx: mpsc::UnboundedSender<Msg>,
    masker: Arc<Masker>,
    order: Arc<AtomicI64>,
    warnings: Arc<AtomicI64>,
}

/// One node of the log tree.
#[derive(Clone, Debug)]
pub struct Activity {
    pub id: String,
    pub parent_id: Option<String>,
    pub name: String,
    pub started: i64,
    sort_order: i64,
}

impl TaskLogger {
    /// Starts the writer for `task_id`.
    pub fn start(db: Db, task_id: &str, masker: Masker) -> TaskLogger {
        let (tx, rx) = mpsc::unbounded_channel();
        let task: Arc<str> = Arc::from(task_id);
        tokio::spawn(writer(db, task.clone(), rx));
        TaskLogger {
            task_id: task,
            tx,
            masker: Arc::new(masker),
            order: Arc::new(AtomicI64::new(0)),
            warnings: Arc::new(AtomicI64::new(0)),
        }
    }

    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// Replaces the masker (when the secrets of a deployment become known).
    pub fn set_masker(&mut self, masker: Masker) {
        self.masker = Arc::new(masker);
    }

    pub fn masker(&self) -> &Masker {
        &self.masker
    }

    /// Opens a child activity (status Running).
    pub fn open(&self, parent: Option<&Activity>, name: &str) -> Activity {
        let n = self.order.fetch_add(1, Ordering::Relaxed);
        let id = match parent {
            Some(p) => format!("{}/{}", p.id, n),
            None => format!("{}_{}", self.task_id, n),
        };
        let a = Activity {
            id,
            parent_id: parent.map(|p| p.id.clone()),
            name: self.masker.mask(name),
            started: now_ms(),
            sort_order: n,
        };
        self.send_activity(&a, ActivityStatus::Running, None);
        a
    }

    /// Closes an activity with a final status.
    pub fn close(&self, a: &Activity, status: ActivityStatus) {
        self.send_activity(a, status, Some(now_ms()));
    }

    /// Records an activity that did not run (e.g. a skipped step).
    pub fn skipped(&self, parent: Option<&Activity>, name: &str) -> Activity {
        let a = self.open(parent, name);
        self.close(&a, ActivityStatus::Skipped);
        a
    }

    fn send_activity(&self, a: &Activity, status: ActivityStatus, ended: Option<i64>) {
        let _ = self.tx.send(Msg::Activity(ActivityRow {
            task_id: self.task_id.to_string(),
            activity_id: a.id.clone(),
            parent_id: a.parent_id.clone(),
            name: a.name.clone(),
            status: status.as_str().to_string(),
            started: Some(a.started),
            ended,
            sort_order: a.sort_order,
        }));
    }

    /// Writes one line under `activity`.
    pub fn line(&self, activity: &Activity, category: LogCategory, message: &str) {
        if matches!(
            category,
            LogCategory::Warning | LogCategory::Error | LogCategory::Fatal
        ) {
            self.warnings.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self.tx.send(Msg::Line(NewLogLine {
            activity_id: activity.id.clone(),
            occurred_at: now_ms(),
            category: category.as_str().to_string(),
            message: self.masker.mask(message),
        }));
    }

    pub fn info(&self, a: &Activity, m: &str) {
        self.line(a, LogCategory::Info, m);
    }
    pub fn verbose(&self, a: &Activity, m: &str) {
        self.line(a, LogCategory::Verbose, m);
    }
    pub fn error(&self, a: &Activity, m: &str) {
        self.line(a, LogCategory::Error, m);
    }

    /// Whether any warning or error has been logged.
    pub fn has_warnings_or_errors(&self) -> bool {
        self.warnings.load(Ordering::Relaxed) > 0
    }

    /// Waits until everything sent so far is in the store.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

async fn writer(db: Db, task_id: Arc<str>, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut activities: Vec<ActivityRow> = Vec::new();
    let mut lines: Vec<NewLogLine> = Vec::new();
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let Some(first) = rx.recv().await else {
            break;
        };
        let take = |m: Msg,
                    activities: &mut Vec<ActivityRow>,
                    lines: &mut Vec<NewLogLine>,
                    waiters: &mut Vec<oneshot::Sender<()>>| match m {
            Msg::Activity(a) => {
                if let Some(existing) = activities
                    .iter_mut()
                    .find(|x| x.activity_id == a.activity_id)
                {
                    *existing = a;
                } else {
                    activities.push(a);
                }
            }
            Msg::Line(l) => lines.push(l),
            Msg::Flush(w) => waiters.push(w),
        };
        take(first, &mut activities, &mut lines, &mut waiters);
        // Gather what arrives within a short window into the same transaction.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(20);
        while waiters.is_empty() && lines.len() < 500 {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(m)) => take(m, &mut activities, &mut lines, &mut waiters),
                Ok(None) | Err(_) => break,
            }
        }
        while let Ok(m) = rx.try_recv() {
            take(m, &mut activities, &mut lines, &mut waiters);
        }
        if !activities.is_empty() || !lines.is_empty() {
            let mut attempt = 0;
            loop {
                match db.write_task_log(&task_id, &activities, &lines).await {
                    Ok(()) => break,
                    Err(e) => {
                        attempt += 1;
                        tracing::warn!(task = %task_id, error = %e, attempt, "writing the task log failed");
                        if attempt >= 5 {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                    }
                }
            }
            activities.clear();
            lines.clear();
        }
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn masks_long_values_only() {
        let m = Masker::new(vec!["abc".into(), "s3cr3t-value".into(), "s3cr3t".into()]);
        assert_eq!(
            m.mask("x s3cr3t-value y s3cr3t abc"),
            "x ******** y ******** abc"
        );
    }

    #[test]
    fn masks_overlapping_and_adjacent_secrets_as_one_run() {
        let m = Masker::new(vec!["abcd".into(), "cdef".into(), "aaaa".into()]);
        assert_eq!(m.mask("xabcdefx"), "x********x");
        assert_eq!(m.mask("aaaaaaaaa!"), "********!");
        assert_eq!(m.mask("abcdcdef"), "********");
        assert_eq!(m.mask("nothing here"), "nothing here");
    }

    #[test]
    fn masks_unicode_secrets_by_characters() {
        // 4 characters, more bytes.
        let m = Masker::new(vec![
            "\u{e9}\u{e9}\u{e9}\u{e9}".into(),
            "\u{e9}\u{e9}".into(),
        ]);
        assert_eq!(
            m.mask("a\u{e9}\u{e9}\u{e9}\u{e9}b \u{e9}\u{e9}"),
            "a********b \u{e9}\u{e9}"
        );
    }

    #[test]
    fn masks_base64_forms() {
        let m = Masker::new(vec!["p@ss:w0rd?".into()]);
        // base64("p@ss:w0rd?") = cEBzczp3MHJkPw==
        assert_eq!(
            m.mask("Authorization: cEBzczp3MHJkPw=="),
            "Authorization: ********=="
        );
        // URL-safe alphabet.
        let m = Masker::new(vec!["\u{fb}\u{ff}>?".into()]);
        use base64::Engine as _;
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("\u{fb}\u{ff}>?");
        let std = base64::engine::general_purpose::STANDARD.encode("\u{fb}\u{ff}>?");
        assert_ne!(url_safe, std.trim_end_matches('='));
        assert_eq!(m.mask(&format!("[{url_safe}]")), "[********]");
        assert_eq!(m.mask(&format!("[{std}]")), "[********]");
        // `echo "$SECRET" | base64` includes the newline.
        let m = Masker::new(vec!["hunter22".into()]);
        let echoed = base64::engine::general_purpose::STANDARD.encode("hunter22\n");
        assert_eq!(m.mask(&echoed), "********");
    }

    #[test]
    fn masks_url_encoded_forms() {
        let m = Masker::new(vec!["a b/c!d'é".into()]);
        // Uri.EscapeDataString (RFC 3986 unreserved only).
        assert_eq!(m.mask("?p=a%20b%2Fc%21d%27%C3%A9&x"), "?p=********&x");
        // encodeURIComponent keeps !'()*.
        assert_eq!(m.mask("?p=a%20b%2Fc!d'%C3%A9&x"), "?p=********&x");
        // Form encoding: + for spaces.
        assert_eq!(m.mask("p=a+b%2Fc%21d%27%C3%A9"), "p=********");
        // Lower-case hex.
        assert_eq!(m.mask("a%20b%2fc%21d%27%c3%a9"), "********");
    }

    #[test]
    fn masks_json_escaped_forms() {
        let m = Masker::new(vec!["pa\"ss\\wörd<+>".into()]);
        // serde_json / JSON.stringify.
        let minimal = serde_json::to_string("pa\"ss\\wörd<+>").unwrap();
        assert_eq!(
            m.mask(&format!("{{\"p\":{minimal}}}")),
            "{\"p\":\"********\"}"
        );
        // Python json.dumps (ensure_ascii).
        assert_eq!(
            m.mask(r#"{"p": "pa\"ss\\w\u00f6rd<+>"}"#),
            r#"{"p": "********"}"#
        );
        // System.Text.Json default encoder.
        assert_eq!(
            m.mask(r#"{"p":"pa\u0022ss\\w\u00F6rd\u003C\u002B\u003E"}"#),
            r#"{"p":"********"}"#
        );
        // A multi-line secret in JSON is one line.
        let m = Masker::new(vec!["line one\nline two".into()]);
        assert_eq!(
            m.mask(r#"{"k":"line one\nline two"}"#),
            r#"{"k":"********"}"#
        );
    }

    #[test]
    fn masks_multi_line_secrets_line_by_line() {
        let key = "-----BEGIN KEY-----\r\n  MIIabc123\nxy\n-----END KEY-----\n";
        let m = Masker::new(vec![key.into()]);
        assert_eq!(m.mask("-----BEGIN KEY-----"), "********");
        assert_eq!(m.mask("    MIIabc123"), "    ********");
        // Lines under 4 characters are not masked.
        assert_eq!(m.mask("xy"), "xy");
        assert_eq!(m.mask("-----END KEY-----"), "********");
    }

    #[test]
    fn secrets_can_be_added_while_running_and_clones_share_them() {
        let m = Masker::default();
        assert!(m.is_empty());
        let clone = m.clone();
        assert_eq!(clone.mask("token=abcd1234"), "token=abcd1234");
        m.add("abcd1234");
        m.add("abc");
        assert!(!m.is_empty());
        assert_eq!(clone.mask("token=abcd1234"), "token=********");
        m.extend(["zzzz", "yyyy"]);
        assert_eq!(clone.mask("zzzz yyyy"), "******** ********");
        // Adding the same secret again changes nothing.
        m.add("abcd1234");
        assert_eq!(m.mask("abcd1234"), "********");
        // Debug never shows secrets.
        assert!(!format!("{m:?}").contains("abcd1234"));
    }

    #[test]
    fn many_secrets_and_long_lines_are_fast() {
        let secrets: Vec<String> = (0..2000).map(|i| format!("secret-value-{i:05}")).collect();
        let m = Masker::new(secrets);
        let line = "ordinary log text without anything secret in it; ".repeat(200);
        let start = std::time::Instant::now();
        for _ in 0..200 {
            assert_eq!(m.mask(&line).len(), line.len());
        }
        let tricky = format!("{line}secret-value-01999{line}");
        assert!(m.mask(&tricky).contains("********"));
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }
}
