//! Package files as blobs named by their content (hex SHA-256), behind a small interface so the
//! local directory can be joined by an object store later.
//!
//! Every upload, whatever the store, first streams into a local temporary file while SHA-1 and
//! SHA-256 are computed ([`Upload`]); the finished file is synced ([`Staged`]) and can be read
//! (to check its format) before [`BlobStore::commit`] moves it to its content address. A
//! temporary file that is not committed is removed when its value is dropped, so an upload that
//! breaks half-way (the client went away, the format was wrong) leaves nothing behind.
//!
//! The local store keeps `ROOT/sha256/ab/abcdef…` (the first two hex digits as a directory) and
//! its temporary files in `ROOT/tmp`, on the same file system, so the final rename is atomic.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use sha1::Sha1;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWriteExt, BufWriter};

/// The future a [`BlobStore`] method returns.
pub type BlobFuture<'a, T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send + 'a>>;

/// A blob opened for reading.
pub type BlobReader = Box<dyn AsyncRead + Send + Unpin>;

/// What an upload turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    /// Lower-case hex SHA-256: the blob's address.
    pub sha256: String,
    /// Lower-case hex SHA-1 (Octopus shows it as a package's `Hash`).
    pub sha1: String,
    pub size: u64,
}

/// Where package files live.
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Starts receiving a file into a temporary file of this store's staging directory.
    fn begin(&self) -> BlobFuture<'_, Upload>;
    /// Stores a finished upload under its content address. When the address already holds the
    /// same content, the upload is discarded.
    fn commit(&self, staged: Staged) -> BlobFuture<'_, ()>;
    /// Opens a blob: a reader and the size, or `None` when there is no such blob.
    fn open<'a>(&'a self, sha256: &'a str) -> BlobFuture<'a, Option<(BlobReader, u64)>>;
    /// Removes a blob; `false` when there was none.
    fn remove<'a>(&'a self, sha256: &'a str) -> BlobFuture<'a, bool>;
    /// Every stored address.
    fn list(&self) -> BlobFuture<'_, Vec<String>>;
    /// Removes temporary files older than `age` (left by a process that died mid-upload);
    /// returns how many were removed.
    fn sweep_staging(&self, age: Duration) -> BlobFuture<'_, usize>;
    /// The blob as a local file, when this store keeps files on this machine.
    fn local_path(&self, sha256: &str) -> Option<PathBuf>;
}

/// Whether `s` is a blob address (64 lower-case hex digits); anything else is never a path.
pub fn is_address(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

// ---------------------------------------------------------------------------------------------
// Uploads

const WRITE_BUFFER: usize = 256 * 1024;

/// A file being received: written to a temporary file and hashed as it arrives, in constant
/// memory. Dropping it before [`Upload::finish`] removes the temporary file.
pub struct Upload {
    path: PathBuf,
    file: BufWriter<tokio::fs::File>,
    sha1: Sha1,
    /// SHA-256 runs on its own thread, beside the SHA-1 and the writes of this task, so a large
    /// upload is not limited to one core's hashing speed. Chunks queue in a bounded channel.
    sha256: Option<Sha256Worker>,
    size: u64,
    armed: bool,
}

struct Sha256Worker {
    tx: tokio::sync::mpsc::Sender<std::sync::Arc<[u8]>>,
    handle: std::thread::JoinHandle<[u8; 32]>,
}

impl Sha256Worker {
    fn start() -> Sha256Worker {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<std::sync::Arc<[u8]>>(64);
        let handle = std::thread::spawn(move || {
            let mut h = Sha256::new();
            while let Some(chunk) = rx.blocking_recv() {
                h.update(&chunk);
            }
            h.finalize().into()
        });
        Sha256Worker { tx, handle }
    }
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("path", &self.path)
            .field("size", &self.size)
            .finish()
    }
}

