//! Archives: recognising a package's format from its first bytes, extracting it safely (the one
//! extractor every place that unpacks uses), packing a directory deterministically, and
//! hashing a package file.
//!
//! Extraction writes into a fresh staging directory next to the destination and renames it into
//! place only when every entry has been written, so a refused or broken archive leaves nothing
//! at the destination. Inside the staging directory:
//! - entry names are checked before anything is written: no `..`, no absolute or drive-letter
//!   paths (`\` counts as a separator), no NUL, at most [`Limits::max_depth`] deep;
//! - every directory on the way to an entry is checked with `symlink_metadata` and must be a
//!   real directory, so nothing is ever written, created or chmod'ed through a symbolic link;
//! - files are created with `create_new`, never opened if they exist: duplicate entries and
//!   names that collide on the file system are refused;
//! - symbolic links must be relative and resolve inside the target without passing through
//!   another link; hard links become copies of a file extracted earlier from the same archive;
//!   device files, FIFOs and sockets are refused; modes keep only the permission bits, never
//!   setuid, setgid or sticky, and never group or other write;
//! - limits on entries, total size and expansion ratio are checked before writing (from the zip
//!   central directory or each tar header) and again while writing, since headers can lie.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha1::Digest as _;

use crate::filename::PackageFormat;

/// How much an archive may hold. Every limit is checked before the data it guards is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Total bytes of file content written (hard links count as copies).
    pub max_total_bytes: u64,
    /// Entries in the archive, counting directories, links and skipped metadata.
    pub max_entries: u64,
    /// Bytes extracted per byte of archive (compressed formats); an archive may always expand
    /// to [`RATIO_GRACE_BYTES`], so that small archives of small files are never refused.
    pub max_ratio: u64,
    /// Path components in an entry name (`a/b/c` is 3).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_total_bytes: 10 << 30,
            max_entries: 1_000_000,
            max_ratio: 200,
            max_depth: 128,
        }
    }
}

/// What any archive may expand to whatever its ratio.
pub const RATIO_GRACE_BYTES: u64 = 1 << 20;

/// Longest entry name or link target accepted, in bytes.
const MAX_NAME_BYTES: usize = 4096;

/// Most bytes of tar headers (with long-name and PAX extensions) before one entry; the tar
/// reader holds these in memory.
const TAR_HEADER_BUDGET: u64 = 1 << 20;

/// What an extraction wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtractSummary {
    /// Regular files written, hard-link copies included.
    pub files: u64,
    /// Directories created, including those only implied by entry names.
    pub directories: u64,
    pub symlinks: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Entries deliberately not extracted (NuGet packaging metadata, PAX global headers).
    pub skipped: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("'{}' is named as a {declared} package but its content is {found}", path.display())]
    FormatMismatch {
        path: PathBuf,
        declared: PackageFormat,
        found: String,
    },
    #[error("'{}' is not a valid {format} archive: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        format: PackageFormat,
        reason: String,
    },
    /// An entry that would be unsafe or ambiguous to write; the whole archive is refused.
    #[error("the archive was refused because of its entry '{entry}': {reason}")]
    Refused { entry: String, reason: String },
    #[error("the archive was refused because {0}; raise the extraction limits if it is genuine")]
    LimitExceeded(String),
    #[error("cannot extract into '{}': {reason}", path.display())]
    Destination { path: PathBuf, reason: String },
    #[error("could not {action} '{}': {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ExtractError + use<> {
    let path = path.to_path_buf();
    move |source| ExtractError::Io {
        action,
        path,
        source,
    }
}

/// An entry name fit for an error message: control characters escaped, at most 300 characters.
fn shown(name: &str) -> String {
    let escaped: String = name.escape_debug().collect();
    if escaped.chars().count() > 300 {
        let cut: String = escaped.chars().take(300).collect();
        format!("{cut}…")
    } else {
        escaped
    }
}

fn refused(name: &str, reason: impl Into<String>) -> ExtractError {
    ExtractError::Refused {
        entry: shown(name),
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Recognising formats

/// The format the first bytes of a file show (512 bytes suffice): zip (also jar and nupkg),
/// gzip (taken as tar.gz) or tar (the `ustar` magic, or a valid pre-POSIX header checksum).
pub fn sniff(first_bytes: &[u8]) -> Option<PackageFormat> {
    let b = first_bytes;
    if b.starts_with(b"PK\x03\x04") || b.starts_with(b"PK\x05\x06") || b.starts_with(b"PK\x07\x08")
    {
        return Some(PackageFormat::Zip);
    }
    if b.starts_with(&[0x1f, 0x8b]) {
        return Some(PackageFormat::TarGz);
    }
    if b.len() >= 262 && &b[257..262] == b"ustar" {
        return Some(PackageFormat::Tar);
    }
    if b.len() >= 512 && tar_checksum_ok(&b[..512]) {
        return Some(PackageFormat::Tar);
    }
    None
}

/// True when a 512-byte block is a tar header by its checksum (the sum of its bytes with the
/// checksum field read as spaces).
fn tar_checksum_ok(block: &[u8]) -> bool {
    let field = &block[148..156];
    let digits: String = field
        .iter()
        .map(|&c| c as char)
        .filter(|c| !matches!(c, ' ' | '\0'))
        .collect();
    if digits.is_empty() || !digits.bytes().all(|c| (b'0'..=b'7').contains(&c)) {
        return false;
    }
    let Ok(stored) = u64::from_str_radix(&digits, 8) else {
        return false;
    };
    let sum: u64 = block
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(c)
            }
        })
        .sum();
    stored == sum
}

/// Names what the first bytes show, for messages.
fn describe(first_bytes: &[u8]) -> String {
    let b = first_bytes;
    let what = match sniff(b) {
        Some(PackageFormat::Zip | PackageFormat::Nupkg) => "a zip archive",
        Some(PackageFormat::TarGz) => "a gzip file",
        Some(PackageFormat::Tar) => "a tar archive",
        None if b.is_empty() => "an empty file",
        None if b.starts_with(b"BZh") => "a bzip2 file",
        None if b.starts_with(b"\xFD7zXZ\0") => "an xz file",
        None if b.starts_with(b"\x28\xB5\x2F\xFD") => "a zstd file",
        None if b.starts_with(b"7z\xBC\xAF\x27\x1C") => "a 7-Zip archive",
        None if b.starts_with(b"Rar!\x1A\x07") => "a RAR archive",
        None => "not an archive Ferry recognises",
    };
    what.to_string()
}

