//! Keeping a TLS identity in a directory: `<name>.crt.pem` and `<name>.key.pem` (mode 0600).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ferry_crypto::tls::Identity;

/// Loads `<dir>/<name>.crt.pem` + `.key.pem`, or `None` when the certificate does not exist.
pub fn load(dir: &Path, name: &str) -> Result<Option<Identity>, String> {
    let cert = dir.join(format!("{name}.crt.pem"));
    let key = dir.join(format!("{name}.key.pem"));
    if !cert.exists() {
        return Ok(None);
    }
    let c = std::fs::read_to_string(&cert)
        .map_err(|e| format!("could not read {}: {e}", cert.display()))?;
    let k = std::fs::read_to_string(&key)
        .map_err(|e| format!("could not read {}: {e}", key.display()))?;
    Identity::from_pem(&c, &k)
        .map(Some)
        .map_err(|e| format!("the identity in {} is unusable: {e}", dir.display()))
}

/// Writes an identity; the key file is created with mode 0600 and synced.
pub fn save(dir: &Path, name: &str, id: &Identity) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("could not create {}: {e}", dir.display()))?;
    let (cert, key) = id.to_pem();
    let write = |file: &str, body: &str, mode: u32| -> Result<(), String> {
        let path = dir.join(file);
        let tmp = dir.join(format!(".{file}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| format!("could not write {}: {e}", tmp.display()))?;
        f.write_all(body.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| format!("could not write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &path).map_err(|e| format!("could not write {}: {e}", path.display()))
    };
    write(&format!("{name}.key.pem"), key.expose(), 0o600)?;
    write(&format!("{name}.crt.pem"), &cert, 0o644)
}

/// Loads the identity, making and saving a new one first if there is none.
pub fn load_or_create(
    dir: &Path,
    name: &str,
    make: impl FnOnce() -> Result<Identity, String>,
) -> Result<(Identity, bool), String> {
    if let Some(id) = load(dir, name)? {
        return Ok((id, false));
    }
    let id = make()?;
    save(dir, name, &id)?;
    Ok((id, true))
}
