//! A sandbox that notices any change outside the extraction target, and writers for raw tar and
//! zip archives whose every field a test controls (the crates' own writers refuse evil names).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ferry_packages::archive::{self, ExtractError, ExtractSummary, Limits};
use ferry_packages::filename::PackageFormat;

/// A temporary directory holding `outside/` (a victim file and directory that extraction must
/// never touch) and `work/` (the archive, and `work/dest`, the extraction target).
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir_all(outside.join("dir")).unwrap();
        fs::write(outside.join("victim.txt"), "victim").unwrap();
        fs::create_dir(dir.path().join("work")).unwrap();
        Sandbox { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The absolute path of `outside/`.
    pub fn outside(&self) -> PathBuf {
        self.root().join("outside")
    }

    pub fn dest(&self) -> PathBuf {
        self.root().join("work").join("dest")
    }

    pub fn write_archive(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.root().join("work").join(name);
        fs::write(&path, bytes).unwrap();
        path
    }

    /// Everything in the sandbox except the target: type, mode (with setuid bits), size,
    /// content hash, link target and modification time.
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        walk(self.root(), self.root(), &self.dest(), &mut out);
        for system in ["/etc/passwd"] {
            if let Ok(m) = fs::symlink_metadata(system) {
                out.insert(system.to_string(), describe(Path::new(system), &m, false));
            }
        }
        out
    }

    /// Extracts `bytes` (written as `work/<name>`), asserting that nothing outside the target
    /// changed, that a failure leaves no target and no staging directory, and that a success
    /// left a tree that stays inside the target.
    pub fn extract(
        &self,
        name: &str,
        bytes: &[u8],
        format: PackageFormat,
        limits: &Limits,
    ) -> Result<ExtractSummary, ExtractError> {
        let archive = self.write_archive(name, bytes);
        let before = self.snapshot();
        let result = archive::extract(&archive, format, &self.dest(), limits);
        let after = self.snapshot();
        assert_eq!(
            before, after,
            "something outside the target changed ({result:?})"
        );
        match &result {
            Ok(_) => assert_inside(&self.dest()),
            Err(_) => assert!(
                fs::symlink_metadata(self.dest()).is_err(),
                "a failed extraction left {}",
                self.dest().display()
            ),
        }
        fs::remove_file(&archive).unwrap();
        result
    }

    /// Removes the target so that the sandbox can be used again.
    pub fn reset(&self) {
        if self.dest().exists() {
            fs::remove_dir_all(self.dest()).unwrap();
        }
    }
}

fn walk(root: &Path, dir: &Path, skip: &Path, out: &mut BTreeMap<String, String>) {
    let mut children: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    children.sort();
    for path in children {
        if path == skip {
            continue;
        }
        let m = fs::symlink_metadata(&path).unwrap();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        // The work directory's own time changes when the target is created; its listing is
        // compared through its children.
        let with_time = rel != "work";
        out.insert(rel, describe(&path, &m, with_time));
        if m.is_dir() {
            walk(root, &path, skip, out);
        }
    }
}

fn describe(path: &Path, m: &fs::Metadata, with_time: bool) -> String {
    use std::os::unix::fs::MetadataExt;
    let time = if with_time {
        format!(" t={}.{}", m.mtime(), m.mtime_nsec())
    } else {
        String::new()
    };
    let kind = if m.file_type().is_symlink() {
        format!("link -> {}", fs::read_link(path).unwrap().display())
    } else if m.is_dir() {
        "dir".to_string()
    } else if m.is_file() && m.len() < 1 << 20 && path != Path::new("/etc/passwd") {
        format!("file {:x}", fxhash(&fs::read(path).unwrap_or_default()))
    } else {
        "other".to_string()
    };
    format!(
        "{kind} mode={:o} len={} ino={}{time}",
        m.mode(),
        m.len(),
        m.ino()
    )
}