fn read_head(path: &Path) -> Result<Vec<u8>, ExtractError> {
    let file = File::open(path).map_err(io_error("open", path))?;
    let mut head = Vec::with_capacity(512);
    file.take(512)
        .read_to_end(&mut head)
        .map_err(io_error("read", path))?;
    Ok(head)
}

/// Refuses a file whose content is not the format its name declares, naming both.
pub fn check_format(path: &Path, declared: PackageFormat) -> Result<(), ExtractError> {
    let head = read_head(path)?;
    let detected = sniff(&head);
    let matches = match declared {
        PackageFormat::Zip | PackageFormat::Nupkg => detected == Some(PackageFormat::Zip),
        other => detected == Some(other),
    };
    if matches {
        Ok(())
    } else {
        Err(ExtractError::FormatMismatch {
            path: path.to_path_buf(),
            declared,
            found: describe(&head),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Entry names

/// Splits an entry name into safe path components, `\` counting as a separator and `.` and
/// empty components dropped. `Ok(None)` is the target directory itself (`./`).
fn entry_components(name: &str, max_depth: usize) -> Result<Option<Vec<String>>, String> {
    if name.len() > MAX_NAME_BYTES {
        return Err(format!("the name is longer than {MAX_NAME_BYTES} bytes"));
    }
    if name.contains('\0') {
        return Err("the name contains a NUL character".into());
    }
    let normal = name.replace('\\', "/");
    if normal.starts_with('/') {
        return Err("the name is an absolute path".into());
    }
    let comps: Vec<String> = normal
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect();
    if comps.first().is_some_and(|c| is_drive(c)) {
        return Err("the name starts with a Windows drive letter".into());
    }
    if comps.iter().any(|c| c == "..") {
        return Err(
            "the name contains '..', which could reach outside the target directory".into(),
        );
    }
    if cfg!(windows) && comps.iter().any(|c| c.contains(':')) {
        return Err("the name contains ':', which Windows reads as a drive or stream".into());
    }
    if comps.len() > max_depth {
        return Err(format!("it is nested deeper than {max_depth} levels"));
    }
    Ok(if comps.is_empty() { None } else { Some(comps) })
}

/// `C:`, `c:x`: a drive letter, absolute or drive-relative on Windows.
fn is_drive(component: &str) -> bool {
    let b = component.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

/// Checks a symbolic link's target for a link at `link` (components inside the target
/// directory): it must be relative and never climb above the target directory. Returns the
/// target's components (`..` kept, `.` and empty dropped).
fn link_target_components(link: &[String], target: &str) -> Result<Vec<String>, String> {
    let shown_target = shown(target);
    if target.is_empty() {
        return Err("it is a link with an empty target".into());
    }
    if target.len() > MAX_NAME_BYTES || target.contains('\0') {
        return Err("its link target is too long or contains a NUL character".into());
    }
    let normal = target.replace('\\', "/");
    let comps: Vec<String> = normal
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect();
    if normal.starts_with('/') || comps.first().is_some_and(|c| is_drive(c)) {
        return Err(format!(
            "it is a link to the absolute path '{shown_target}'"
        ));
    }
    let mut depth = link.len().saturating_sub(1);
    for c in &comps {
        if c == ".." {
            if depth == 0 {
                return Err(format!(
                    "it is a link to '{shown_target}', outside the target directory"
                ));
            }
            depth -= 1;
        } else {
            depth += 1;
        }
    }
    Ok(comps)
}

// ---------------------------------------------------------------------------------------------
// The staging directory

static STAGING_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh directory next to the destination; removed on drop unless renamed into place.
struct Staging {
    path: PathBuf,
    committed: bool,
}

impl Staging {
    fn new(dest: &Path) -> Result<Staging, ExtractError> {
        let destination = |reason: &str| ExtractError::Destination {
            path: dest.to_path_buf(),
            reason: reason.to_string(),
        };
        match fs::symlink_metadata(dest) {
            Ok(m) if m.is_dir() => {
                let mut listing = fs::read_dir(dest).map_err(io_error("read", dest))?;
                if listing.next().is_some() {
                    return Err(destination(
                        "it already exists and is not empty; extract into a new or empty directory",
                    ));
                }
            }
            Ok(_) => {
                return Err(destination(
                    "it already exists and is not a directory; extract into a new or empty directory",
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("inspect", dest)(e)),
        }
        if dest.file_name().is_none() {
            return Err(destination("it does not name a directory"));
        }
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(io_error("create the directory", &parent))?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let n = STAGING_COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = parent.join(format!(".ferry-extract-{}-{n}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => {
                    return Ok(Staging {
                        path,
                        committed: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 1000 => continue,
                Err(e) => return Err(io_error("create the staging directory", &path)(e)),
            }
        }
    }

    fn commit(mut self, dest: &Path) -> Result<(), ExtractError> {
        // An empty destination directory was accepted by `new`; rename replaces it on Unix.
        if cfg!(not(unix)) && dest.is_dir() {
            fs::remove_dir(dest).map_err(io_error("replace the empty directory", dest))?;
        }
        fs::rename(&self.path, dest).map_err(io_error("move the extracted files to", dest))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            // remove_dir_all does not follow symbolic links.
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writing entries

#[derive(Clone, Copy, PartialEq, Eq)]
enum Written {
    File,
    Symlink,
}

type ReadErrorMap<'a> = Box<dyn Fn(&str, io::Error) -> ExtractError + 'a>;

/// The tree being written inside the staging directory.
struct Tree<'a> {
    root: PathBuf,
    limits: &'a Limits,
    /// Directories known to be real directories (created or checked), by `a/b` key.
    dirs: HashSet<String>,
    written: HashMap<String, Written>,
    /// Links and their target components, checked again once every entry exists.
    links: Vec<(Vec<String>, Vec<String>, String)>,
    entries: u64,
    summary: ExtractSummary,
    read_error: ReadErrorMap<'a>,
}

impl<'a> Tree<'a> {
    fn new(root: PathBuf, limits: &'a Limits, read_error: ReadErrorMap<'a>) -> Tree<'a> {
        Tree {
            root,
            limits,
            dirs: HashSet::new(),
            written: HashMap::new(),
            links: Vec::new(),
            entries: 0,
            summary: ExtractSummary::default(),
            read_error,
        }
    }

    fn count_entries(&mut self, n: u64) -> Result<(), ExtractError> {
        self.entries = self.entries.saturating_add(n);
        if self.entries > self.limits.max_entries {
            return Err(ExtractError::LimitExceeded(format!(
                "it has more than {} entries",
                self.limits.max_entries
            )));
        }
        Ok(())
    }

    fn components(&self, name: &str) -> Result<Option<Vec<String>>, ExtractError> {
        entry_components(name, self.limits.max_depth).map_err(|reason| refused(name, reason))
    }

    /// Makes sure `comps` is a chain of real directories, creating what is missing; never
    /// follows or writes through a symbolic link.
    fn dir(&mut self, comps: &[String], name: &str) -> Result<PathBuf, ExtractError> {
        let mut path = self.root.clone();
        let mut key = String::new();
        for c in comps {
            path.push(c);
            if !key.is_empty() {
                key.push('/');
            }
            key.push_str(c);
            if self.dirs.contains(&key) {
                continue;
            }
            match fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(refused(
                        name,
                        format!(
                            "it would be written through the symbolic link '{}'",
                            shown(&key)
                        ),
                    ));
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(refused(
                        name,
                        format!(
                            "'{}' is a file in the archive, so it cannot hold other entries",
                            shown(&key)
                        ),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&path)
                        .map_err(|e| self.collision(e, &path, name, "create the directory"))?;
                    self.summary.directories += 1;
                }
                Err(e) => return Err(io_error("inspect", &path)(e)),
            }
            self.dirs.insert(key.clone());
        }
        Ok(path)
    }

    /// The parent directory of a new file or link, and the path to create; refuses names
    /// already written.
    fn prepare(&mut self, comps: &[String], name: &str) -> Result<PathBuf, ExtractError> {
        let key = comps.join("/");
        if self.written.contains_key(&key) || self.dirs.contains(&key) {
            return Err(refused(name, "it appears more than once in the archive"));
        }
        let (last, parent) = comps
            .split_last()
            .ok_or_else(|| refused(name, "it has no name"))?;
        Ok(self.dir(parent, name)?.join(last))
    }

    fn collision(
        &self,
        e: io::Error,
        path: &Path,
        name: &str,
        action: &'static str,
    ) -> ExtractError {
        if e.kind() != io::ErrorKind::AlreadyExists {
            return io_error(action, path)(e);
        }
        let reason = match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => "an earlier entry made a directory of this name",
            Ok(m) if m.file_type().is_symlink() => {
                "an earlier entry made a symbolic link of this name"
            }
            _ => {
                "it collides with an earlier entry (on this file system, names that differ only by case or Unicode normalisation are the same file)"
            }
        };
        refused(name, reason)
    }

    fn file(
        &mut self,
        comps: &[String],
        name: &str,
        data: &mut dyn Read,
        declared: u64,
        mode: Option<u32>,
    ) -> Result<(), ExtractError> {
        let remaining = self
            .limits
            .max_total_bytes
            .saturating_sub(self.summary.bytes);
        if declared > remaining {
            return Err(ExtractError::LimitExceeded(format!(
                "it would extract to more than {} bytes",
                self.limits.max_total_bytes
            )));
        }
        let path = self.prepare(comps, name)?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| self.collision(e, &path, name, "create the file"))?;
        self.written.insert(comps.join("/"), Written::File);
        let mut buf = vec![0u8; 64 * 1024];
        let mut total: u64 = 0;
        loop {
            let n = match data.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err((self.read_error)(name, e)),
            };
            total += n as u64;
            if total > declared {
                return Err((self.read_error)(
                    name,
                    io::Error::other(format!(
                        "the entry holds more data than the {declared} bytes its header declares"
                    )),
                ));
            }
            file.write_all(&buf[..n])
                .map_err(io_error("write", &path))?;
        }
        if total < declared {
            return Err((self.read_error)(
                name,
                io::Error::other(format!(
                    "the entry holds {total} bytes where its header declares {declared}; the archive is truncated or corrupt"
                )),
            ));
        }
        set_mode(&file, mode).map_err(io_error("set the permissions of", &path))?;
        self.summary.files += 1;
        self.summary.bytes += total;
        Ok(())
    }

    fn symlink(&mut self, comps: &[String], name: &str, target: &str) -> Result<(), ExtractError> {
        let target_comps =
            link_target_components(comps, target).map_err(|reason| refused(name, reason))?;
        let path = self.prepare(comps, name)?;
        let target_text = if target_comps.is_empty() {
            ".".to_string()
        } else {
            target_comps.join("/")
        };
        make_symlink(&target_text, &path).map_err(|e| match e {
            LinkError::Unsupported => {
                refused(name, "symbolic links are not supported on this platform")
            }
            LinkError::Io(e) => self.collision(e, &path, name, "create the symbolic link"),
        })?;
        self.written.insert(comps.join("/"), Written::Symlink);
        self.links
            .push((comps.to_vec(), target_comps, name.to_string()));
        self.summary.symlinks += 1;
        Ok(())
    }

    /// A hard link becomes a copy of the file it names, which must be a regular file extracted
    /// earlier from this archive.
    fn hard_link(
        &mut self,
        comps: &[String],
        name: &str,
        target: &str,
        mode: Option<u32>,
    ) -> Result<(), ExtractError> {
        let target_comps = match entry_components(target, self.limits.max_depth) {
            Ok(Some(c)) => c,
            Ok(None) => return Err(refused(name, "it is a hard link to the target directory")),
            Err(reason) => {
                return Err(refused(
                    name,
                    format!("it is a hard link to '{}': {reason}", shown(target)),
                ));
            }
        };
        let key = target_comps.join("/");
        if self.written.get(&key) != Some(&Written::File) {
            return Err(refused(
                name,
                format!(
                    "it is a hard link to '{}', which is not a file earlier in the archive",
                    shown(target)
                ),
            ));
        }
        let source = self.root.join(target_comps.join("/"));
        let meta = fs::symlink_metadata(&source).map_err(io_error("inspect", &source))?;
        if !meta.is_file() {
            return Err(refused(
                name,
                "it is a hard link to something that is not a file",
            ));
        }
        let mut reader = File::open(&source).map_err(io_error("open", &source))?;
        let local = move |_: &str, e: io::Error| ExtractError::Io {
            action: "read",
            path: source.clone(),
            source: e,
        };
        let saved = std::mem::replace(&mut self.read_error, Box::new(local));
        let result = self.file(comps, name, &mut reader, meta.len(), mode);
        self.read_error = saved;
        result
    }

    /// Every link must resolve inside the target: each directory its target passes through
    /// must be a real directory (not another link), which makes `..` mean what it says.
    fn check_links(&self) -> Result<(), ExtractError> {
        for (link, target, name) in &self.links {
            let mut at: Vec<&str> = link[..link.len().saturating_sub(1)]
                .iter()
                .map(String::as_str)
                .collect();
            for (i, c) in target.iter().enumerate() {
                if c == ".." {
                    at.pop();
                    continue;
                }
                at.push(c);
                if i + 1 == target.len() {
                    break;
                }
                let path = self.root.join(at.join("/"));
                match fs::symlink_metadata(&path) {
                    Ok(m) if m.file_type().is_symlink() => {
                        return Err(refused(
                            name,
                            format!(
                                "its link target passes through the symbolic link '{}'",
                                shown(&at.join("/"))
                            ),
                        ));
                    }
                    Ok(m) if m.is_dir() => {}
                    // Missing or a file: the link dangles, resolving nowhere.
                    _ => break,
                }
            }
        }
        Ok(())
    }
}

enum LinkError {
    #[cfg_attr(unix, allow(dead_code))]
    Unsupported,
    Io(io::Error),
}

#[cfg(unix)]
fn make_symlink(target: &str, path: &Path) -> Result<(), LinkError> {
    std::os::unix::fs::symlink(target, path).map_err(LinkError::Io)
}

#[cfg(not(unix))]
fn make_symlink(_target: &str, _path: &Path) -> Result<(), LinkError> {
    Err(LinkError::Unsupported)
}

/// Applies an archive's mode through the open handle (never by path): permission bits only,
/// no group or other write, and the owner can always read and write.
#[cfg(unix)]
fn set_mode(file: &File, mode: Option<u32>) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match mode {
        Some(mode) => file.set_permissions(fs::Permissions::from_mode((mode & 0o755) | 0o600)),
        None => Ok(()),
    }
}

#[cfg(not(unix))]
fn set_mode(_file: &File, _mode: Option<u32>) -> io::Result<()> {
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Extraction

/// Extracts `archive` (of the given format) into `dest`, which must not exist or be an empty
/// directory; its parent is created if missing. On any error nothing is left at `dest`.
pub fn extract(
    archive: &Path,
    format: PackageFormat,
    dest: &Path,
    limits: &Limits,
) -> Result<ExtractSummary, ExtractError> {
    check_format(archive, format)?;
    let archive_len = fs::metadata(archive)
        .map_err(io_error("inspect", archive))?
        .len();
    let staging = Staging::new(dest)?;
    let summary = match format {
        PackageFormat::Zip | PackageFormat::Nupkg => {
            extract_zip(archive, format, archive_len, &staging.path, limits)?
        }
        PackageFormat::Tar => {
            let file = File::open(archive).map_err(io_error("open", archive))?;
            extract_tar(
                BufReader::new(file),
                archive,
                format,
                None,
                &staging.path,
                limits,
            )?
        }
        PackageFormat::TarGz => {
            let file = File::open(archive).map_err(io_error("open", archive))?;
            let gz = flate2::read::MultiGzDecoder::new(BufReader::new(file));
            let stream_limit = archive_len
                .saturating_mul(limits.max_ratio)
                .max(RATIO_GRACE_BYTES);
            extract_tar(
                gz,
                archive,
                format,
                Some((stream_limit, archive_len)),
                &staging.path,
                limits,
            )?
        }
    };
    staging.commit(dest)?;
    Ok(summary)
}

fn corrupt(archive: &Path, format: PackageFormat, reason: impl ToString) -> ExtractError {
    ExtractError::Corrupt {
        path: archive.to_path_buf(),
        format,
        reason: reason.to_string(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ZipKind {
    Dir,
    File,
    Symlink,
    Skip,
}

struct ZipPlan {
    name: String,
    comps: Option<Vec<String>>,
    kind: ZipKind,
    size: u64,
    mode: Option<u32>,
}

fn extract_zip(
    archive: &Path,
    format: PackageFormat,
    archive_len: u64,
    root: &Path,
    limits: &Limits,
) -> Result<ExtractSummary, ExtractError> {
    let file = File::open(archive).map_err(io_error("open", archive))?;
    let mut zip =
        zip::ZipArchive::new(BufReader::new(file)).map_err(|e| corrupt(archive, format, e))?;

    // The zip reader keeps one entry per name; count the central directory's records to see
    // duplicates it would hide.
    let records = central_records(archive, zip.central_directory_start()).map_err(|e| {
        corrupt(
            archive,
            format,
            format!("reading the central directory: {e}"),
        )
    })?;
    let read_error: ReadErrorMap<'_> =
        Box::new(move |name, e| corrupt(archive, format, format!("entry '{}': {e}", shown(name))));
    let mut tree = Tree::new(root.to_path_buf(), limits, read_error);
    tree.count_entries(records.count.max(zip.len()) as u64)?;
    if let Some(name) = records.duplicate_file {
        return Err(refused(&name, "it appears more than once in the archive"));
    }
    if records.distinct != zip.len() {
        return Err(corrupt(
            archive,
            format,
            format!(
                "the central directory holds {} names but {} entries can be read",
                records.distinct,
                zip.len()
            ),
        ));
    }

    // Plan every entry and check the limits before writing anything.
    let mut plans = Vec::with_capacity(zip.len());
    let mut declared_total: u64 = 0;
    for i in 0..zip.len() {
        let entry = zip
            .by_index_raw(i)
            .map_err(|e| corrupt(archive, format, e))?;
        let mut name = entry.name().to_string();
        if format == PackageFormat::Nupkg {
            name = percent_decode(&name);
        }
        if entry.encrypted() {
            return Err(refused(&name, "it is encrypted"));
        }
        let mode = entry.unix_mode();
        let slash = name.ends_with('/') || name.ends_with('\\');
        let mut kind = match mode.map(|m| m & 0o170000).unwrap_or(0) {
            0 | 0o100000 if slash => ZipKind::Dir,
            0 | 0o100000 => ZipKind::File,
            0o040000 => ZipKind::Dir,
            0o120000 => ZipKind::Symlink,
            0o010000 => return Err(refused(&name, "it is a FIFO")),
            0o020000 => return Err(refused(&name, "it is a character device")),
            0o060000 => return Err(refused(&name, "it is a block device")),
            0o140000 => return Err(refused(&name, "it is a socket")),
            other => {
                return Err(refused(
                    &name,
                    format!("it has the unknown file type {other:o}"),
                ));
            }
        };
        if format == PackageFormat::Nupkg && is_nuget_metadata(&name) {
            kind = ZipKind::Skip;
        }
        let comps = if kind == ZipKind::Skip {
            None
        } else {
            tree.components(&name)?
        };
        if comps.is_none() && matches!(kind, ZipKind::File | ZipKind::Symlink) {
            return Err(refused(&name, "it has no name"));
        }
        if kind == ZipKind::File {
            declared_total = declared_total.saturating_add(entry.size());
        }
        plans.push(ZipPlan {
            name,
            comps,
            kind,
            size: entry.size(),
            mode,
        });
    }
    if declared_total > limits.max_total_bytes {
        return Err(ExtractError::LimitExceeded(format!(
            "it would extract to more than {} bytes",
            limits.max_total_bytes
        )));
    }
    let ratio_cap = archive_len
        .saturating_mul(limits.max_ratio)
        .max(RATIO_GRACE_BYTES);
    if declared_total > ratio_cap {
        return Err(ExtractError::LimitExceeded(format!(
            "it would expand more than {}:1 ({declared_total} bytes from a {archive_len}-byte archive), like a zip bomb",
            limits.max_ratio
        )));
    }

    for (i, plan) in plans.iter().enumerate() {
        let (kind, name) = (plan.kind, plan.name.as_str());
        let comps = match (&plan.comps, kind) {
            (_, ZipKind::Skip) => {
                tree.summary.skipped += 1;
                continue;
            }
            (None, _) => continue,
            (Some(c), _) => c,
        };
        match kind {
            ZipKind::Dir => {
                tree.dir(comps, name)?;
            }
            ZipKind::File => {
                // Sizes were summed from the central directory; `file` also stops at the
                // declared size, so a lying header cannot write more.
                let mut entry = zip.by_index(i).map_err(|e| corrupt(archive, format, e))?;
                tree.file(comps, name, &mut entry, plan.size, plan.mode)?;
            }
            ZipKind::Symlink => {
                let mut entry = zip.by_index(i).map_err(|e| corrupt(archive, format, e))?;
                let target = read_link_target(&mut entry).map_err(|e| {
                    corrupt(archive, format, format!("entry '{}': {e}", shown(name)))
                })?;
                let target = target
                    .ok_or_else(|| refused(name, "its link target is not UTF-8 or is too long"))?;
                tree.symlink(comps, name, &target)?;
            }
            ZipKind::Skip => {}
        }
    }
    tree.check_links()?;
    Ok(tree.summary)
}

/// A link target stored as an entry's content; `None` if longer than allowed or not UTF-8.
fn read_link_target(data: &mut dyn Read) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    data.take(MAX_NAME_BYTES as u64 + 1).read_to_end(&mut buf)?;
    if buf.len() > MAX_NAME_BYTES {
        return Ok(None);
    }
    Ok(String::from_utf8(buf).ok())
}

struct CentralRecords {
    count: usize,
    distinct: usize,
    /// A name other than a directory's (`x/`) that appears more than once.
    duplicate_file: Option<String>,
}

/// Reads the central directory's file headers from `start`: how many, how many distinct names,
/// and a repeated name that is not a directory.
fn central_records(archive: &Path, start: u64) -> io::Result<CentralRecords> {
    let mut r = BufReader::new(File::open(archive)?);
    r.seek(SeekFrom::Start(start))?;
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut duplicate = None;
    let mut count = 0usize;
    loop {
        let mut fixed = [0u8; 46];
        match r.read_exact(&mut fixed) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        if fixed[..4] != [0x50, 0x4b, 0x01, 0x02] {
            break;
        }
        let u16_at = |i: usize| u16::from_le_bytes([fixed[i], fixed[i + 1]]);
        let mut name = vec![0u8; usize::from(u16_at(28))];
        r.read_exact(&mut name)?;
        r.seek_relative(i64::from(u16_at(30)) + i64::from(u16_at(32)))?;
        count += 1;
        let is_dir = matches!(name.last(), Some(b'/' | b'\\'));
        if !seen.insert(name.clone()) && duplicate.is_none() && !is_dir {
            duplicate = Some(String::from_utf8_lossy(&name).into_owned());
        }
    }
    Ok(CentralRecords {
        count,
        distinct: seen.len(),
        duplicate_file: duplicate,
    })
}

/// NuGet's packaging parts, which Calamari does not extract: `_rels/`,
/// `package/services/metadata/`, `[Content_Types].xml`, `*.nupkg.sha512` and `*.nuspec`.
fn is_nuget_metadata(name: &str) -> bool {
    let n = name.replace('\\', "/").to_ascii_lowercase();
    let n = n.trim_start_matches("./");
    n.starts_with("_rels/")
        || n.starts_with("package/services/metadata/")
        || n == "[content_types].xml"
        || n.ends_with(".nupkg.sha512")
        || n.ends_with(".nuspec")
}

/// OPC (nupkg) names are percent-encoded (`My%20File.txt`); names that do not decode to UTF-8
/// are kept as written, as Calamari does. The decoded name is checked like any other.
fn percent_decode(name: &str) -> String {
    if !name.contains('%') {
        return name.to_string();
    }
    let b = name.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                None => return name.to_string(),
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| name.to_string())
}

/// Counts the bytes of the (decompressed) tar stream: stops it when the expansion limit is
/// passed, and when the headers before one entry grow past [`TAR_HEADER_BUDGET`].
struct Meter {
    read: Cell<u64>,
    /// Stream limit and the compressed size it derives from.
    limit: Option<(u64, u64)>,
    ratio: u64,
    header_from: Cell<Option<u64>>,
    hit: RefCell<Option<String>>,
}

impl Meter {
    fn fail(&self, reason: String) -> io::Error {
        let e = io::Error::other(reason.clone());
        *self.hit.borrow_mut() = Some(reason);
        e
    }
}

struct Metered<R> {
    inner: R,
    meter: Rc<Meter>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let m = &self.meter;
        let total = m.read.get().saturating_add(n as u64);
        m.read.set(total);
        if let Some(from) = m.header_from.get() {
            if total - from > TAR_HEADER_BUDGET {
                return Err(m.fail(format!(
                    "an entry's tar headers and extensions take more than {TAR_HEADER_BUDGET} bytes"
                )));
            }
        }
        if let Some((limit, compressed)) = m.limit {
            if total > limit {
                return Err(m.fail(format!(
                    "it expands more than {}:1 (past {limit} bytes from a {compressed}-byte archive), like a zip bomb",
                    m.ratio
                )));
            }
        }
        Ok(n)
    }
}

fn extract_tar<R: Read>(
    reader: R,
    archive: &Path,
    format: PackageFormat,
    limit: Option<(u64, u64)>,
    root: &Path,
    limits: &Limits,
) -> Result<ExtractSummary, ExtractError> {
    let meter = Rc::new(Meter {
        read: Cell::new(0),
        limit,
        ratio: limits.max_ratio,
        header_from: Cell::new(None),
        hit: RefCell::new(None),
    });
    let to_error = {
        let meter = meter.clone();
        move |name: Option<&str>, e: io::Error| match meter.hit.borrow_mut().take() {
            Some(reason) => ExtractError::LimitExceeded(reason),
            None => match name {
                Some(name) => corrupt(archive, format, format!("entry '{}': {e}", shown(name))),
                None => corrupt(archive, format, e),
            },
        }
    };
    let entry_error = to_error.clone();
    let mut tree = Tree::new(
        root.to_path_buf(),
        limits,
        Box::new(move |name, e| entry_error(Some(name), e)),
    );
    let mut tar = tar::Archive::new(Metered {
        inner: reader,
        meter: meter.clone(),
    });
    let mut entries = tar.entries().map_err(|e| to_error(None, e))?;
    loop {
        meter.header_from.set(Some(meter.read.get()));
        let next = entries.next();
        meter.header_from.set(None);
        let mut entry = match next {
            None => break,
            Some(Ok(entry)) => entry,
            Some(Err(e)) => return Err(to_error(None, e)),
        };
        tree.count_entries(1)?;
        let name = match std::str::from_utf8(&entry.path_bytes()) {
            Ok(s) => s.to_string(),
            Err(_) => {
                let lossy = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
                return Err(refused(&lossy, "its name is not valid UTF-8"));
            }
        };
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().ok();
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8(l.into_owned()));
        let link = || match &link {
            Some(Ok(l)) => Ok(l.clone()),
            Some(Err(_)) => Err(refused(&name, "its link target is not valid UTF-8")),
            None => Err(refused(&name, "it is a link without a target")),
        };
        use tar::EntryType as T;
        if kind == T::XGlobalHeader {
            drain(&mut entry).map_err(|e| to_error(Some(&name), e))?;
            tree.summary.skipped += 1;
            continue;
        }
        let comps = tree.components(&name)?;
        let is_dir = kind == T::Directory
            || (matches!(kind, T::Regular | T::Continuous) && name.ends_with('/'));
        match (kind, comps) {
            (_, Some(comps)) if is_dir => {
                tree.dir(&comps, &name)?;
                drain(&mut entry).map_err(|e| to_error(Some(&name), e))?;
            }
            (_, None) if is_dir => {
                drain(&mut entry).map_err(|e| to_error(Some(&name), e))?;
            }
            (_, None) => return Err(refused(&name, "it has no name")),
            (T::Regular | T::Continuous, Some(comps)) => {
                let size = entry.size();
                tree.file(&comps, &name, &mut entry, size, mode)?;
            }
            (T::Symlink, Some(comps)) => {
                let target = link()?;
                tree.symlink(&comps, &name, &target)?;
                drain(&mut entry).map_err(|e| to_error(Some(&name), e))?;
            }
            (T::Link, Some(comps)) => {
                let target = link()?;
                tree.hard_link(&comps, &name, &target, mode)?;
                drain(&mut entry).map_err(|e| to_error(Some(&name), e))?;
            }
            (T::Char, _) => return Err(refused(&name, "it is a character device")),
            (T::Block, _) => return Err(refused(&name, "it is a block device")),
            (T::Fifo, _) => return Err(refused(&name, "it is a FIFO")),
            (T::GNUSparse, _) => {
                return Err(refused(
                    &name,
                    "it is a sparse file, which Ferry does not extract",
                ));
            }
            (other, _) => {
                return Err(refused(
                    &name,
                    format!(
                        "it has the unsupported tar entry type '{}'",
                        other.as_byte() as char
                    ),
                ));
            }
        }
    }
    // Read to the end, so that a compressed stream's checksum and length are verified.
    drain(&mut tar.into_inner()).map_err(|e| to_error(None, e))?;
    tree.check_links()?;
    Ok(tree.summary)
}

/// Reads and discards what is left of an entry, so that the bytes are counted.
fn drain(data: &mut dyn Read) -> io::Result<u64> {
    io::copy(data, &mut io::sink())
}

// ---------------------------------------------------------------------------------------------
// Hashes

/// The SHA-1 (what Octopus reports as a package's `Hash`) and SHA-256 of a file, in lowercase
/// hex, and its size; reads the file once, in blocks.
pub fn hashes(path: &Path) -> io::Result<(String, String, u64)> {
    let mut file = File::open(path)?;
    let mut sha1 = sha1::Sha1::new();
    let mut sha256 = sha2::Sha256::new();
    let mut size: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        sha1.update(&buf[..n]);
        sha256.update(&buf[..n]);
        size += n as u64;
    }
    Ok((
        hex::encode(sha1.finalize()),
        hex::encode(sha256.finalize()),
        size,
    ))
}

// ---------------------------------------------------------------------------------------------
// Packing

/// What a pack wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PackSummary {
    pub files: u64,
    pub directories: u64,
    pub symlinks: u64,
    /// Bytes of file content packed.
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("Ferry packs zip, tar and tar.gz packages, not {0}")]
    UnsupportedFormat(PackageFormat),
    #[error("'{}' is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("'{}' cannot be packed: {reason}", path.display())]
    Unpackable { path: PathBuf, reason: String },
    #[error("could not {action} '{}': {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not write the zip archive '{}': {source}", path.display())]
    Zip {
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
}

fn pack_io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PackError + use<> {
    let path = path.to_path_buf();
    move |source| PackError::Io {
        action,
        path,
        source,
    }
}

enum Item {
    Dir(String),
    File {
        name: String,
        path: PathBuf,
        executable: bool,
        len: u64,
    },
    Symlink {
        name: String,
        target: String,
    },
}

/// Packs the contents of `dir` into `out` (zip, tar or tar.gz): entries sorted by name, times
/// and owners fixed, modes 644 or 755, so the same tree always gives the same bytes. Symbolic
/// links are stored as links when they stay inside `dir`; others are refused, as extraction
/// would refuse them. `out` may lie inside `dir`; it is not packed into itself.
pub fn pack(dir: &Path, out: &Path, format: PackageFormat) -> Result<PackSummary, PackError> {
    if format == PackageFormat::Nupkg {
        return Err(PackError::UnsupportedFormat(format));
    }
    let root = fs::canonicalize(dir).map_err(pack_io("open", dir))?;
    if !root.is_dir() {
        return Err(PackError::NotADirectory(dir.to_path_buf()));
    }
    let out_name = out
        .file_name()
        .ok_or_else(|| PackError::Unpackable {
            path: out.to_path_buf(),
            reason: "the output does not name a file".into(),
        })?
        .to_os_string();
    let out_parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let out_parent = fs::canonicalize(&out_parent).map_err(pack_io("open", &out_parent))?;
    let out_path = out_parent.join(&out_name);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(&out_name);
    tmp_name.push(format!(".ferry-pack-{}", std::process::id()));
    let tmp_path = out_parent.join(tmp_name);

    let mut items = Vec::new();
    walk(&root, &mut Vec::new(), &mut items, &[&out_path, &tmp_path])?;

    let result = match format {
        PackageFormat::Zip => write_zip(&tmp_path, &items),
        PackageFormat::Tar => {
            let file = File::create(&tmp_path).map_err(pack_io("create", &tmp_path));
            file.and_then(|f| write_tar(BufWriter::new(f), &tmp_path, &items))
                .and_then(|(w, s)| {
                    w.into_inner()
                        .map_err(|e| pack_io("write", &tmp_path)(e.into_error()))?
                        .sync_all()
                        .map_err(pack_io("write", &tmp_path))?;
                    Ok(s)
                })
        }
        PackageFormat::TarGz => {
            let file = File::create(&tmp_path).map_err(pack_io("create", &tmp_path));
            file.and_then(|f| {
                let gz = flate2::GzBuilder::new()
                    .mtime(0)
                    .write(BufWriter::new(f), flate2::Compression::default());
                write_tar(gz, &tmp_path, &items)
            })
            .and_then(|(gz, s)| {
                gz.finish()
                    .map_err(pack_io("write", &tmp_path))?
                    .into_inner()
                    .map_err(|e| pack_io("write", &tmp_path)(e.into_error()))?
                    .sync_all()
                    .map_err(pack_io("write", &tmp_path))?;
                Ok(s)
            })
        }
        PackageFormat::Nupkg => Err(PackError::UnsupportedFormat(format)),
    };
    match result {
        Ok(summary) => {
            fs::rename(&tmp_path, &out_path).map_err(pack_io("write", out))?;
            Ok(summary)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp_path);
            Err(e)
        }
    }
}

fn walk(
    dir: &Path,
    rel: &mut Vec<String>,
    items: &mut Vec<Item>,
    skip: &[&Path],
) -> Result<(), PackError> {
    let mut children: Vec<fs::DirEntry> = fs::read_dir(dir)
        .map_err(pack_io("read", dir))?
        .collect::<Result<_, _>>()
        .map_err(pack_io("read", dir))?;
    children.sort_by_key(|c| c.file_name());
    for child in children {
        let path = child.path();
        if skip.contains(&path.as_path()) {
            continue;
        }
        let unpackable = |reason: &str| PackError::Unpackable {
            path: path.clone(),
            reason: reason.to_string(),
        };
        let name = child
            .file_name()
            .into_string()
            .map_err(|_| unpackable("its name is not valid UTF-8"))?;
        if name.contains('\\') {
            return Err(unpackable(
                "its name holds a backslash, which extraction reads as a directory separator",
            ));
        }
        rel.push(name);
        let rel_name = rel.join("/");
        let meta = fs::symlink_metadata(&path).map_err(pack_io("inspect", &path))?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(&path).map_err(pack_io("read the link", &path))?;
            let target = target
                .into_os_string()
                .into_string()
                .map_err(|_| unpackable("its link target is not valid UTF-8"))?;
            link_target_components(rel, &target).map_err(|reason| PackError::Unpackable {
                path: path.clone(),
                reason: format!("{reason}; replace the link with a copy of what it points to"),
            })?;
            items.push(Item::Symlink {
                name: rel_name,
                target,
            });
        } else if ft.is_dir() {
            items.push(Item::Dir(rel_name));
            walk(&path, rel, items, skip)?;
        } else if ft.is_file() {
            items.push(Item::File {
                name: rel_name,
                path: path.clone(),
                executable: is_executable(&meta),
                len: meta.len(),
            });
        } else {
            return Err(unpackable("it is a device, FIFO or socket"));
        }
        rel.pop();
    }
    Ok(())
}

