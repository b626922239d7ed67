//! Mutual TLS between the Ferry server and its agents, with certificate thumbprint pinning.
//!
//! Every server and agent holds a self-signed [`Identity`] (valid for 100 years, as Octopus's
//! certificates are). Each side pins the other by [`Thumbprint`]: the SHA-256 of the peer's
//! certificate DER, in uppercase hex, the value the API shows as `Thumbprint`. No CA is involved.
//!
//! [`server_config`] and [`client_config`] build rustls configurations (aws-lc-rs, TLS 1.3 and
//! 1.2 only) whose verifiers accept exactly the certificates in a [`PinSet`], verify the handshake
//! signatures with the certificate's public key, and ignore names and validity dates. A
//! [`PinSet`] is a shared handle: changes take effect on the next handshake. Session resumption is
//! turned off so that every connection is verified against the current pins. A rejected peer
//! fails the handshake with a [`PinMismatch`] naming the presented thumbprint; find it in an
//! error with [`pin_mismatch`]. See `docs/tls.md`.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use base64::Engine;
use rand::Rng;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    ServerConfig, SignatureScheme,
};
use sha2::{Digest, Sha256};

use crate::Secret;

/// Validity of generated certificates: 100 years, as Octopus issues them.
pub const CERT_VALIDITY: Duration = Duration::from_secs(100 * 365 * 24 * 3600 + 25 * 24 * 3600);
/// Generated certificates start this long before "now", to tolerate clock skew.
const BACKDATE: Duration = Duration::from_secs(24 * 3600);

/// TLS versions offered: 1.3 preferred, 1.2 as the minimum.
static PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Errors from identities, pins and TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("could not generate the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("invalid PEM: {0}")]
    Pem(String),
    #[error("invalid thumbprint {0:?}: expected 64 hexadecimal digits (SHA-256)")]
    InvalidThumbprint(String),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The key algorithm of a generated identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 with SHA-256 (the default; widely supported).
    #[default]
    EcdsaP256,
    /// Ed25519 (TLS 1.3 only in practice; fine between Ferry peers).
    Ed25519,
}

impl KeyAlgorithm {
    fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }
}

/// The SHA-256 thumbprint of a certificate's DER encoding: 64 uppercase hex digits.
///
/// This is Ferry's pin type. Parsing accepts lower case and ignores `:` and spaces.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Thumbprint(String);

impl Thumbprint {
    /// The thumbprint of a DER-encoded certificate.
    pub fn of_der(cert_der: &[u8]) -> Self {
        Thumbprint(hex::encode_upper(Sha256::digest(cert_der)))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Thumbprint {
    type Err = TlsError;
    fn from_str(s: &str) -> Result<Self, TlsError> {
        let cleaned: String = s
            .chars()
            .filter(|c| *c != ':' && !c.is_whitespace())
            .collect();
        if cleaned.len() != 64 || !cleaned.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(TlsError::InvalidThumbprint(s.to_string()));
        }
        Ok(Thumbprint(cleaned.to_ascii_uppercase()))
    }
}

/// A self-signed certificate and its private key: the identity of a server or an agent.
///
/// `Debug` never prints the private key. Sealing the key at rest is the caller's job.
pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    thumbprint: Thumbprint,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            cert: self.cert.clone(),
            key: self.key.clone_key(),
            thumbprint: self.thumbprint.clone(),
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("thumbprint", &self.thumbprint)
            .field("key", &"***")
            .finish()
    }
}

impl Identity {
    /// A new server identity, subject CN "Ferry Server", ECDSA P-256, valid for 100 years.
    pub fn generate_server() -> Result<Self, TlsError> {
        Self::generate("Ferry Server", KeyAlgorithm::EcdsaP256)
    }

    /// A new agent identity, subject CN "Ferry Agent <name>", ECDSA P-256, valid for 100 years.
    pub fn generate_agent(name: &str) -> Result<Self, TlsError> {
        Self::generate(&format!("Ferry Agent {name}"), KeyAlgorithm::EcdsaP256)
    }

