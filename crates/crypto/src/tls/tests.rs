use super::*;

#[test]
fn thumbprint_format_and_parse() {
    let id = Identity::generate_agent("web-01").expect("generate");
    let t = id.thumbprint().as_str();
    assert_eq!(t.len(), 64);
    assert!(
        t.chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
    );
    assert_eq!(*id.thumbprint(), Thumbprint::of_der(id.cert_der()));
    let lower_colons: String = t
        .to_ascii_lowercase()
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":");
    assert_eq!(
        &lower_colons.parse::<Thumbprint>().expect("parse"),
        id.thumbprint()
    );
    assert!("ABC".parse::<Thumbprint>().is_err());
    assert!("G".repeat(64).parse::<Thumbprint>().is_err());
}

#[test]
fn pem_round_trip_and_key_mismatch() {
    for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519] {
        let id = Identity::generate("Ferry Server", alg).expect("generate");
        let (cert, key) = id.to_pem();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(key.expose().starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let back = Identity::from_pem(&cert, key.expose()).expect("from_pem");
        assert_eq!(back.thumbprint(), id.thumbprint());
        assert!(!format!("{back:?}").contains("PRIVATE"));
    }
    let a = Identity::generate_server().expect("a");
    let b = Identity::generate_server().expect("b");
    assert_ne!(a.thumbprint(), b.thumbprint());
    let (cert_a, _) = a.to_pem();
    let (_, key_b) = b.to_pem();
    assert!(Identity::from_pem(&cert_a, key_b.expose()).is_err());
    assert!(Identity::from_pem("junk", "junk").is_err());
}

#[test]
fn pin_set_is_shared() {
    let t1 = Identity::generate_server().expect("g").thumbprint().clone();
    let t2 = Identity::generate_server().expect("g").thumbprint().clone();
    let set = PinSet::from([t1.clone()]);
    let handle = set.clone();
    assert!(handle.insert(t2.clone()));
    assert!(set.contains(&t2));
    assert!(set.remove(&t1));
    assert!(!handle.contains(&t1));
    handle.replace([]);
    assert!(set.snapshot().is_empty());
}

// ---- mutual TLS over real loopback TCP ----

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

struct Outcome {
    /// The server side: handshake, then the application reads 4 bytes and answers "pong".
    server: std::io::Result<()>,
    /// What the client read back.
    client: std::io::Result<Vec<u8>>,
    /// Bytes the server's application read: must stay 0 when a handshake is refused.
    app_bytes: usize,
    /// The TLS version the server negotiated, when the handshake completed.
    version: Option<rustls::ProtocolVersion>,
}

async fn exchange(server_cfg: ServerConfig, client_cfg: ClientConfig) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app_bytes = Arc::new(AtomicUsize::new(0));
    let counter = app_bytes.clone();
    let version = Arc::new(std::sync::Mutex::new(None));
    let version_slot = version.clone();
    let acceptor = TlsAcceptor::from(Arc::new(server_cfg));
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = acceptor.accept(tcp).await?;
        *version_slot.lock().unwrap() = tls.get_ref().1.protocol_version();
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        counter.fetch_add(buf.len(), Ordering::SeqCst);
        tls.write_all(b"pong").await?;
        tls.shutdown().await?;
        Ok::<(), std::io::Error>(())
    });
    let connector = TlsConnector::from(Arc::new(client_cfg));
    let client = async {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("ferry-peer").unwrap();
        let mut tls = connector.connect(name, tcp).await?;
        tls.write_all(b"ping").await?;
        tls.flush().await?;
        let mut out = Vec::new();
        tls.read_to_end(&mut out).await?;
        Ok(out)
    };
    let client = tokio::time::timeout(Duration::from_secs(20), client)
        .await
        .expect("client timed out");
    let server = tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("server timed out")
        .expect("server task");
    Outcome {
        server,
        client,
        app_bytes: app_bytes.load(Ordering::SeqCst),
        version: *version.lock().unwrap(),
    }
}

fn pins(ids: &[&Identity]) -> PinSet {
    PinSet::from(ids.iter().map(|i| i.thumbprint().clone()))
}

async fn connect(
    server: &Identity,
    trusts: &PinSet,
    agent: &Identity,
    agent_trusts: &PinSet,
) -> Outcome {
    exchange(
        server_config(server, trusts.clone()).unwrap(),
        client_config(agent, agent_trusts.clone()).unwrap(),
    )
    .await
}

fn assert_ok(o: &Outcome) {
    assert!(o.server.is_ok(), "server: {:?}", o.server);
    assert_eq!(o.client.as_ref().expect("client"), b"pong");
    assert_eq!(o.app_bytes, 4);
    assert!(o.version.is_some());
}

