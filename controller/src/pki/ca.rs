//! The cluster CA: a self-signed ECDSA P-256 certificate that signs every node's and
//! admin's certificate.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, DnsName};
use x509_parser::extensions::ParsedExtension;

use super::error::{PkiError, excerpt};
use super::fingerprint::CaFingerprint;
use super::identity::{Identity, Role};
use super::random::random_bytes;

/// How long the cluster CA is valid: ten years.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
/// A sensible validity for node and admin certificates: one year.
pub const DEFAULT_LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// Certificates start this long before they are issued, to tolerate clock skew.
const BACKDATE: Duration = Duration::from_secs(5 * 60);
/// The organization in every subject the CA writes.
const ORGANIZATION: &str = "berth";

/// A DNS name or IP address a controller or agent certificate is valid for, so that a
/// client can check the server's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SubjectName {
    /// A DNS name, e.g. `ctl-1.example.internal`.
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
}

impl SubjectName {
    /// An IP address if `s` parses as one, else a DNS name.
    pub fn parse(s: &str) -> Self {
        match s.parse() {
            Ok(ip) => SubjectName::Ip(ip),
            Err(_) => SubjectName::Dns(s.to_owned()),
        }
    }

    fn to_san(&self) -> Result<SanType, PkiError> {
        match self {
            SubjectName::Ip(ip) => Ok(SanType::IpAddress(*ip)),
            SubjectName::Dns(name) => {
                let invalid = |reason: String| PkiError::InvalidInput {
                    what: "DNS name",
                    reason,
                };
                DnsName::try_from(name.as_str())
                    .map_err(|_| invalid(format!("`{}` is not a valid DNS name", excerpt(name))))?;
                let ia5 = name
                    .as_str()
                    .try_into()
                    .map_err(|e: rcgen::Error| invalid(format!("`{}`: {e}", excerpt(name))))?;
                Ok(SanType::DnsName(ia5))
            }
        }
    }
}

impl From<IpAddr> for SubjectName {
    fn from(ip: IpAddr) -> Self {
        SubjectName::Ip(ip)
    }
}

/// A certificate the CA issued and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate's private key (PKCS#8), PEM.
    pub key_pem: String,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[elided]")
            .finish()
    }
}

/// The cluster CA: its certificate and private key.
pub struct ClusterCa {
    key: KeyPair,
    /// The parts of the CA's own parameters an [`Issuer`] needs: subject, key id, usages.
    issuer_params: CertificateParams,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    /// The CA's expiry, in seconds since the Unix epoch.
    not_after: u64,
}