    /// A new identity with the given subject CN and key algorithm, valid for 100 years.
    pub fn generate(common_name: &str, algorithm: KeyAlgorithm) -> Result<Self, TlsError> {
        let not_before = SystemTime::now() - BACKDATE;
        Self::generate_with_validity(
            common_name,
            algorithm,
            not_before,
            not_before + CERT_VALIDITY,
        )
    }

    /// A new identity with explicit validity dates (tests of expired or future certificates).
    pub fn generate_with_validity(
        common_name: &str,
        algorithm: KeyAlgorithm,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Self, TlsError> {
        let key_pair = rcgen::KeyPair::generate_for(algorithm.rcgen())?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.not_before = time::OffsetDateTime::from(not_before);
        params.not_after = time::OffsetDateTime::from(not_after);
        let mut serial: [u8; 16] = rand::rng().random();
        serial[0] &= 0x7f; // a positive INTEGER
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let cert = params.self_signed(&key_pair)?;
        let cert_der = cert.der().clone();
        let key = PrivatePkcs8KeyDer::from(key_pair.serialize_der());
        Ok(Identity {
            thumbprint: Thumbprint::of_der(&cert_der),
            cert: cert_der,
            key,
        })
    }

    /// Loads an identity from a PEM certificate and a PEM PKCS#8 private key ("PRIVATE KEY"),
    /// checking that the key belongs to the certificate.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| TlsError::Pem(format!("certificate: {e}")))?;
        let key = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| TlsError::Pem(format!("private key (PKCS#8 expected): {e}")))?;
        rustls::sign::CertifiedKey::from_der(
            vec![cert.clone()],
            PrivateKeyDer::Pkcs8(key.clone_key()),
            &provider(),
        )?;
        Ok(Identity {
            thumbprint: Thumbprint::of_der(&cert),
            cert,
            key,
        })
    }

    /// The certificate and the private key as PEM (`CERTIFICATE`, `PRIVATE KEY` in PKCS#8).
    pub fn to_pem(&self) -> (String, Secret) {
        (
            self.cert_pem(),
            Secret::new(pem_encode("PRIVATE KEY", self.key.secret_pkcs8_der())),
        )
    }

    /// The certificate as PEM; public, safe to show.
    pub fn cert_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.cert)
    }

    /// The certificate's DER encoding.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert
    }

    /// The pin other parties use to trust this identity.
    pub fn thumbprint(&self) -> &Thumbprint {
        &self.thumbprint
    }

    fn chain_and_key(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (
            vec![self.cert.clone()],
            PrivateKeyDer::Pkcs8(self.key.clone_key()),
        )
    }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A set of trusted thumbprints, shared by handle: clones see the same set, and a change takes
/// effect on the next handshake of every config built from it. Holding two pins lets a peer
/// rotate its key without an outage.
#[derive(Clone, Default)]
pub struct PinSet(Arc<RwLock<BTreeSet<Thumbprint>>>);

impl fmt::Debug for PinSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.snapshot()).finish()
    }
}

impl<I: IntoIterator<Item = Thumbprint>> From<I> for PinSet {
    fn from(pins: I) -> Self {
        PinSet(Arc::new(RwLock::new(pins.into_iter().collect())))
    }
}

impl PinSet {
    /// An empty set (trusts nobody).
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a pin; true if it was not there.
    pub fn insert(&self, pin: Thumbprint) -> bool {
        self.write().insert(pin)
    }
    /// Removes a pin; true if it was there.
    pub fn remove(&self, pin: &Thumbprint) -> bool {
        self.write().remove(pin)
    }
    /// Replaces the whole set atomically.
    pub fn replace(&self, pins: impl IntoIterator<Item = Thumbprint>) {
        *self.write() = pins.into_iter().collect();
    }
    pub fn contains(&self, pin: &Thumbprint) -> bool {
        self.read().contains(pin)
    }
    /// The current pins, sorted.
    pub fn snapshot(&self) -> Vec<Thumbprint> {
        self.read().iter().cloned().collect()
    }