/// Refused: the server's application read nothing, and the refusing side's error names `presented`.
fn assert_refused(
    o: &Outcome,
    refusing_side_error: Option<&std::io::Error>,
    peer: Peer,
    presented: &Thumbprint,
) {
    assert_eq!(o.app_bytes, 0, "the application read bytes");
    assert!(o.server.is_err(), "server accepted");
    assert!(o.client.is_err(), "client completed");
    let err = refusing_side_error.expect("refusing side failed");
    let m = pin_mismatch(err).unwrap_or_else(|| panic!("no PinMismatch in {err:?}"));
    assert_eq!(m.peer, peer);
    assert_eq!(&m.presented, presented);
    assert!(err.to_string().contains(presented.as_str()), "{err}");
}

#[tokio::test]
async fn mutual_tls_succeeds_and_bytes_flow() {
    let server = Identity::generate_server().unwrap();
    let agent = Identity::generate_agent("web-01").unwrap();
    let o = connect(&server, &pins(&[&agent]), &agent, &pins(&[&server])).await;
    assert_ok(&o);
    assert_eq!(o.version, Some(rustls::ProtocolVersion::TLSv1_3));
}

#[tokio::test]
async fn ed25519_identities_work() {
    let server = Identity::generate("Ferry Server", KeyAlgorithm::Ed25519).unwrap();
    let agent = Identity::generate("Ferry Agent ed", KeyAlgorithm::Ed25519).unwrap();
    let o = connect(&server, &pins(&[&agent]), &agent, &pins(&[&server])).await;
    assert_ok(&o);
}

#[tokio::test]
async fn tls12_works_and_verifies_signatures() {
    let server = Identity::generate_server().unwrap();
    let agent = Identity::generate_agent("old-stack").unwrap();
    let tls12 = &[&rustls::version::TLS12];
    let o = exchange(
        server_config_with_versions(&server, pins(&[&agent]), tls12).unwrap(),
        client_config(&agent, pins(&[&server])).unwrap(),
    )
    .await;
    assert_ok(&o);
    assert_eq!(o.version, Some(rustls::ProtocolVersion::TLSv1_2));
    // And a wrong pin is refused over TLS 1.2 too.
    let stranger = Identity::generate_agent("stranger").unwrap();
    let o = exchange(
        server_config_with_versions(&server, pins(&[&agent]), tls12).unwrap(),
        client_config_with_versions(&stranger, pins(&[&server]), tls12).unwrap(),
    )
    .await;
    assert_refused(
        &o,
        o.server.as_ref().err(),
        Peer::Client,
        stranger.thumbprint(),
    );
}

#[tokio::test]
async fn wrong_server_pin_is_refused_by_the_client() {
    let server = Identity::generate_server().unwrap();
    // Same subject, different key: only the thumbprint tells them apart.
    let impostor = Identity::generate_server().unwrap();
    let agent = Identity::generate_agent("web-01").unwrap();
    let o = connect(&impostor, &pins(&[&agent]), &agent, &pins(&[&server])).await;
    assert_refused(
        &o,
        o.client.as_ref().err(),
        Peer::Server,
        impostor.thumbprint(),
    );
}

#[tokio::test]
async fn wrong_client_pin_is_refused_by_the_server() {
    let server = Identity::generate_server().unwrap();
    let agent = Identity::generate_agent("web-01").unwrap();
    let stranger = Identity::generate_agent("web-01").unwrap();
    let o = connect(&server, &pins(&[&agent]), &stranger, &pins(&[&server])).await;
    assert_refused(
        &o,
        o.server.as_ref().err(),
        Peer::Client,
        stranger.thumbprint(),
    );
}

#[tokio::test]
async fn empty_pin_sets_trust_nobody() {
    let server = Identity::generate_server().unwrap();
    let agent = Identity::generate_agent("web-01").unwrap();
    let o = connect(&server, &PinSet::new(), &agent, &pins(&[&server])).await;
    assert_refused(
        &o,
        o.server.as_ref().err(),
        Peer::Client,
        agent.thumbprint(),
    );
    let o = connect(&server, &pins(&[&agent]), &agent, &PinSet::new()).await;
    assert_refused(
        &o,
        o.client.as_ref().err(),
        Peer::Server,
        server.thumbprint(),
    );
}

/// Accepts any server certificate (still checking handshake signatures): a client that does
/// not pin, to test the server's side alone.
#[derive(Debug)]
struct AnyServer(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(m, c, d, &self.0)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(m, c, d, &self.0)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let server = Identity::generate_server().unwrap();
    let agent = Identity::generate_agent("web-01").unwrap();
    let p = provider();
    let algs = p.signature_verification_algorithms;
    let anonymous = ClientConfig::builder_with_provider(Arc::new(p))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(algs)))
        .with_no_client_auth();
    let o = exchange(server_config(&server, pins(&[&agent])).unwrap(), anonymous).await;
    assert_eq!(o.app_bytes, 0);
    let err = o
        .server
        .as_ref()
        .expect_err("server accepted an anonymous client");
    assert!(err.to_string().contains("no certificates"), "{err}");
    assert!(pin_mismatch(err).is_none());
    assert!(o.client.is_err());
}

