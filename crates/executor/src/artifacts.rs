//! Artifacts (`new_octopusartifact` / `createartifact`): where the script runs, the target
//! keeps a copy of each file as soon as the script reports it (`##octopus[createArtifact …]`,
//! sent only after the bootstrap checked the file exists), because the script's working
//! directory is removed when it ends. After the script, the executor reads each copy through
//! `PackageOp::ReadArtifact` (the same on the built-in worker, agents and SSH targets) and stores
//! it (`Artifacts` documents, content in `ArtifactContents`). A file larger than
//! `MAX_ARTIFACT_BYTES` is not kept and the step fails saying so. See `docs/scripts.md`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ferry_protocol::PackageStageReply;

use crate::package_ops::Roots;
use crate::service_message::{OutputEvent, OutputInterpreter, ServiceMessage};
use crate::target::{ScriptOutput, Stream};

/// The largest artifact Ferry collects (it travels in one agent frame, base64-encoded).
pub const MAX_ARTIFACT_BYTES: u64 = 2 * 1024 * 1024;

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Where a target keeps the artifact copies of a ticket's script.
pub fn stash_dir(roots: &Roots, ticket: &str) -> PathBuf {
    let base = roots
        .package_cache
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| roots.package_cache.clone());
    base.join("artifacts").join(sanitize(ticket))
}

/// Wraps a script's output: copies each reported artifact into the ticket's stash
/// (`<stash>/<n>`, numbered in the order of the messages) and passes every line on.
pub struct Stash<'a> {
    inner: &'a dyn ScriptOutput,
    dir: PathBuf,
    state: Mutex<(OutputInterpreter, u32)>,
}

impl<'a> Stash<'a> {
    /// Starts an empty stash for the ticket (copies of an earlier attempt are removed).
    pub fn new(roots: &Roots, ticket: &str, inner: &'a dyn ScriptOutput) -> Self {
        let dir = stash_dir(roots, ticket);
        let _ = std::fs::remove_dir_all(&dir);
        Stash {
            inner,
            dir,
            state: Mutex::new((OutputInterpreter::default(), 0)),
        }
    }

    fn keep(&self, index: u32, path: &str) {
        let src = Path::new(path);
        let Ok(meta) = std::fs::metadata(src) else {
            return;
        };
        if !meta.is_file() || meta.len() > MAX_ARTIFACT_BYTES {
            return;
        }
        if std::fs::create_dir_all(&self.dir).is_err() {
            return;
        }
        let _ = std::fs::copy(src, self.dir.join(index.to_string()));
    }
}

impl ScriptOutput for Stash<'_> {
    fn line(&self, stream: Stream, text: &str) {
        if text.contains("##octopus[")
            && let Ok(mut st) = self.state.lock()
        {
            for ev in st.0.line(stream, text) {
                if let OutputEvent::Message(ServiceMessage::CreateArtifact { path, .. }) = ev {
                    let index = st.1;
                    st.1 += 1;
                    self.keep(index, &path);
                }
            }
        }
        self.inner.line(stream, text);
    }
}

/// `PackageOp::ReadArtifact`: the kept copy, removed once read.
pub fn read(
    roots: &Roots,
    ticket: &str,
    index: u32,
    max_bytes: u64,
) -> Result<PackageStageReply, String> {
    let dir = stash_dir(roots, ticket);
    let file = dir.join(index.to_string());
    let limit = max_bytes.min(MAX_ARTIFACT_BYTES);
    let meta = std::fs::metadata(&file).map_err(|_| {
        format!(
            "the artifact was not kept on the target (it is missing, not a regular file, or larger than {limit} bytes)"
        )
    })?;
    if meta.len() > limit {
        let _ = std::fs::remove_file(&file);
        return Err(format!(
            "the artifact is {} bytes, larger than the limit of {limit} bytes",
            meta.len()
        ));
    }
    let bytes = std::fs::read(&file).map_err(|e| format!("the artifact could not be read: {e}"))?;
    let _ = std::fs::remove_file(&file);
    // The last one read removes the (then empty) directory.
    let _ = std::fs::remove_dir(&dir);
    Ok(PackageStageReply {
        content: Some(bytes),
        ..PackageStageReply::default()
    })
}

/// The collection of artifact documents and of their contents.
pub const COLLECTION: &str = "Artifacts";
pub const CONTENTS: &str = "ArtifactContents";

/// An artifact as Octopus's API shows it (`Links` added by the server).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Artifact {
    pub id: String,
    pub space_id: String,
    pub filename: String,
    pub source: String,
    pub server_task_id: String,
    pub created: String,
    pub log_correlation_id: String,
    pub related_document_ids: Vec<String>,
    pub length: u64,
}

/// The id of an artifact's content document.
pub fn content_id(id: &str) -> String {
    format!("{id}-content")
}

fn row(
    collection: &str,
    id: &str,
    space: &str,
    owner: &str,
    seq: i64,
    body: String,
) -> ferry_store::DocRow {
    let now = ferry_domain::time::now_ms();
    ferry_store::DocRow {
        id: id.to_string(),
        collection: collection.to_string(),
        space_id: space.to_string(),
        owner_id: owner.to_string(),
        name: id.to_string(),
        name_key: ferry_store::name_key(id),
        slug: String::new(),
        sort_order: 0,
        ref1: String::new(),
        ref2: String::new(),
        seq,
        body,
        created_at: now,
        updated_at: now,
    }
}

