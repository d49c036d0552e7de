//! Certificates and QUIC endpoints with mutual TLS.
//!
//! A cluster has one certificate authority. Every node (coordinator or
//! worker) holds a certificate the CA signed and trusts only that CA, both
//! as a server and as a client: a node whose certificate comes from another
//! CA cannot connect, and cannot be connected to. `flinkw cert` makes a
//! development CA and node certificates; production clusters can bring
//! their own (PEM files with the same names).
//!
//! A node's folder holds `ca.pem` (the CA certificate), `node.pem` and
//! `node.key` (its own certificate and key). The CA's folder also holds
//! `ca.key`, which only `flinkw cert node` needs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The name every node's certificate carries and every connection asks for.
pub const SERVER_NAME: &str = "flinkw";
/// The protocol a flinkw endpoint speaks (TLS ALPN).
const ALPN: &[u8] = b"flinkw/1";
/// Bytes a receiver buffers per stream before the sender waits: the
/// credit of one channel.
const STREAM_WINDOW: u32 = 2 << 20;

/// Why certificates or an endpoint could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Making or using a certificate failed.
    #[error("certificate: {0}")]
    Certificate(String),
    /// Opening the QUIC endpoint failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

fn cert_err(e: impl std::fmt::Display) -> TlsError {
    TlsError::Certificate(e.to_string())
}

fn write(path: &Path, text: &str) -> Result<(), TlsError> {
    std::fs::write(path, text).map_err(|source| TlsError::Io { path: path.to_owned(), source })
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io { path: path.to_owned(), source })
}

/// The CA's parameters: the same every time, so the CA certificate can be
/// rebuilt from its key to sign node certificates.
fn ca_params() -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    params.distinguished_name.push(DnType::CommonName, "flinkw development CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

/// Makes a new certificate authority in `dir`: `ca.pem` and `ca.key`.
pub fn create_ca(dir: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Io { path: dir.to_owned(), source })?;
    let key = KeyPair::generate().map_err(cert_err)?;
    let cert = ca_params()?.self_signed(&key).map_err(cert_err)?;
    write(&dir.join("ca.pem"), &cert.pem())?;
    write(&dir.join("ca.key"), &key.serialize_pem())?;
    restrict(&dir.join("ca.key"));
    Ok(())
}

/// Makes a certificate for node `name`, signed by the CA in `ca_dir`, into
/// `out`: `node.pem`, `node.key` and a copy of `ca.pem`. The certificate is
/// valid for the name, `localhost`, [`SERVER_NAME`] and `extra_names`
/// (host names or IP addresses).
pub fn create_node(
    ca_dir: &Path,
    name: &str,
    extra_names: &[String],
    out: &Path,
) -> Result<(), TlsError> {
    let ca_key_path = ca_dir.join("ca.key");
    let ca_key = KeyPair::from_pem(&read(&ca_key_path)?)
        .map_err(|e| TlsError::Pem { path: ca_key_path, reason: e.to_string() })?;
    let ca_pem = read(&ca_dir.join("ca.pem"))?;
    let ca = ca_params()?.self_signed(&ca_key).map_err(cert_err)?;
    let mut names = vec![name.to_owned(), "localhost".to_owned(), SERVER_NAME.to_owned()];
    names.extend(extra_names.iter().filter(|n| n.parse::<IpAddr>().is_err()).cloned());
    names.dedup();
    let mut params = CertificateParams::new(names).map_err(cert_err)?;
    params.distinguished_name.push(DnType::CommonName, name);
    for ip in [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)]
        .into_iter()
        .chain(extra_names.iter().filter_map(|n| n.parse().ok()))
    {
        params.subject_alt_names.push(SanType::IpAddress(ip));
    }
    params.extended_key_usages =
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().map_err(cert_err)?;
    let cert = params.signed_by(&key, &ca, &ca_key).map_err(cert_err)?;
    std::fs::create_dir_all(out).map_err(|source| TlsError::Io { path: out.to_owned(), source })?;
    write(&out.join("node.pem"), &cert.pem())?;
    write(&out.join("node.key"), &key.serialize_pem())?;
    restrict(&out.join("node.key"));
    write(&out.join("ca.pem"), &ca_pem)
}