#[tokio::test]
async fn rotation_of_agent_keys() {
    let server = Identity::generate_server().unwrap();
    let old = Identity::generate_agent("web-01").unwrap();
    let new = Identity::generate_agent("web-01").unwrap();
    let trusted = pins(&[&old, &new]);
    // One config for the whole test: pin changes must apply to the next handshake.
    let server_cfg = Arc::new(server_config(&server, trusted.clone()).unwrap());
    let server_pins = pins(&[&server]);
    for agent in [&old, &new] {
        let o = exchange(
            (*server_cfg).clone(),
            client_config(agent, server_pins.clone()).unwrap(),
        )
        .await;
        assert_ok(&o);
    }
    assert!(trusted.remove(old.thumbprint()));
    let o = exchange(
        (*server_cfg).clone(),
        client_config(&old, server_pins.clone()).unwrap(),
    )
    .await;
    assert_refused(&o, o.server.as_ref().err(), Peer::Client, old.thumbprint());
    let o = exchange(
        (*server_cfg).clone(),
        client_config(&new, server_pins.clone()).unwrap(),
    )
    .await;
    assert_ok(&o);
}

#[tokio::test]
async fn rotation_of_the_server_key() {
    let old = Identity::generate_server().unwrap();
    let new = Identity::generate_server().unwrap();
    let agent = Identity::generate_agent("web-01").unwrap();
    let agent_pins = pins(&[&agent]);
    let agent_trusts = pins(&[&old]);
    let client_cfg = client_config(&agent, agent_trusts.clone()).unwrap();
    // Step 1: agents learn the new server thumbprint as well.
    assert!(agent_trusts.insert(new.thumbprint().clone()));
    // Step 2: the server switches key; the agent's existing config accepts both.
    for server in [&old, &new] {
        let o = exchange(
            server_config(server, agent_pins.clone()).unwrap(),
            client_cfg.clone(),
        )
        .await;
        assert_ok(&o);
    }
    // Step 3: the old thumbprint is removed.
    agent_trusts.remove(old.thumbprint());
    let o = exchange(
        server_config(&old, agent_pins.clone()).unwrap(),
        client_cfg.clone(),
    )
    .await;
    assert_refused(&o, o.client.as_ref().err(), Peer::Server, old.thumbprint());
}

#[tokio::test]
async fn pinning_ignores_validity_dates() {
    let day = Duration::from_secs(24 * 3600);
    let now = SystemTime::now();
    let expired = Identity::generate_with_validity(
        "Ferry Agent expired",
        KeyAlgorithm::EcdsaP256,
        now - 400 * day,
        now - day,
    )
    .unwrap();
    let future = Identity::generate_with_validity(
        "Ferry Server future",
        KeyAlgorithm::EcdsaP256,
        now + day,
        now + 400 * day,
    )
    .unwrap();
    // Pinned: accepted despite the dates (the pin is the trust decision; see docs/tls.md).
    let o = connect(&future, &pins(&[&expired]), &expired, &pins(&[&future])).await;
    assert_ok(&o);
    // Not pinned: refused as any other unknown certificate.
    let server = Identity::generate_server().unwrap();
    let o = connect(&server, &pins(&[&future]), &expired, &pins(&[&server])).await;
    assert_refused(
        &o,
        o.server.as_ref().err(),
        Peer::Client,
        expired.thumbprint(),
    );
}

/// A server config that presents `cert_of`'s certificate but signs with `key_of`'s key.
fn stolen_cert_config(
    cert_of: &Identity,
    key_of: &Identity,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> ServerConfig {
    let (chain, _) = cert_of.chain_and_key();
    let (_, key) = key_of.chain_and_key();
    let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).unwrap();
    let certified = rustls::sign::CertifiedKey::new(chain, signer);
    ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)))
}

#[tokio::test]
async fn a_pinned_certificate_without_its_key_is_refused() {
    // The attacker replays the pinned server's (public) certificate but cannot sign with its key:
    // the handshake signature check must fail even though the thumbprint matches.
    let server = Identity::generate_server().unwrap();
    let attacker = Identity::generate_server().unwrap();
    let agent = Identity::generate_agent("web-01").unwrap();
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let o = exchange(
            stolen_cert_config(&server, &attacker, versions),
            client_config(&agent, pins(&[&server])).unwrap(),
        )
        .await;
        assert_eq!(o.app_bytes, 0);
        let err = o
            .client
            .as_ref()
            .expect_err("client accepted a forged handshake");
        assert!(pin_mismatch(err).is_none());
        assert!(
            err.to_string().to_lowercase().contains("signature"),
            "{err}"
        );
    }
}
