//! Issuing certificates for a deployment, into one directory:
//!
//! ```text
//! DIR/                 0700
//!   ca.pem  ca.key     the CA (key 0600)
//!   index.tsv          serial, kind, name, status, revocation time (one line each)
//!   crl.pem            the revocation list snaptd reloads
//!   servers/NAME.pem  servers/NAME.key
//!   boxes/ID.pem      boxes/ID.key      (subject CN = box id)
//! ```
//!
//! Keys are written 0600 and never overwritten: issuing a name twice is an
//! error (revoke the old one first, then use `reissue`).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::{Duration, OffsetDateTime};
use wire::BoxId;

/// Why a PKI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// The directory has no CA yet.
    #[error("{0}: no CA here; run `cboxctl pki init` first")]
    NoCa(PathBuf),
    /// The CA already exists.
    #[error("{0}: a CA already exists here")]
    CaExists(PathBuf),
    /// The name was issued before.
    #[error("{kind} {name} was already issued (serial {serial}); revoke it first")]
    AlreadyIssued {
        /// box or server
        kind: String,
        /// Its name.
        name: String,
        /// Its serial.
        serial: String,
    },
    /// Nothing to revoke under that name.
    #[error("no valid {kind} named {name} in the index")]
    NotIssued {
        /// box or server
        kind: String,
        /// Its name.
        name: String,
    },
    /// A name is not acceptable.
    #[error("bad name {0:?}: {1}")]
    BadName(String, String),
    /// The system random generator failed.
    #[error("system random generator failed")]
    Random,
    /// The index file is damaged.
    #[error("{path}:{line}: damaged index line")]
    BadIndex {
        /// The index file.
        path: PathBuf,
        /// Line number.
        line: usize,
    },
}

/// One line of `index.tsv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// Serial number, lower-case hex.
    pub serial: String,
    /// `ca`, `server` or `box`.
    pub kind: String,
    /// Server name or box id.
    pub name: String,
    /// Revocation time (RFC 3339-ish seconds since the epoch), if revoked.
    pub revoked_at: Option<i64>,
}

/// A PKI directory.
#[derive(Debug, Clone)]
pub struct Pki {
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_owned(),
        source,
    }
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io(path))?;
    f.write_all(contents).map_err(io(path))
}

fn replace_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    write_file(&tmp, contents, mode)?;
    fs::rename(&tmp, path).map_err(io(path))
}

fn random_serial() -> Result<(SerialNumber, String), PkiError> {
    let mut b = [0u8; 16];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| PkiError::Random)?;
    b[0] &= 0x7f; // positive
    b[0] |= 0x01; // no leading zero byte: the hex form is stable
    let hex = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok((SerialNumber::from_slice(&b), hex))
}