fn fxhash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// Every path under `dest` is a file, directory or link that resolves inside `dest` (or
/// nowhere), and no file has setuid, setgid, sticky or group/other write bits.
pub fn assert_inside(dest: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let canonical_dest = fs::canonicalize(dest).unwrap();
    let mut stack = vec![dest.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let m = fs::symlink_metadata(&path).unwrap();
            if m.file_type().is_symlink() {
                if let Ok(resolved) = fs::canonicalize(&path) {
                    assert!(
                        resolved.starts_with(&canonical_dest),
                        "{} resolves to {}, outside the target",
                        path.display(),
                        resolved.display()
                    );
                }
            } else if m.is_dir() {
                stack.push(path);
            } else {
                assert!(m.is_file(), "{} is not a regular file", path.display());
                let mode = m.permissions().mode();
                assert_eq!(mode & 0o7022, 0, "{} has mode {mode:o}", path.display());
            }
        }
    }
}

pub fn limits() -> Limits {
    Limits::default()
}

// ---------------------------------------------------------------------------------------------
// Raw tar

pub const REGULAR: u8 = b'0';
pub const HARD_LINK: u8 = b'1';
pub const SYMLINK: u8 = b'2';
pub const CHAR_DEVICE: u8 = b'3';
pub const BLOCK_DEVICE: u8 = b'4';
pub const DIRECTORY: u8 = b'5';
pub const FIFO: u8 = b'6';

/// A tar written block by block: names up to 100 bytes go in the header as given (no
/// checks), longer ones need [`RawTar::pax`].
#[derive(Default)]
pub struct RawTar {
    pub bytes: Vec<u8>,
}

impl RawTar {
    pub fn new() -> RawTar {
        RawTar::default()
    }

    pub fn file(mut self, name: &str, data: &[u8]) -> Self {
        self.push(name.as_bytes(), REGULAR, "", 0o644, data.len() as u64, data);
        self
    }

    pub fn file_mode(mut self, name: &str, mode: u32, data: &[u8]) -> Self {
        self.push(name.as_bytes(), REGULAR, "", mode, data.len() as u64, data);
        self
    }

    pub fn dir(mut self, name: &str) -> Self {
        self.push(name.as_bytes(), DIRECTORY, "", 0o755, 0, &[]);
        self
    }

    pub fn symlink(mut self, name: &str, target: &str) -> Self {
        self.push(name.as_bytes(), SYMLINK, target, 0o777, 0, &[]);
        self
    }

    pub fn hard_link(mut self, name: &str, target: &str) -> Self {
        self.push(name.as_bytes(), HARD_LINK, target, 0o644, 0, &[]);
        self
    }

    pub fn special(mut self, name: &str, kind: u8) -> Self {
        self.push(name.as_bytes(), kind, "", 0o644, 0, &[]);
        self
    }

    /// A PAX extended header (`x`) for the next entry.
    pub fn pax(mut self, records: &[(&str, &str)]) -> Self {
        let mut body = Vec::new();
        for (k, v) in records {
            let rest = format!(" {k}={v}\n");
            // The length counts its own digits.
            let mut len = rest.len() + 1;
            while format!("{len}{rest}").len() != len {
                len += 1;
            }
            body.extend_from_slice(format!("{len}{rest}").as_bytes());
        }
        self.push(b"././@PaxHeader", b'x', "", 0o644, body.len() as u64, &body);
        self
    }

    /// An entry whose header declares `size` whatever `data` holds.
    pub fn push(&mut self, name: &[u8], kind: u8, link: &str, mode: u32, size: u64, data: &[u8]) {
        self.bytes
            .extend_from_slice(&header(name, kind, link.as_bytes(), mode, size));
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.bytes.extend(std::iter::repeat_n(0u8, 1024));
        self.bytes
    }
}

