//! TLS settings from PEM files: what `--tls-cert`/`--tls-key` load at start-up and what
//! SIGHUP loads again. Runs on the main or signal thread (file I/O), never the reactor.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::path::Path;
use std::sync::Arc;

/// Reads a certificate chain and its private key and builds the server's TLS settings:
/// TLS 1.2 and 1.3, ALPN `http/1.1`.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let cert_pem = std::fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
    let key_pem = std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?;
    from_pem(&cert_pem, &key_pem)
        .map_err(|e| format!("{} / {}: {e}", cert.display(), key.display()))
}

pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad certificate PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in the certificate file".into());
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("bad private key PEM: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not fit: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Where Debian (and most Linux systems) keep the trusted roots, one PEM bundle.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The PEM roots a client trusts: `cacert` (a private CA), else `SSL_CERT_FILE`, else the
/// system bundle.
pub fn root_pem(cacert: Option<&Path>) -> Result<Vec<u8>, String> {
    let path = match cacert {
        Some(p) => p.to_path_buf(),
        None => std::env::var_os("SSL_CERT_FILE")
            .map(Into::into)
            .unwrap_or_else(|| SYSTEM_ROOTS.into()),
    };
    std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
}

/// TLS settings for the CLI and the load generator: the given roots, ALPN `http/1.1`.
pub fn client_config(roots_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(roots_pem) {
        let cert = cert.map_err(|e| format!("bad CA PEM: {e}"))?;
        // A bundle may hold certificates webpki cannot use; the rest still count.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err("no usable CA certificate".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A client connection to `host` (a name or an IP address in the certificate).
pub fn client_connection(
    cfg: &Arc<rustls::ClientConfig>,
    host: &str,
) -> Result<rustls::ClientConnection, String> {
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("bad server name {host:?}: {e}"))?;
    rustls::ClientConnection::new(Arc::clone(cfg), name).map_err(|e| e.to_string())
}