fn hex_to_bytes(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Pki {
    /// The PKI in `dir` (nothing is read until used).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The PKI's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the CA certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Path of the revocation list.
    pub fn crl(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }

    /// Paths of a box's certificate and key.
    pub fn box_files(&self, id: &str) -> (PathBuf, PathBuf) {
        let d = self.dir.join("boxes");
        (d.join(format!("{id}.pem")), d.join(format!("{id}.key")))
    }

    /// Paths of a server's certificate and key.
    pub fn server_files(&self, name: &str) -> (PathBuf, PathBuf) {
        let d = self.dir.join("servers");
        (d.join(format!("{name}.pem")), d.join(format!("{name}.key")))
    }

    /// Creates the directory, the CA (valid `years`) and an empty CRL.
    pub fn init(&self, ca_name: &str, years: i64) -> Result<(), PkiError> {
        if self.ca_cert().exists() {
            return Err(PkiError::CaExists(self.dir.clone()));
        }
        for d in [
            self.dir.clone(),
            self.dir.join("boxes"),
            self.dir.join("servers"),
        ] {
            fs::create_dir_all(&d).map_err(io(&d))?;
            fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).map_err(io(&d))?;
        }
        let key = KeyPair::generate()?;
        let (serial, hex) = random_serial()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, ca_name);
        dn.push(DnType::OrganizationName, "cbox");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(serial);
        Self::validity(&mut params, years * 365);
        let cert = params.self_signed(&key)?;
        write_file(
            &self.dir.join("ca.key"),
            key.serialize_pem().as_bytes(),
            0o600,
        )?;
        write_file(&self.ca_cert(), cert.pem().as_bytes(), 0o644)?;
        write_file(
            &self.dir.join("index.tsv"),
            format!("{hex}\tca\t{ca_name}\tvalid\t-\n").as_bytes(),
            0o644,
        )?;
        self.write_crl()
    }

    /// Issues a SNAPT server certificate for `name`, valid for the DNS names
    /// and IP addresses in `sans` (the names boxes connect to).
    pub fn issue_server(
        &self,
        name: &str,
        sans: &[String],
        days: i64,
    ) -> Result<(PathBuf, PathBuf), PkiError> {
        BoxId::new(name).map_err(|e| PkiError::BadName(name.into(), e.to_string()))?;
        let mut params = CertificateParams::default();
        for s in sans {
            params
                .subject_alt_names
                .push(match s.parse::<std::net::IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName(
                        s.clone()
                            .try_into()
                            .map_err(|_| PkiError::BadName(s.clone(), "not a DNS name".into()))?,
                    ),
                });
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let files = self.server_files(name);
        self.issue("server", name, params, days, &files)?;
        Ok(files)
    }

    /// Issues a box certificate: subject CN = `id` (the CNAPT ID).
    pub fn issue_box(&self, id: &BoxId, days: i64) -> Result<(PathBuf, PathBuf), PkiError> {
        let mut params = CertificateParams::default();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let files = self.box_files(id.as_str());
        self.issue("box", id.as_str(), params, days, &files)?;
        Ok(files)
    }

    /// Revokes the valid certificate of `kind` (`box`/`server`) `name` and
    /// rewrites the CRL. Returns its serial.
    pub fn revoke(&self, kind: &str, name: &str) -> Result<String, PkiError> {
        let mut entries = self.index()?;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let e = entries
            .iter_mut()
            .find(|e| e.kind == kind && e.name == name && e.revoked_at.is_none())
            .ok_or_else(|| PkiError::NotIssued {
                kind: kind.into(),
                name: name.into(),
            })?;
        e.revoked_at = Some(now);
        let serial = e.serial.clone();
        self.write_index(&entries)?;
        self.write_crl()?;
        // The key of a revoked certificate is of no further use.
        let (cert, key) = if kind == "box" {
            self.box_files(name)
        } else {
            self.server_files(name)
        };
        for f in [cert, key] {
            let revoked = f.with_extension(format!(
                "{}.revoked",
                f.extension().and_then(|x| x.to_str()).unwrap_or("")
            ));
            let _ = fs::rename(&f, revoked);
        }
        Ok(serial)
    }

    /// The index, oldest first.
    pub fn index(&self) -> Result<Vec<IndexEntry>, PkiError> {
        let path = self.dir.join("index.tsv");
        if !path.exists() {
            return Err(PkiError::NoCa(self.dir.clone()));
        }
        let text = fs::read_to_string(&path).map_err(io(&path))?;
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| {
                let f: Vec<&str> = l.split('\t').collect();
                let bad = || PkiError::BadIndex {
                    path: path.clone(),
                    line: n + 1,
                };
                if f.len() != 5 {
                    return Err(bad());
                }
                let revoked_at = match f[3] {
                    "valid" => None,
                    "revoked" => Some(f[4].parse().map_err(|_| bad())?),
                    _ => return Err(bad()),
                };
                Ok(IndexEntry {
                    serial: f[0].into(),
                    kind: f[1].into(),
                    name: f[2].into(),
                    revoked_at,
                })
            })
            .collect()
    }

    fn write_index(&self, entries: &[IndexEntry]) -> Result<(), PkiError> {
        let mut text = String::new();
        for e in entries {
            let (status, at) = match e.revoked_at {
                Some(t) => ("revoked", t.to_string()),
                None => ("valid", "-".to_string()),
            };
            text.push_str(&format!(
                "{}\t{}\t{}\t{status}\t{at}\n",
                e.serial, e.kind, e.name
            ));
        }
        replace_file(&self.dir.join("index.tsv"), text.as_bytes(), 0o644)
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, PkiError> {
        let ca_key_path = self.dir.join("ca.key");
        if !ca_key_path.exists() {
            return Err(PkiError::NoCa(self.dir.clone()));
        }
        let key_pem = fs::read_to_string(&ca_key_path).map_err(io(&ca_key_path))?;
        let cert_pem = fs::read_to_string(self.ca_cert()).map_err(io(&self.ca_cert()))?;
        Ok(Issuer::from_ca_cert_pem(
            &cert_pem,
            KeyPair::from_pem(&key_pem)?,
        )?)
    }

    fn validity(params: &mut CertificateParams, days: i64) {
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(days);
    }

    fn issue(
        &self,
        kind: &str,
        name: &str,
        mut params: CertificateParams,
        days: i64,
        (cert_path, key_path): &(PathBuf, PathBuf),
    ) -> Result<(), PkiError> {
        let issuer = self.issuer()?;
        let mut entries = self.index()?;
        if let Some(e) = entries
            .iter()
            .find(|e| e.kind == kind && e.name == name && e.revoked_at.is_none())
        {
            return Err(PkiError::AlreadyIssued {
                kind: kind.into(),
                name: name.into(),
                serial: e.serial.clone(),
            });
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "cbox");
        params.distinguished_name = dn;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let (serial, hex) = random_serial()?;
        params.serial_number = Some(serial);
        Self::validity(&mut params, days);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        let _ = fs::remove_file(cert_path);
        let _ = fs::remove_file(key_path);
        write_file(key_path, key.serialize_pem().as_bytes(), 0o600)?;
        write_file(cert_path, cert.pem().as_bytes(), 0o644)?;
        entries.push(IndexEntry {
            serial: hex,
            kind: kind.into(),
            name: name.into(),
            revoked_at: None,
        });
        self.write_index(&entries)
    }

    fn write_crl(&self) -> Result<(), PkiError> {
        let issuer = self.issuer()?;
        let entries = self.index()?;
        let now = OffsetDateTime::now_utc();
        let revoked_certs = entries
            .iter()
            .filter_map(|e| {
                let at = e.revoked_at?;
                Some(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&hex_to_bytes(&e.serial)?),
                    revocation_time: OffsetDateTime::from_unix_timestamp(at).unwrap_or(now),
                    reason_code: Some(RevocationReason::CessationOfOperation),
                    invalidity_date: None,
                })
            })
            .collect();
        let crl_number = entries.iter().filter(|e| e.revoked_at.is_some()).count() as u64 + 1;
        let params = CertificateRevocationListParams {
            this_update: now - Duration::minutes(5),
            next_update: now + Duration::days(365),
            crl_number: SerialNumber::from(crl_number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&issuer)?;
        replace_file(&self.crl(), crl.pem()?.as_bytes(), 0o644)
    }
}

#[cfg(test)]
mod tests;