    // A poisoned lock still holds a consistent set (every write is a single operation).
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeSet<Thumbprint>> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeSet<Thumbprint>> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Which side presented the rejected certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// The TLS server (a listening agent, or the server's polling endpoint).
    Server,
    /// The TLS client (the server dialling a listening agent, or a polling agent).
    Client,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Peer::Server => "server",
            Peer::Client => "client",
        })
    }
}

/// A peer presented a certificate whose thumbprint is not pinned. Do not retry; audit
/// `presented`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the {peer} presented a certificate with thumbprint {presented}, which is not in the list of thumbprints we trust"
)]
pub struct PinMismatch {
    pub peer: Peer,
    pub presented: Thumbprint,
}

/// Finds the [`PinMismatch`] behind a handshake error (a `rustls::Error`, or the `io::Error`
/// tokio-rustls wraps it in), walking `source()` chains.
pub fn pin_mismatch(err: &(dyn std::error::Error + 'static)) -> Option<PinMismatch> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(m) = e.downcast_ref::<PinMismatch>() {
            return Some(m.clone());
        }
        if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) =
            e.downcast_ref::<rustls::Error>()
        {
            if let Some(m) = other.0.downcast_ref::<PinMismatch>() {
                return Some(m.clone());
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                let inner: &(dyn std::error::Error + 'static) = inner;
                if let Some(m) = pin_mismatch(inner) {
                    return Some(m);
                }
            }
        }
        cur = e.source();
    }
    None
}

fn provider() -> CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

/// Checks a presented end-entity certificate against the pins. Validity dates, names and
/// intermediates are ignored: the pin is the whole trust decision.
fn check_pin(
    pins: &PinSet,
    peer: Peer,
    end_entity: &CertificateDer<'_>,
) -> Result<(), rustls::Error> {
    let presented = Thumbprint::of_der(end_entity);
    if pins.contains(&presented) {
        Ok(())
    } else {
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(PinMismatch { peer, presented })),
        )))
    }
}

#[derive(Debug)]
struct PinnedServerVerifier {
    pins: PinSet,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        check_pin(&self.pins, Peer::Server, end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[derive(Debug)]
struct PinnedClientVerifier {
    pins: PinSet,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PinnedClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        check_pin(&self.pins, Peer::Client, end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A TLS server config presenting `identity` and requiring a client certificate whose
/// thumbprint is in `trusted_client_pins` (read at each handshake).
pub fn server_config(
    identity: &Identity,
    trusted_client_pins: PinSet,
) -> Result<ServerConfig, TlsError> {
    server_config_with_versions(identity, trusted_client_pins, PROTOCOL_VERSIONS)
}

fn server_config_with_versions(
    identity: &Identity,
    trusted_client_pins: PinSet,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let verifier = Arc::new(PinnedClientVerifier {
        pins: trusted_client_pins,
        algorithms: provider.signature_verification_algorithms,
    });
    let (chain, key) = identity.chain_and_key();
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    // A resumed session skips certificate verification, so a removed pin would keep working.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// A TLS client config presenting `identity` and accepting only a server certificate whose
/// thumbprint is in `trusted_server_pins` (read at each handshake). The server name passed to
/// `connect` is not checked; any valid name or the peer's IP address will do.
pub fn client_config(
    identity: &Identity,
    trusted_server_pins: PinSet,
) -> Result<ClientConfig, TlsError> {
    client_config_with_versions(identity, trusted_server_pins, PROTOCOL_VERSIONS)
}

fn client_config_with_versions(
    identity: &Identity,
    trusted_server_pins: PinSet,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let verifier = Arc::new(PinnedServerVerifier {
        pins: trusted_server_pins,
        algorithms: provider.signature_verification_algorithms,
    });
    let (chain, key) = identity.chain_and_key();
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(chain, key)?;
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
