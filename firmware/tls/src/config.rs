//! rustls configurations for both ends of a tunnel.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::crypto::ring as ring_provider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {problem}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// rustls refused the material (wrong key for the certificate, bad CA …).
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built (bad CA or CRL).
    #[error("client verifier: {0}")]
    Verifier(String),
}

/// Which AEAD the endpoint prefers; TLS 1.3 only either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CipherPreference {
    /// AES-GCM first where this CPU has AES and carry-less multiply
    /// instructions (x86 AES-NI, ARMv8 crypto extensions: a Pi 5),
    /// ChaCha20-Poly1305 first where it has not (a Pi 4). The client's
    /// order decides, so the box's own CPU chooses.
    #[default]
    Auto,
    /// ChaCha20-Poly1305 first: fast in software (Raspberry Pi 4, no AES-NI).
    Chacha20,
    /// AES-GCM first: for hosts with AES instructions.
    Aes,
}

impl CipherPreference {
    /// `Auto` decided for this CPU.
    pub fn resolve(self) -> Self {
        match self {
            CipherPreference::Auto if aes_in_hardware() => CipherPreference::Aes,
            CipherPreference::Auto => CipherPreference::Chacha20,
            other => other,
        }
    }
}

/// Whether this CPU has the instructions that make AES-GCM fast.
fn aes_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// The `ring` provider with TLS 1.3 suites in the preferred order.
pub fn provider(pref: CipherPreference) -> Arc<CryptoProvider> {
    use ring_provider::cipher_suite::{
        TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256,
    };
    let cipher_suites = match pref.resolve() {
        CipherPreference::Auto | CipherPreference::Chacha20 => vec![
            TLS13_CHACHA20_POLY1305_SHA256,
            TLS13_AES_256_GCM_SHA384,
            TLS13_AES_128_GCM_SHA256,
        ],
        CipherPreference::Aes => vec![
            TLS13_AES_128_GCM_SHA256,
            TLS13_AES_256_GCM_SHA384,
            TLS13_CHACHA20_POLY1305_SHA256,
        ],
    };
    Arc::new(CryptoProvider {
        cipher_suites,
        ..ring_provider::default_provider()
    })
}

fn file_err(path: &Path, problem: impl ToString) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        problem: problem.to_string(),
    }
}

/// Every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect();
    let certs = certs.map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no certificate in the file"));
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_err(path, e))
}

/// Every CRL in a PEM file. Revocation fails closed: a configured file
/// that is absent, or holds no CRL, is an error (`cboxctl pki init` writes
/// a signed, empty one), never "nothing revoked".
pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let crls: Result<Vec<_>, _> = CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect();
    let crls = crls.map_err(|e| file_err(path, e))?;
    if crls.is_empty() {
        return Err(file_err(
            path,
            "holds no revocation list (X509 CRL); a configured CRL must be one, even with nothing revoked",
        ));
    }
    Ok(crls)
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).map_err(|e| file_err(ca, e))?;
    }
    Ok(roots)
}

/// The box side: trusts `ca` for the SNAPT's certificate and presents its own.
pub fn client_config(
    ca: &Path,
    cert: &Path,
    key: &Path,
    pref: CipherPreference,
) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(provider(pref))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(load_certs(cert)?, load_key(key)?)?;
    // Resumption is on by default (an in-memory cache): a handover's new
    // tunnel resumes the previous TLS session.
    Ok(Arc::new(config))
}

/// The SNAPT side: requires a client certificate issued by `ca` and not
/// revoked by the CRLs in `crl` (which must exist when configured).
pub fn server_config(
    ca: &Path,
    cert: &Path,
    key: &Path,
    crl: Option<&Path>,
    pref: CipherPreference,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider(pref);
    let crls = match crl {
        Some(p) => load_crls(p)?,
        None => Vec::new(),
    };
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider.clone())
            .with_crls(crls)
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cert)?, load_key(key)?)?;
    // Our order decides (ChaCha20 first on a Pi), not the client's.
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// Serial numbers (lower-case hex) revoked by the CRLs in `path`, to end the
/// sessions of boxes that are already connected when their certificate is
/// revoked.
pub fn revoked_serials(path: &Path) -> Result<std::collections::HashSet<String>, TlsError> {
    use x509_parser::prelude::FromDer;
    use x509_parser::revocation_list::CertificateRevocationList;
    let mut out = std::collections::HashSet::new();
    for crl in load_crls(path)? {
        let (_, parsed) =
            CertificateRevocationList::from_der(crl.as_ref()).map_err(|e| file_err(path, e))?;
        for r in parsed.iter_revoked_certificates() {
            out.insert(r.raw_serial().iter().map(|b| format!("{b:02x}")).collect());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod preference_tests {
    use super::*;

    #[test]
    fn the_preferred_suite_comes_first_and_auto_follows_the_cpu() {
        let first = |p| provider(p).cipher_suites[0].suite();
        assert_eq!(
            first(CipherPreference::Chacha20),
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
        );
        assert_eq!(
            first(CipherPreference::Aes),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        let auto = CipherPreference::Auto.resolve();
        assert_ne!(auto, CipherPreference::Auto);
        assert_eq!(first(CipherPreference::Auto), first(auto));
        assert_eq!(auto == CipherPreference::Aes, aes_in_hardware());
    }
}