#[cfg(unix)]
fn is_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &fs::Metadata) -> bool {
    false
}

/// Reads exactly `len` bytes of a file, failing if it shrank while being packed.
fn exact(path: &Path, len: u64) -> Result<impl Read + use<>, PackError> {
    struct Exact<R> {
        inner: R,
        left: u64,
    }
    impl<R: Read> Read for Exact<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Ok(0);
            }
            let n = self.inner.read(buf)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file changed while it was being packed",
                ));
            }
            self.left -= n as u64;
            Ok(n)
        }
    }
    let file = File::open(path).map_err(pack_io("open", path))?;
    Ok(Exact {
        inner: file.take(len),
        left: len,
    })
}

fn write_zip(tmp: &Path, items: &[Item]) -> Result<PackSummary, PackError> {
    use zip::write::SimpleFileOptions;
    let zip_err = |source| PackError::Zip {
        path: tmp.to_path_buf(),
        source,
    };
    let file = File::create(tmp).map_err(pack_io("create", tmp))?;
    let mut zw = zip::ZipWriter::new(BufWriter::new(file));
    let base = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    let mut summary = PackSummary::default();
    for item in items {
        match item {
            Item::Dir(name) => {
                zw.add_directory(format!("{name}/"), base.unix_permissions(0o755))
                    .map_err(zip_err)?;
                summary.directories += 1;
            }
            Item::File {
                name,
                path,
                executable,
                len,
            } => {
                let options = base
                    .unix_permissions(if *executable { 0o755 } else { 0o644 })
                    .large_file(*len >= u64::from(u32::MAX));
                zw.start_file(name.as_str(), options).map_err(zip_err)?;
                let copied =
                    io::copy(&mut exact(path, *len)?, &mut zw).map_err(pack_io("read", path))?;
                summary.files += 1;
                summary.bytes += copied;
            }
            Item::Symlink { name, target } => {
                zw.add_symlink(name.as_str(), target.as_str(), base)
                    .map_err(zip_err)?;
                summary.symlinks += 1;
            }
        }
    }
    let writer = zw.finish().map_err(zip_err)?;
    writer
        .into_inner()
        .map_err(|e| pack_io("write", tmp)(e.into_error()))?
        .sync_all()
        .map_err(pack_io("write", tmp))?;
    Ok(summary)
}