/// Stores one artifact and its content in one transaction; returns its id.
pub async fn store(
    db: &ferry_store::Db,
    mut a: Artifact,
    content: &[u8],
) -> Result<String, String> {
    use base64::Engine;
    let mut tx = db.begin().await.map_err(|e| e.to_string())?;
    let seq = tx.next_seq(COLLECTION).await.map_err(|e| e.to_string())?;
    a.id = format!("{COLLECTION}-{seq}");
    a.length = content.len() as u64;
    a.created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false);
    let body = serde_json::to_string(&a).map_err(|e| e.to_string())?;
    tx.insert_doc(&row(
        COLLECTION,
        &a.id,
        &a.space_id,
        &a.server_task_id,
        seq,
        body,
    ))
    .await
    .map_err(|e| e.to_string())?;
    let data = serde_json::json!({
        "Content": base64::engine::general_purpose::STANDARD.encode(content)
    })
    .to_string();
    tx.insert_doc(&row(
        CONTENTS,
        &content_id(&a.id),
        &a.space_id,
        &a.id,
        seq,
        data,
    ))
    .await
    .map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok(a.id)
}

/// Where the script ran and where to log.
pub struct Place<'a> {
    pub logger: &'a crate::log::TaskLogger,
    pub activity: &'a crate::log::Activity,
    pub target: &'a dyn crate::target::Target,
    pub task: &'a crate::target::TaskRef,
}

/// Reads every artifact the script reported from the target and stores it. The first one
/// that cannot be collected is the error (the step fails, as in Octopus); the others are
/// still tried.
pub async fn collect(
    ex: &crate::Executor,
    space: &str,
    related: &[&String],
    place: Place<'_>,
    ticket: &str,
    artifacts: Vec<(String, String)>,
) -> Result<(), String> {
    let mut first_error = None;
    for (index, (name, path)) in artifacts.into_iter().enumerate() {
        let op = ferry_protocol::PackageOp::ReadArtifact {
            ticket: ticket.to_string(),
            index: u32::try_from(index).unwrap_or(u32::MAX),
            max_bytes: MAX_ARTIFACT_BYTES,
        };
        let got = match place.target.package_stage(op, place.task).await {
            Ok(reply) => reply
                .content
                .ok_or_else(|| "the target sent no content".to_string()),
            Err(e) => Err(e.to_string()),
        };
        let outcome = match got {
            Ok(bytes) => {
                let a = Artifact {
                    space_id: space.to_string(),
                    filename: name.clone(),
                    source: place.target.name().to_string(),
                    server_task_id: place.task.task_id.clone(),
                    log_correlation_id: place.task.task_id.clone(),
                    related_document_ids: related.iter().map(|s| (*s).clone()).collect(),
                    ..Artifact::default()
                };
                let len = bytes.len();
                store(&ex.db, a, &bytes)
                    .await
                    .map(|id| format!("Collected the artifact '{name}' ({len} bytes) as {id}"))
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(msg) => place.logger.info(place.activity, &msg),
            Err(e) => {
                let e = format!("The artifact '{name}' ({path}) could not be collected: {e}");
                place
                    .logger
                    .line(place.activity, ferry_domain::task::LogCategory::Error, &e);
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The bytes of a stored content document's body.
pub fn decode_content(body: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    base64::engine::general_purpose::STANDARD
        .decode(v["Content"].as_str().unwrap_or_default())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::service_message::encode_value;

    struct Sink(Mutex<Vec<String>>);
    impl ScriptOutput for Sink {
        fn line(&self, _: Stream, text: &str) {
            self.0.lock().unwrap().push(text.to_string());
        }
    }

    #[test]
    fn reported_files_are_kept_and_read_once() {
        let tmp = tempfile::tempdir().unwrap();
        let roots = Roots {
            package_cache: tmp.path().join("packages"),
            apps_root: tmp.path().join("apps"),
        };
        let small = tmp.path().join("small.txt");
        std::fs::write(&small, b"hello\0bytes").unwrap();
        let big = tmp.path().join("big.bin");
        std::fs::write(&big, vec![0u8; (MAX_ARTIFACT_BYTES + 1) as usize]).unwrap();
        let sink = Sink(Mutex::new(Vec::new()));
        let msg = |p: &Path| {
            format!(
                "##octopus[createArtifact path='{}' name='{}']",
                encode_value(&p.display().to_string()),
                encode_value("n")
            )
        };
        {
            let stash = Stash::new(&roots, "T-1/s1", &sink);
            stash.line(Stream::Stdout, "plain");
            stash.line(Stream::Stdout, &msg(&small));
            stash.line(Stream::Stdout, &msg(&big));
        }
        assert_eq!(sink.0.lock().unwrap().len(), 3);
        std::fs::remove_file(&small).unwrap();
        let got = read(&roots, "T-1/s1", 0, MAX_ARTIFACT_BYTES).unwrap();
        assert_eq!(got.content.unwrap(), b"hello\0bytes");
        assert!(read(&roots, "T-1/s1", 0, MAX_ARTIFACT_BYTES).is_err());
        let err = read(&roots, "T-1/s1", 1, MAX_ARTIFACT_BYTES).unwrap_err();
        assert!(err.contains("larger than"), "{err}");
        assert!(stash_dir(&roots, "T-1/s1").starts_with(tmp.path().join("artifacts")));
    }
}
