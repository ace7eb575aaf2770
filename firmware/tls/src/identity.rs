//! The box id a verified peer certificate stands for: its subject common name.

use rustls_pki_types::CertificateDer;
use wire::BoxId;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a certificate names no usable box id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The peer presented no certificate.
    #[error("the peer presented no certificate")]
    NoCertificate,
    /// The certificate could not be parsed.
    #[error("unparsable certificate: {0}")]
    Unparsable(String),
    /// The subject has no common name.
    #[error("the certificate subject has no common name")]
    NoCommonName,
    /// The common name is not a valid box id.
    #[error("the common name is not a valid box id: {0}")]
    BadId(String),
}

fn leaf<'a>(chain: Option<&'a [CertificateDer<'a>]>) -> Result<X509Certificate<'a>, IdentityError> {
    let leaf = chain
        .and_then(|c| c.first())
        .ok_or(IdentityError::NoCertificate)?;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    Ok(cert)
}

/// The box id of the leaf certificate of a verified chain (rustls'
/// `peer_certificates()`).
pub fn peer_box_id(chain: Option<&[CertificateDer<'_>]>) -> Result<BoxId, IdentityError> {
    let cert = leaf(chain)?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .ok_or(IdentityError::NoCommonName)?
        .as_str()
        .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    BoxId::new(cn).map_err(|e| IdentityError::BadId(e.to_string()))
}

/// The serial number of the leaf certificate, as lower-case hex (to match
/// revocations against live tunnels).
pub fn peer_serial(chain: Option<&[CertificateDer<'_>]>) -> Result<String, IdentityError> {
    let cert = leaf(chain)?;
    Ok(cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
