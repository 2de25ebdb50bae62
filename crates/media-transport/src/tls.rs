//! Optional TLS for the mpUri WebSocket (`wss`), with rustls and its ring provider.

use std::fmt;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The PEM text holds no certificate, or no private key, or is malformed.
    #[error("bad PEM: {0}")]
    Pem(String),
    /// rustls refused the configuration.
    #[error("TLS configuration refused: {0}")]
    Config(#[from] rustls::Error),
    /// The server name is not a DNS name or IP address.
    #[error("invalid server name {0:?}")]
    ServerName(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // Named explicitly: with several providers compiled in, rustls has no process default.
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The endpoint's TLS settings (server side).
#[derive(Clone)]
pub struct TlsServer {
    acceptor: TlsAcceptor,
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsServer")
    }
}

impl TlsServer {
    /// From a complete rustls configuration.
    pub fn new(config: Arc<ServerConfig>) -> Self {
        TlsServer {
            acceptor: TlsAcceptor::from(config),
        }
    }

    /// From a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_chain)
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::Pem(e.to_string()))?;
        if certs.is_empty() {
            return Err(TlsError::Pem("no certificate".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::Pem(e.to_string()))?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        Ok(Self::new(Arc::new(config)))
    }

    pub(crate) async fn accept(
        &self,
        tcp: TcpStream,
    ) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
        self.acceptor.accept(tcp).await
    }
}

/// The service client's TLS settings.
#[derive(Clone)]
pub struct TlsClient {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TlsClient({:?})", self.server_name)
    }
}

impl TlsClient {
    /// From a complete rustls configuration; `server_name` is checked against the certificate.
    pub fn new(config: Arc<ClientConfig>, server_name: &str) -> Result<Self, TlsError> {
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| TlsError::ServerName(server_name.to_owned()))?;
        Ok(TlsClient {
            connector: TlsConnector::from(config),
            server_name,
        })
    }

    /// Trusting only the PEM certificates given (a private CA or a self-signed endpoint).
    pub fn trusting_pem(ca_pem: &[u8], server_name: &str) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            let cert = cert.map_err(|e| TlsError::Pem(e.to_string()))?;
            roots.add(cert)?;
        }
        if roots.is_empty() {
            return Err(TlsError::Pem("no certificate".into()));
        }
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self::new(Arc::new(config), server_name)
    }

    pub(crate) async fn connect(
        &self,
        tcp: TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        self.connector.connect(self.server_name.clone(), tcp).await
    }
}