/// Makes a key readable by its owner only.
fn restrict(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
}

/// A node's certificate, key and the CA it trusts, loaded from its folder.
pub struct Identity {
    ca: Vec<CertificateDer<'static>>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Loads `ca.pem`, `node.pem` and `node.key` from `dir`.
    pub fn load(dir: &Path) -> Result<Identity, TlsError> {
        let certs = |name: &str| -> Result<Vec<CertificateDer<'static>>, TlsError> {
            let path = dir.join(name);
            let text = read(&path)?;
            let certs: Vec<_> = CertificateDer::pem_slice_iter(text.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| TlsError::Pem { path: path.clone(), reason: e.to_string() })?;
            if certs.is_empty() {
                return Err(TlsError::Pem { path, reason: "no certificate in the file".into() });
            }
            Ok(certs)
        };
        let key_path = dir.join("node.key");
        let key = PrivateKeyDer::from_pem_slice(read(&key_path)?.as_bytes())
            .map_err(|e| TlsError::Pem { path: key_path, reason: e.to_string() })?;
        Ok(Identity { ca: certs("ca.pem")?, chain: certs("node.pem")?, key })
    }

    fn roots(&self) -> Result<rustls::RootCertStore, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for c in &self.ca {
            roots.add(c.clone()).map_err(cert_err)?;
        }
        Ok(roots)
    }

    /// A QUIC endpoint on `bind` that accepts only peers with a certificate
    /// from this node's CA, and presents this node's certificate when it
    /// connects out.
    pub fn endpoint(&self, bind: SocketAddr) -> Result<quinn::Endpoint, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(self.roots()?),
            provider.clone(),
        )
        .build()
        .map_err(cert_err)?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(cert_err)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(cert_err)?;
        server.alpn_protocols = vec![ALPN.to_vec()];
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(cert_err)?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(cert_err)?;
        client.alpn_protocols = vec![ALPN.to_vec()];
        let transport = Arc::new(transport());
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(
            QuicServerConfig::try_from(server).map_err(cert_err)?,
        ));
        server.transport_config(transport.clone());
        let mut client = quinn::ClientConfig::new(Arc::new(
            QuicClientConfig::try_from(client).map_err(cert_err)?,
        ));
        client.transport_config(transport);
        let mut endpoint = quinn::Endpoint::server(server, bind)
            .map_err(|source| TlsError::Bind { addr: bind, source })?;
        endpoint.set_default_client_config(client);
        Ok(endpoint)
    }
}

/// Flow control and liveness of every flinkw connection: a bounded window
/// per stream (the credit of one channel), keep-alives, and an idle timeout
/// after which a silent peer counts as gone.
fn transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.stream_receive_window(quinn::VarInt::from_u32(STREAM_WINDOW));
    t.receive_window(quinn::VarInt::from_u32(STREAM_WINDOW * 32));
    t.send_window(u64::from(STREAM_WINDOW) * 32);
    t.max_concurrent_uni_streams(quinn::VarInt::from_u32(4096));
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(256));
    t.keep_alive_interval(Some(Duration::from_millis(500)));
    t.max_idle_timeout(Some(quinn::VarInt::from_u32(5_000).into()));
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_certificates_load_back() {
        let dir = tempfile::tempdir().unwrap();
        create_ca(&dir.path().join("ca")).unwrap();
        create_node(&dir.path().join("ca"), "w1", &["10.0.0.5".into()], &dir.path().join("w1"))
            .unwrap();
        let id = Identity::load(&dir.path().join("w1")).unwrap();
        assert_eq!(id.ca.len(), 1);
        assert_eq!(id.chain.len(), 1);
        assert!(matches!(
            Identity::load(&dir.path().join("nope")),
            Err(TlsError::Io { path, .. }) if path.ends_with("nope/node.key")
        ));
    }
}
