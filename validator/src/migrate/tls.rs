//! The authenticated, encrypted migration channel: mutual TLS 1.3
//! (rustls with the ring provider) with certificates given on the command
//! line, and the connection type both ends read and write frames through.
//!
//! Both ends present a certificate signed by the CA they are given and
//! accept only a peer whose certificate chains to that CA; the destination
//! must present the name [`DESTINATION_NAME`]. The handshake completes right
//! after the TCP connection, before the first frame: a peer that is not
//! authenticated (no certificate, another CA, not TLS at all) is refused
//! before the source reads a guest page for sending (it reads none before
//! the destination's `HelloAck`) and before the destination writes one.
//! `scripts/tls-keygen.sh DIR` makes a CA and the two certificates.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection, StreamOwned};

/// The name the destination's certificate must carry (its DNS subject
/// alternative name): VMMs are reached by address, so the name is fixed.
pub const DESTINATION_NAME: &str = "memfabric-destination";

/// The TLS files of one end.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// The CA (PEM) the peer's certificate must chain to; with --tls-cert
    /// and --tls-key turns mutual TLS 1.3 on.
    #[arg(long = "tls-ca", requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,
    /// This end's certificate chain (PEM).
    #[arg(long = "tls-cert", requires = "tls_ca")]
    pub tls_cert: Option<PathBuf>,
    /// This end's private key (PEM, PKCS#8, SEC1 or PKCS#1).
    #[arg(long = "tls-key", requires = "tls_ca")]
    pub tls_key: Option<PathBuf>,
}

/// A CA, a certificate and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificate(s), PEM.
    pub ca: PathBuf,
    /// This end's certificate chain, PEM.
    pub cert: PathBuf,
    /// This end's private key, PEM.
    pub key: PathBuf,
}

impl TlsArgs {
    /// The files, if TLS is on.
    pub fn files(&self) -> Option<TlsFiles> {
        match (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            (Some(ca), Some(cert), Some(key)) => Some(TlsFiles { ca: ca.clone(), cert: cert.clone(), key: key.clone() }),
            _ => None,
        }
    }
}

impl TlsFiles {
    /// The files `scripts/tls-keygen.sh` writes in `dir` for one side
    /// (`source` or `destination`).
    pub fn in_dir(dir: &Path, side: &str) -> TlsFiles {
        TlsFiles { ca: dir.join("ca.pem"), cert: dir.join(format!("{side}.pem")), key: dir.join(format!("{side}.key")) }
    }

    /// The arguments of the hidden `source` and `dest` commands.
    pub fn to_cli(&self) -> Vec<std::ffi::OsString> {
        vec![
            "--tls-ca".into(),
            self.ca.clone().into(),
            "--tls-cert".into(),
            self.cert.clone().into(),
            "--tls-key".into(),
            self.key.clone().into(),
        ]
    }
}

/// TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file is missing, unreadable or malformed.
    #[error("{}: {what}: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        what: &'static str,
        /// Why it could not be used.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A PEM file holds no certificate.
    #[error("{}: no certificate in it (expected PEM \"CERTIFICATE\" blocks)", .0.display())]
    NoCertificate(PathBuf),
    /// rustls refused the certificates or key.
    #[error("{context}: {source}")]
    Config {
        /// What was being set up.
        context: String,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// The client verifier could not be built from the CA.
    #[error("{}: {source}", path.display())]
    Verifier {
        /// The CA file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
}

fn certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |source| TlsError::Pem { path: path.to_path_buf(), what, source };
    let certs = CertificateDer::pem_file_iter(path).map_err(pem)?.collect::<Result<Vec<_>, _>>().map_err(pem)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs(path, "CA certificate")? {
        roots.add(c).map_err(|source| TlsError::Config { context: format!("{}: CA certificate", path.display()), source })?;
    }
    Ok(roots)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::Pem { path: path.to_path_buf(), what: "private key", source })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config_err(files: &TlsFiles) -> impl Fn(rustls::Error) -> TlsError + '_ {
    move |source| TlsError::Config { context: format!("{} with {}", files.cert.display(), files.key.display()), source }
}

/// The source's side: trusts `ca` for the destination, presents `cert`.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_err(files))?
        .with_root_certificates(roots(&files.ca)?)
        .with_client_auth_cert(certs(&files.cert, "certificate")?, key(&files.key)?)
        .map_err(config_err(files))?;
    Ok(Arc::new(cfg))
}

/// The destination's side: requires a client certificate chaining to `ca`,
/// presents `cert`.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots(&files.ca)?), provider())
        .build()
        .map_err(|source| TlsError::Verifier { path: files.ca.clone(), source })?;
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_err(files))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&files.cert, "certificate")?, key(&files.key)?)
        .map_err(config_err(files))?;
    Ok(Arc::new(cfg))
}

/// One end of a TLS connection.
#[derive(Debug)]
pub enum TlsStream {
    /// The source's.
    Client(StreamOwned<ClientConnection, TcpStream>),
    /// The destination's.
    Server(StreamOwned<ServerConnection, TcpStream>),
}

/// The migration connection: plain TCP or TLS. Frames are read and written
/// through handles ([`Conn::handle`]) to the same connection, from one
/// thread (the exchange is strictly sequential at each end).
#[derive(Debug)]
pub enum Conn {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS 1.3 over TCP.
    Tls(Rc<RefCell<TlsStream>>),
}

impl Conn {
    /// Another handle to the same connection.
    pub fn handle(&self) -> std::io::Result<Conn> {
        Ok(match self {
            Conn::Plain(s) => Conn::Plain(s.try_clone()?),
            Conn::Tls(t) => Conn::Tls(t.clone()),
        })
    }

    /// The source's end: completes the handshake on `tcp`, or fails.
    pub fn client(cfg: &Arc<ClientConfig>, mut tcp: TcpStream) -> std::io::Result<Conn> {
        let name = ServerName::try_from(DESTINATION_NAME).expect("a valid DNS name");
        let mut conn = ClientConnection::new(cfg.clone(), name).map_err(std::io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        Ok(Conn::Tls(Rc::new(RefCell::new(TlsStream::Client(StreamOwned::new(conn, tcp))))))
    }

    /// The destination's end: completes the handshake on `tcp` (the peer's
    /// certificate verified), or fails.
    pub fn server(cfg: &Arc<ServerConfig>, mut tcp: TcpStream) -> std::io::Result<Conn> {
        let mut conn = ServerConnection::new(cfg.clone()).map_err(std::io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        Ok(Conn::Tls(Rc::new(RefCell::new(TlsStream::Server(StreamOwned::new(conn, tcp))))))
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(t) => match &mut *t.borrow_mut() {
                TlsStream::Client(s) => s.read(buf),
                TlsStream::Server(s) => s.read(buf),
            },
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(t) => match &mut *t.borrow_mut() {
                TlsStream::Client(s) => s.write(buf),
                TlsStream::Server(s) => s.write(buf),
            },
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(t) => match &mut *t.borrow_mut() {
                TlsStream::Client(s) => s.flush(),
                TlsStream::Server(s) => s.flush(),
            },
        }
    }
}