fn write_tar<W: Write>(
    writer: W,
    tmp: &Path,
    items: &[Item],
) -> Result<(W, PackSummary), PackError> {
    let mut builder = tar::Builder::new(writer);
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    let mut summary = PackSummary::default();
    for item in items {
        match item {
            Item::Dir(name) => {
                let mut h = header(tar::EntryType::Directory, 0o755, 0);
                builder
                    .append_data(&mut h, name, io::empty())
                    .map_err(pack_io("write", tmp))?;
                summary.directories += 1;
            }
            Item::File {
                name,
                path,
                executable,
                len,
            } => {
                let mut h = header(
                    tar::EntryType::Regular,
                    if *executable { 0o755 } else { 0o644 },
                    *len,
                );
                builder
                    .append_data(&mut h, name, exact(path, *len)?)
                    .map_err(pack_io("write", tmp))?;
                summary.files += 1;
                summary.bytes += len;
            }
            Item::Symlink { name, target } => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                builder
                    .append_link(&mut h, name, target)
                    .map_err(pack_io("write", tmp))?;
                summary.symlinks += 1;
            }
        }
    }
    let writer = builder.into_inner().map_err(pack_io("write", tmp))?;
    Ok((writer, summary))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn names_are_checked() {
        let ok = |n: &str| entry_components(n, 128).unwrap().unwrap().join("/");
        assert_eq!(ok("a/b.txt"), "a/b.txt");
        assert_eq!(ok("./a//b/./c"), "a/b/c");
        assert_eq!(ok("dir\\file.txt"), "dir/file.txt");
        assert_eq!(ok("é/日本"), "é/日本");
        assert_eq!(entry_components("./", 128), Ok(None));
        for bad in [
            "../x",
            "a/../b",
            "/etc/passwd",
            "\\x",
            "C:\\x",
            "c:x",
            "a\\..\\..\\x",
            "a\0b",
        ] {
            assert!(entry_components(bad, 128).is_err(), "{bad}");
        }
        assert!(entry_components("a/b/c", 2).is_err());
    }

    #[test]
    fn link_targets_are_checked() {
        let link = |l: &str, t: &str| {
            let comps: Vec<String> = l.split('/').map(str::to_string).collect();
            link_target_components(&comps, t)
        };
        assert!(link("a/l", "../b").is_ok());
        assert!(link("a/l", "..").is_ok());
        assert!(link("l", ".").is_ok());
        assert!(link("l", "..").is_err());
        assert!(link("a/l", "../../x").is_err());
        assert!(link("a/l", "b/../../../x").is_err());
        assert!(link("l", "/tmp").is_err());
        assert!(link("l", "C:\\x").is_err());
        assert!(link("l", "").is_err());
    }

    #[test]
    fn sniffs() {
        assert_eq!(sniff(b"PK\x03\x04rest"), Some(PackageFormat::Zip));
        assert_eq!(sniff(&[0x1f, 0x8b, 8, 0]), Some(PackageFormat::TarGz));
        let mut h = tar::Header::new_old();
        h.set_path("a").unwrap();
        h.set_size(0);
        h.set_cksum();
        assert_eq!(sniff(h.as_bytes()), Some(PackageFormat::Tar));
        let mut u = tar::Header::new_ustar();
        u.set_path("a").unwrap();
        assert_eq!(sniff(u.as_bytes()), Some(PackageFormat::Tar));
        assert_eq!(sniff(b"hello"), None);
        assert_eq!(sniff(&[0u8; 512]), None);
        assert_eq!(describe(b"BZh91AY"), "a bzip2 file");
    }

    #[test]
    fn nuget_metadata_and_escapes() {
        for m in [
            "_rels/.rels",
            "[Content_Types].xml",
            "package/services/metadata/core-properties/x.psmdcp",
            "MyApp.nuspec",
            "x.nupkg.sha512",
        ] {
            assert!(is_nuget_metadata(m), "{m}");
        }
        for keep in ["lib/MyApp.dll", "package/other.txt", "content/_rels.txt"] {
            assert!(!is_nuget_metadata(keep), "{keep}");
        }
        assert_eq!(
            percent_decode("My%20File.txt"),
            "My%20File.txt".replace("%20", " ")
        );
        assert_eq!(percent_decode("%2e%2e/x"), "../x");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
        assert_eq!(percent_decode("%ff"), "%ff");
    }
}