impl fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCa")
            .field("fingerprint", &self.fingerprint())
            .field("key", &"[elided]")
            .finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// A new self-signed ECDSA P-256 CA for the cluster `cluster_name`, valid for
    /// [`CA_VALIDITY`].
    pub fn generate(cluster_name: &str) -> Result<Self, PkiError> {
        if cluster_name.is_empty() || cluster_name.chars().count() > 64 {
            return Err(PkiError::InvalidInput {
                what: "cluster name",
                reason: "it must be 1 to 64 characters long".to_owned(),
            });
        }
        if cluster_name.chars().any(char::is_control) {
            return Err(PkiError::InvalidInput {
                what: "cluster name",
                reason: "it must not contain control characters".to_owned(),
            });
        }
        let key = generate_key("CA key")?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, ORGANIZATION);
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, "cluster CA");
        params
            .distinguished_name
            .push(DnType::CommonName, cluster_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial()?);
        let now = unix_now();
        let not_after = now + CA_VALIDITY.as_secs();
        set_validity(
            &mut params,
            now.saturating_sub(BACKDATE.as_secs()),
            not_after,
        );
        let cert = params
            .self_signed(&key)
            .map_err(|source| PkiError::Generate {
                what: "CA certificate",
                source,
            })?;
        Ok(ClusterCa {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key,
            issuer_params: params,
            not_after,
        })
    }

    /// The CA certificate and private key, PEM, as [`ClusterCa::from_pem`] reads them.
    pub fn to_pem(&self) -> (String, String) {
        (self.cert_pem.clone(), self.key.serialize_pem())
    }

    /// A CA from its certificate and private key, PEM. The key must match the certificate.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| {
            PkiError::InvalidInput {
                what: "CA certificate PEM",
                reason: e.to_string(),
            }
        })?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::InvalidInput {
            what: "CA private key PEM",
            reason: e.to_string(),
        })?;
        let invalid = |reason: String| PkiError::InvalidInput {
            what: "CA certificate",
            reason,
        };
        let (_, x509) =
            x509_parser::parse_x509_certificate(&cert_der).map_err(|e| invalid(e.to_string()))?;
        if !x509.is_ca() {
            return Err(invalid("it is not a CA certificate".to_owned()));
        }
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(invalid("the private key does not match it".to_owned()));
        }
        // rcgen cannot read a CA certificate without its `x509-parser` feature, so rebuild
        // the parameters an `Issuer` needs: the subject, the key identifier, the key usages.
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        for attr in x509.subject().iter_attributes() {
            let oid: Vec<u64> = attr
                .attr_type()
                .iter()
                .ok_or_else(|| invalid("its subject has an unreadable attribute type".into()))?
                .collect();
            let value = attr
                .as_str()
                .map_err(|_| invalid("its subject has a non-string attribute".into()))?;
            params
                .distinguished_name
                .push(DnType::from_oid(&oid), value);
        }
        params.key_identifier_method = x509
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => {
                    Some(KeyIdMethod::PreSpecified(id.0.to_vec()))
                }
                _ => None,
            })
            .unwrap_or(KeyIdMethod::Sha256);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let not_after = u64::try_from(x509.validity().not_after.timestamp()).unwrap_or(0);
        let subject_raw = x509.subject().as_raw().to_vec();
        let ca = ClusterCa {
            cert_pem: cert_pem.to_owned(),
            cert_der: cert_der.clone(),
            key,
            issuer_params: params,
            not_after,
        };
        // The rebuilt subject must encode exactly as the certificate's, or peers could not
        // chain the certificates this CA issues to it.
        let probe = ca.sign(&CertificateParams::default(), &ca.key, "probe certificate")?;
        let (_, probe) =
            x509_parser::parse_x509_certificate(probe.der()).map_err(|e| invalid(e.to_string()))?;
        if probe.issuer().as_raw() != subject_raw.as_slice() {
            return Err(invalid(
                "its subject uses string encodings berth cannot reproduce".to_owned(),
            ));
        }
        Ok(ca)
    }

    /// The CA certificate, PEM: what nodes and clients trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The SHA-256 of the CA certificate's DER, which join tokens pin.
    pub fn fingerprint(&self) -> CaFingerprint {
        CaFingerprint::of_der(&self.cert_der)
    }

    /// Issues a certificate and a new P-256 key for `subject`, valid for `validity` (but
    /// never beyond the CA's own expiry). Controller and agent certificates are valid for
    /// both TLS server and client authentication and carry `names`; admin certificates
    /// are client-only and take no names.
    pub fn issue(
        &self,
        subject: &Identity,
        names: &[SubjectName],
        validity: Duration,
    ) -> Result<IssuedCert, PkiError> {
        let params = self.leaf_params(subject, names, validity)?;
        let key = generate_key("certificate key")?;
        let cert = self.sign(&params, &key, "certificate")?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues a certificate for `subject` as [`ClusterCa::issue`] does, but for the public
    /// key of a certificate signing request (PEM) made by the holder, whose private key
    /// stays with it. The request's signature must verify and its key must be ECDSA P-256;
    /// its subject and extensions are ignored: the CA sets them. Returns the certificate, PEM.
    pub fn issue_for_csr(
        &self,
        subject: &Identity,
        names: &[SubjectName],
        validity: Duration,
        csr_pem: &str,
    ) -> Result<String, PkiError> {
        let public_key = super::csr::requested_key(csr_pem)?;
        let params = self.leaf_params(subject, names, validity)?;
        Ok(self.sign(&params, &public_key, "certificate")?.pem())
    }

    /// The parameters of a controller, agent or admin certificate (see [`ClusterCa::issue`]).
    fn leaf_params(
        &self,
        subject: &Identity,
        names: &[SubjectName],
        validity: Duration,
    ) -> Result<CertificateParams, PkiError> {
        if subject.role == Role::Admin && !names.is_empty() {
            return Err(PkiError::AdminWithNames);
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, ORGANIZATION);
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, subject.role.as_str());
        params
            .distinguished_name
            .push(DnType::CommonName, subject.id.as_str());
        let uri = subject
            .uri()
            .try_into()
            .map_err(|source| PkiError::Generate {
                what: "identity URI",
                source,
            })?;
        params.subject_alt_names = std::iter::once(Ok(SanType::URI(uri)))
            .chain(names.iter().map(SubjectName::to_san))
            .collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match subject.role {
            Role::Admin => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Role::Controller | Role::Agent => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        params.use_authority_key_identifier_extension = true;
        let now = unix_now();
        let not_after = now.saturating_add(validity.as_secs()).min(self.not_after);
        set_validity(
            &mut params,
            now.saturating_sub(BACKDATE.as_secs()),
            not_after,
        );
        Ok(params)
    }

    /// Signs `params`, with a fresh random serial, for `public_key`.
    fn sign(
        &self,
        params: &CertificateParams,
        public_key: &impl PublicKeyData,
        what: &'static str,
    ) -> Result<Certificate, PkiError> {
        let mut params = params.clone();
        params.serial_number = Some(random_serial()?);
        let issuer = Issuer::from_params(&self.issuer_params, &self.key);
        params
            .signed_by(public_key, &issuer)
            .map_err(|source| PkiError::Generate { what, source })
    }
}

pub(super) fn generate_key(what: &'static str) -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|source| PkiError::Generate { what, source })
}

/// A positive 128-bit random serial number.
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = random_bytes::<16>()?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Sets the validity from Unix times, without naming `time`, which is not a dependency.
fn set_validity(params: &mut CertificateParams, not_before: u64, not_after: u64) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + Duration::from_secs(not_before);
    params.not_after = epoch + Duration::from_secs(not_after);
}