pub fn header(name: &[u8], kind: u8, link: &[u8], mode: u32, size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    let put = |h: &mut [u8; 512], at: usize, len: usize, v: &[u8]| {
        let n = v.len().min(len);
        h[at..at + n].copy_from_slice(&v[..n]);
    };
    put(&mut h, 0, 100, name);
    put(&mut h, 100, 8, format!("{:07o}\0", mode).as_bytes());
    put(&mut h, 108, 8, b"0000000\0");
    put(&mut h, 116, 8, b"0000000\0");
    put(&mut h, 124, 12, format!("{:011o}\0", size).as_bytes());
    put(&mut h, 136, 12, b"00000000000\0");
    put(&mut h, 148, 8, b"        ");
    h[156] = kind;
    put(&mut h, 157, 100, link);
    put(&mut h, 257, 6, b"ustar\0");
    put(&mut h, 263, 2, b"00");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    put(&mut h, 148, 8, format!("{:06o}\0 ", sum).as_bytes());
    h
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Raw zip

/// One entry of a raw zip: every field as the test sets it.
#[derive(Clone)]
pub struct RawEntry {
    pub name: Vec<u8>,
    pub stored: Vec<u8>,
    pub method: u16,
    pub crc: u32,
    pub size: u32,
    pub compressed_size: u32,
    /// Unix mode including the file type, or 0 for none (DOS-made).
    pub mode: u32,
}

impl RawEntry {
    pub fn file(name: &str, data: &[u8]) -> RawEntry {
        RawEntry::with_mode(name, 0o100644, data)
    }

    pub fn with_mode(name: &str, mode: u32, data: &[u8]) -> RawEntry {
        RawEntry {
            name: name.as_bytes().to_vec(),
            stored: data.to_vec(),
            method: 0,
            crc: crc(data),
            size: data.len() as u32,
            compressed_size: data.len() as u32,
            mode,
        }
    }

    pub fn deflated(name: &str, data: &[u8]) -> RawEntry {
        let mut enc =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        let stored = enc.finish().unwrap();
        RawEntry {
            name: name.as_bytes().to_vec(),
            compressed_size: stored.len() as u32,
            stored,
            method: 8,
            crc: crc(data),
            size: data.len() as u32,
            mode: 0o100644,
        }
    }

    pub fn dir(name: &str) -> RawEntry {
        RawEntry::with_mode(name, 0o040755, &[])
    }

    pub fn symlink(name: &str, target: &str) -> RawEntry {
        RawEntry::with_mode(name, 0o120777, target.as_bytes())
    }
}

pub fn crc(data: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(data);
    c.sum()
}

pub fn raw_zip(entries: &[RawEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    let u16le = |v: &mut Vec<u8>, x: u16| v.extend_from_slice(&x.to_le_bytes());
    let u32le = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_le_bytes());
    for e in entries {
        let offset = out.len() as u32;
        u32le(&mut out, 0x04034b50);
        u16le(&mut out, 20);
        u16le(&mut out, 0x0800);
        u16le(&mut out, e.method);
        u16le(&mut out, 0);
        u16le(&mut out, 0x21);
        u32le(&mut out, e.crc);
        u32le(&mut out, e.compressed_size);
        u32le(&mut out, e.size);
        u16le(&mut out, e.name.len() as u16);
        u16le(&mut out, 0);
        out.extend_from_slice(&e.name);
        out.extend_from_slice(&e.stored);

        u32le(&mut central, 0x02014b50);
        u16le(&mut central, if e.mode == 0 { 20 } else { 0x0314 });
        u16le(&mut central, 20);
        u16le(&mut central, 0x0800);
        u16le(&mut central, e.method);
        u16le(&mut central, 0);
        u16le(&mut central, 0x21);
        u32le(&mut central, e.crc);
        u32le(&mut central, e.compressed_size);
        u32le(&mut central, e.size);
        u16le(&mut central, e.name.len() as u16);
        u16le(&mut central, 0);
        u16le(&mut central, 0);
        u16le(&mut central, 0);
        u16le(&mut central, 0);
        u32le(&mut central, e.mode << 16);
        u32le(&mut central, offset);
        central.extend_from_slice(&e.name);
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    u32le(&mut out, 0x06054b50);
    u16le(&mut out, 0);
    u16le(&mut out, 0);
    u16le(&mut out, entries.len() as u16);
    u16le(&mut out, entries.len() as u16);
    u32le(&mut out, central.len() as u32);
    u32le(&mut out, cd_offset);
    u16le(&mut out, 0);
    out
}