impl Upload {
    /// Creates a new temporary file in `dir`.
    pub async fn create(dir: &Path) -> io::Result<Upload> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        tokio::fs::create_dir_all(dir).await?;
        loop {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("upload-{}-{nanos:x}-{n}.tmp", std::process::id()));
            match tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .await
            {
                Ok(f) => {
                    return Ok(Upload {
                        path,
                        file: BufWriter::with_capacity(WRITE_BUFFER, f),
                        sha1: Sha1::new(),
                        sha256: Some(Sha256Worker::start()),
                        size: 0,
                        armed: true,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Appends a chunk.
    pub async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        if let Some(w) = &self.sha256 {
            let shared: std::sync::Arc<[u8]> = std::sync::Arc::from(chunk);
            w.tx.send(shared)
                .await
                .map_err(|_| io::Error::other("the SHA-256 worker stopped"))?;
        }
        self.sha1.update(chunk);
        self.size += chunk.len() as u64;
        self.file.write_all(chunk).await
    }

    /// Bytes received so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Flushes and syncs the file; the result can be read, checked and committed.
    pub async fn finish(mut self) -> io::Result<Staged> {
        self.file.flush().await?;
        self.file.get_mut().sync_all().await?;
        let worker = self
            .sha256
            .take()
            .ok_or_else(|| io::Error::other("the upload was already finished"))?;
        drop(worker.tx);
        let digest = tokio::task::spawn_blocking(move || worker.handle.join())
            .await
            .map_err(io::Error::other)?
            .map_err(|_| io::Error::other("the SHA-256 worker failed"))?;
        let info = BlobInfo {
            sha256: hex::encode(digest),
            sha1: hex::encode(self.sha1.clone().finalize()),
            size: self.size,
        };
        self.armed = false;
        Ok(Staged {
            path: std::mem::take(&mut self.path),
            info,
            armed: true,
        })
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.armed && !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A complete, synced temporary file with its hashes. Dropping it removes the file unless a
/// store has committed it.
#[derive(Debug)]
pub struct Staged {
    path: PathBuf,
    info: BlobInfo,
    armed: bool,
}

impl Staged {
    /// The temporary file (to check its content before committing).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn info(&self) -> &BlobInfo {
        &self.info
    }

    /// Takes the file out of this value's care (a store moved or copied it).
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The local directory store

/// Blobs in a local directory: `ROOT/sha256/ab/abcdef…`, temporary files in `ROOT/tmp`.
#[derive(Clone, Debug)]
pub struct LocalDirStore {
    root: PathBuf,
}

impl LocalDirStore {
    /// Opens (and creates) the store's directories under `root`.
    pub fn open(root: &Path) -> io::Result<LocalDirStore> {
        std::fs::create_dir_all(root.join("sha256"))?;
        std::fs::create_dir_all(root.join("tmp"))?;
        Ok(LocalDirStore {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The staging directory for temporary files.
    pub fn staging_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn blob_path(&self, sha256: &str) -> Option<PathBuf> {
        if !is_address(sha256) {
            return None;
        }
        Some(self.root.join("sha256").join(&sha256[..2]).join(sha256))
    }
}

/// Syncs a directory so a rename or removal in it survives a power loss.
async fn sync_dir(dir: &Path) -> io::Result<()> {
    let d = tokio::fs::File::open(dir).await?;
    d.sync_all().await
}

impl BlobStore for LocalDirStore {
    fn begin(&self) -> BlobFuture<'_, Upload> {
        Box::pin(async move { Upload::create(&self.staging_dir()).await })
    }

    fn commit(&self, mut staged: Staged) -> BlobFuture<'_, ()> {
        Box::pin(async move {
            let Some(dest) = self.blob_path(&staged.info.sha256) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "an upload's SHA-256 is not a blob address",
                ));
            };
            let dir = dest.parent().map(Path::to_path_buf).unwrap_or_default();
            tokio::fs::create_dir_all(&dir).await?;
            if tokio::fs::try_exists(&dest).await? {
                // Same address, same content: keep the stored one, drop (remove) the upload.
                return Ok(());
            }
            tokio::fs::rename(&staged.path, &dest).await?;
            staged.disarm();
            sync_dir(&dir).await
        })
    }

    fn open<'a>(&'a self, sha256: &'a str) -> BlobFuture<'a, Option<(BlobReader, u64)>> {
        Box::pin(async move {
            let Some(path) = self.blob_path(sha256) else {
                return Ok(None);
            };
            match tokio::fs::File::open(&path).await {
                Ok(f) => {
                    let len = f.metadata().await?.len();
                    Ok(Some((Box::new(f) as BlobReader, len)))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn remove<'a>(&'a self, sha256: &'a str) -> BlobFuture<'a, bool> {
        Box::pin(async move {
            let Some(path) = self.blob_path(sha256) else {
                return Ok(false);
            };
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {
                    if let Some(dir) = path.parent() {
                        sync_dir(dir).await?;
                    }
                    Ok(true)
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            }
        })
    }

    fn list(&self) -> BlobFuture<'_, Vec<String>> {
        Box::pin(async move {
            let mut out = Vec::new();
            let mut dirs = tokio::fs::read_dir(self.root.join("sha256")).await?;
            while let Some(d) = dirs.next_entry().await? {
                if !d.file_type().await?.is_dir() {
                    continue;
                }
                let mut files = tokio::fs::read_dir(d.path()).await?;
                while let Some(f) = files.next_entry().await? {
                    let name = f.file_name().to_string_lossy().to_string();
                    if is_address(&name) {
                        out.push(name);
                    }
                }
            }
            out.sort();
            Ok(out)
        })
    }

    fn sweep_staging(&self, age: Duration) -> BlobFuture<'_, usize> {
        Box::pin(async move {
            let mut removed = 0;
            let now = SystemTime::now();
            let mut entries = tokio::fs::read_dir(self.staging_dir()).await?;
            while let Some(e) = entries.next_entry().await? {
                let meta = e.metadata().await?;
                let old = meta
                    .modified()
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .is_some_and(|d| d >= age);
                if meta.is_file() && old && tokio::fs::remove_file(e.path()).await.is_ok() {
                    removed += 1;
                }
            }
            Ok(removed)
        })
    }

    fn local_path(&self, sha256: &str) -> Option<PathBuf> {
        self.blob_path(sha256)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use tokio::io::AsyncReadExt;

    use super::*;

    fn staging_files(store: &LocalDirStore) -> usize {
        std::fs::read_dir(store.staging_dir())
            .map(|d| d.count())
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn upload_commit_open_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::open(dir.path()).unwrap();
        let mut up = store.begin().await.unwrap();
        up.write(b"hello ").await.unwrap();
        up.write(b"world").await.unwrap();
        let staged = up.finish().await.unwrap();
        let info = staged.info().clone();
        assert_eq!(
            info.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(info.sha1, "2aae6c35c94fcfb415dbe95f408b9ce91ee846ed");
        assert_eq!(info.size, 11);
        store.commit(staged).await.unwrap();
        assert_eq!(staging_files(&store), 0);
        let path = store.local_path(&info.sha256).unwrap_or_default();
        assert!(path.ends_with(format!("sha256/b9/{}", info.sha256)));
        let (mut r, len) = store.open(&info.sha256).await.unwrap().expect("stored");
        let mut text = String::new();
        r.read_to_string(&mut text).await.unwrap();
        assert_eq!((text.as_str(), len), ("hello world", 11));
        assert_eq!(store.list().await.ok(), Some(vec![info.sha256.clone()]));

        // The same content again: the upload is discarded, the blob stays.
        let mut up = store.begin().await.unwrap();
        up.write(b"hello world").await.unwrap();
        let staged = up.finish().await.unwrap();
        store.commit(staged).await.unwrap();
        assert_eq!(staging_files(&store), 0);

        assert!(store.remove(&info.sha256).await.unwrap_or(false));
        assert!(!store.remove(&info.sha256).await.unwrap_or(true));
        assert!(store.open(&info.sha256).await.ok().flatten().is_none());
        // Not addresses: never turned into paths.
        assert!(store.local_path("../../etc/passwd").is_none());
        assert!(store.open("ABC").await.ok().flatten().is_none());
    }

    #[tokio::test]
    async fn abandoned_uploads_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::open(dir.path()).unwrap();
        let mut up = store.begin().await.unwrap();
        up.write(&[7u8; 100_000]).await.unwrap();
        assert_eq!(staging_files(&store), 1);
        drop(up);
        assert_eq!(staging_files(&store), 0);
        let mut up = store.begin().await.unwrap();
        up.write(b"x").await.unwrap();
        let staged = up.finish().await.unwrap();
        drop(staged);
        assert_eq!(staging_files(&store), 0);
        assert_eq!(store.list().await.ok(), Some(vec![]));
        // Stale temporary files of a dead process are swept.
        std::fs::write(store.staging_dir().join("upload-1-x-0.tmp"), b"partial").unwrap();
        assert_eq!(
            store.sweep_staging(Duration::from_secs(3600)).await.ok(),
            Some(0)
        );
        assert_eq!(store.sweep_staging(Duration::ZERO).await.ok(), Some(1));
    }
}
