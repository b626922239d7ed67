//! Ferry's secrets: the master key, API keys (shown once, stored as SHA-256 hashes), passwords
//! (Argon2id), and a `Secret` newtype whose `Debug` never prints the value.

pub mod tls;

use std::fmt;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use rand::Rng;
use sha2::{Digest, Sha256};

/// A secret string. `Debug` and `Display` print a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The value itself; call sites are where a secret is deliberately used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the master key must be 32 bytes encoded as base64 (44 characters); got {0} bytes")]
    BadMasterKeyLength(usize),
    #[error("the master key is not valid base64")]
    BadMasterKeyEncoding,
    #[error("password hashing failed")]
    Hash,
}

/// The 256-bit master key that seals sensitive values.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl MasterKey {
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rng().fill(&mut k);
        MasterKey(k)
    }

    /// Parses the base64 form (as kept in the key file or `FERRY_MASTER_KEY`).
    pub fn from_base64(s: &str) -> Result<Self, CryptoError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|_| CryptoError::BadMasterKeyEncoding)?;
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::BadMasterKeyLength(bytes.len()))?;
        Ok(MasterKey(arr))
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// A short public fingerprint of the key (to check two nodes share one key).
    pub fn fingerprint(&self) -> String {
        hex::encode(&Sha256::digest(self.0)[..8])
    }
}

const KEY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// A new API key: `API-` and 32 uppercase letters and digits (the Go CLI accepts only
/// `^API-[A-Z0-9]+$`).
pub fn generate_api_key() -> Secret {
    let mut rng = rand::rng();
    let body: String = (0..32)
        .map(|_| KEY_ALPHABET[rng.random_range(0..KEY_ALPHABET.len())] as char)
        .collect();
    Secret(format!("API-{body}"))
}

/// Whether `s` has the shape of an API key: `API-` and at least 26 uppercase letters or digits.
pub fn is_valid_api_key(s: &str) -> bool {
    s.strip_prefix("API-").is_some_and(|rest| {
        rest.len() >= 26
            && rest
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    })
}

/// The stored form of an API key. Keys have 160+ bits of entropy, so one SHA-256 is enough and
/// lets the server look a key up by its hash.
pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A random password of 20 letters and digits.
pub fn generate_password() -> Secret {
    const ALPHA: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    Secret(
        (0..20)
            .map(|_| ALPHA[rng.random_range(0..ALPHA.len())] as char)
            .collect(),
    )
}

/// Hashes a password with Argon2id into a PHC string.
pub fn hash_password(password: &str) -> Result<String, CryptoError> {
    let mut salt_bytes = [0u8; 16];
    rand::rng().fill(&mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|_| CryptoError::Hash)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| CryptoError::Hash)
}

/// Checks a password against a PHC string; any malformed hash is a mismatch.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys() {
        let k = generate_api_key();
        assert!(is_valid_api_key(k.expose()));
        assert!(!is_valid_api_key("API-short"));
        assert!(!is_valid_api_key("API-abcdefghijklmnopqrstuvwxyz12"));
        assert!(is_valid_api_key("API-ABCDEFGHIJKLMNOPQRSTUVWXYZ"));
        assert_eq!(hash_api_key("API-X").len(), 64);
        assert_eq!(format!("{k:?}"), "Secret(***)");
    }

    #[test]
    fn master_key_round_trip() {
        let k = MasterKey::generate();
        let k2 = MasterKey::from_base64(&k.to_base64()).ok();
        assert_eq!(k2.map(|k| k.fingerprint()), Some(k.fingerprint()));
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
        assert!(MasterKey::from_base64("!!").is_err());
    }

    #[test]
    fn passwords() {
        let p = generate_password();
        let h = hash_password(p.expose()).unwrap_or_default();
        assert!(verify_password(p.expose(), &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not-a-hash"));
    }
}

/// The prefix of a sealed value: format version 1 (XChaCha20-Poly1305 under the master key).
const SEALED_PREFIX: &str = "FERRY1:";

/// Sealing failures. The message never contains the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the sealed value is not in Ferry's format")]
    Format,
    #[error("the sealed value cannot be opened with this master key or does not belong here")]
    Open,
}

/// Seals `plaintext` under the master key, bound to `aad` (what the value belongs to, e.g. a
/// variable's owner and id): a sealed value copied to another row does not open.
pub fn seal(key: &MasterKey, aad: &[u8], plaintext: &str) -> String {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};
    let cipher = XChaCha20Poly1305::new((&key.0).into());
    let mut nonce = [0u8; 24];
    rand::rng().fill(&mut nonce);
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext.as_bytes(),
                aad,
            },
        )
        .unwrap_or_default();
    let mut blob = Vec::with_capacity(24 + ct.len());
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&ct);
    format!(
        "{SEALED_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

/// Opens a value sealed by `seal` with the same key and `aad`.
pub fn open(key: &MasterKey, aad: &[u8], sealed: &str) -> Result<String, SealError> {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};
    let b64 = sealed
        .strip_prefix(SEALED_PREFIX)
        .ok_or(SealError::Format)?;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| SealError::Format)?;
    if blob.len() < 24 + 16 {
        return Err(SealError::Format);
    }
    let (nonce, ct) = blob.split_at(24);
    let cipher = XChaCha20Poly1305::new((&key.0).into());
    let pt = cipher
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
        .map_err(|_| SealError::Open)?;
    String::from_utf8(pt).map_err(|_| SealError::Open)
}

/// The binding of a sensitive variable value: its variable set's owner (project or library
/// set) and the variable's id, so release snapshots (same owner and id) open it and nothing
/// else does.
/// Additional data binding an account's sealed secret to the account and the field.
pub fn account_aad(account_id: &str, field: &str) -> Vec<u8> {
    format!("ferry/account/{account_id}/{field}").into_bytes()
}

pub fn variable_aad(owner_id: &str, variable_id: &str) -> Vec<u8> {
    format!("ferry/variable/{owner_id}/{variable_id}").into_bytes()
}

#[cfg(test)]
mod seal_tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_binding() {
        let k = MasterKey::generate();
        let aad = variable_aad("Projects-1", "v1");
        let s = seal(&k, &aad, "p@ss word ü");
        assert!(s.starts_with("FERRY1:"));
        assert!(!s.contains("p@ss"));
        assert_eq!(open(&k, &aad, &s).as_deref(), Ok("p@ss word ü"));
        assert_eq!(
            open(&k, &variable_aad("Projects-2", "v1"), &s),
            Err(SealError::Open)
        );
        assert_eq!(open(&MasterKey::generate(), &aad, &s), Err(SealError::Open));
        assert_eq!(open(&k, &aad, "FERRY1:!!"), Err(SealError::Format));
        assert_eq!(open(&k, &aad, "plain"), Err(SealError::Format));
        assert_ne!(
            seal(&k, &aad, "x"),
            seal(&k, &aad, "x"),
            "fresh nonce each time"
        );
    }
}
