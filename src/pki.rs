//! The test PKI: a root CA, an issuing CA, and the server certificates they sign.
//!
//! KB836410 happens because auto-enrollment asks the *same* enterprise CA for a fresh certificate
//! with the same subject while the server runs. To replay that faithfully the issuing CA is kept
//! with the deployment (`pki/`), so a renewal years later is issued by the very CA the clients
//! already trust, and only the serial, thumbprint, validity and (by policy) the key change.
//!
//! Everything here is pure: time and serial numbers are arguments, so fixtures and the
//! simulation can issue certificates on a virtual clock and get the same serials every run.

use std::fmt;
use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Errors from issuing or parsing certificates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// rcgen refused to generate or sign.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// RSA key generation failed.
    #[error("RSA key generation failed: {0}")]
    Rsa(String),
    /// The bytes are not a DER X.509 certificate.
    #[error("not an X.509 certificate: {reason}")]
    NotACertificate {
        /// What the parser said.
        reason: String,
    },
    /// The bytes are not a PKCS#8 private key that rcgen and rustls can use.
    #[error("not a usable PKCS#8 private key: {reason}")]
    BadKey {
        /// What the parser said.
        reason: String,
    },
}

/// The key algorithm of a server certificate (`init --key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 with SHA-256: fast, the default.
    #[default]
    EcdsaP256,
    /// RSA 2048 with PKCS#1 v1.5 SHA-256 signatures, as Windows templates of the era issued.
    Rsa2048,
}

impl KeyAlgorithm {
    /// Generates a fresh key pair, as PKCS#8 DER.
    pub fn generate(self) -> Result<PrivatePkcs8KeyDer<'static>, PkiError> {
        match self {
            KeyAlgorithm::EcdsaP256 => {
                let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
                Ok(PrivatePkcs8KeyDer::from(key.serialize_der()))
            }
            KeyAlgorithm::Rsa2048 => {
                // ring (our only crypto provider) signs with RSA but cannot generate RSA keys.
                use rsa::pkcs8::EncodePrivateKey;
                let mut rng = getrandom::SysRng;
                let key = rsa::PrivateKey::new(&mut rng, 2048)
                    .map_err(|e| PkiError::Rsa(e.to_string()))?;
                let der = key
                    .to_pkcs8_der()
                    .map_err(|e| PkiError::Rsa(e.to_string()))?;
                Ok(PrivatePkcs8KeyDer::from(der.as_bytes().to_vec()))
            }
        }
    }
}

impl KeyAlgorithm {
    /// The algorithm of an existing key (a renewal with a new key keeps the algorithm).
    pub fn of(key: &PrivatePkcs8KeyDer<'_>) -> Result<Self, PkiError> {
        let pair = key_pair_from_pkcs8(key)?;
        if pair.is_compatible(&rcgen::PKCS_RSA_SHA256) {
            Ok(KeyAlgorithm::Rsa2048)
        } else {
            Ok(KeyAlgorithm::EcdsaP256)
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::Rsa2048 => "rsa-2048",
        })
    }
}

/// Loads a PKCS#8 key for signing with rcgen, whichever algorithm it is.
pub fn key_pair_from_pkcs8(key: &PrivatePkcs8KeyDer<'_>) -> Result<KeyPair, PkiError> {
    for alg in [&rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_RSA_SHA256] {
        if let Ok(pair) = KeyPair::from_pkcs8_der_and_sign_algo(key, alg) {
            return Ok(pair);
        }
    }
    Err(PkiError::BadKey {
        reason: "neither an ECDSA P-256 nor an RSA key".into(),
    })
}

/// A certificate serial number, shown as uppercase hex without separators.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Serial(String);

impl Serial {
    /// A serial from raw big-endian bytes (leading zero bytes dropped, as DER does).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let trimmed: &[u8] = match bytes.iter().position(|b| *b != 0) {
            Some(i) => &bytes[i..],
            None => &[0],
        };
        Serial(hex::encode_upper(trimmed))
    }

    /// A 16-byte positive serial derived from `seed` with SHA-256: deterministic, so the same
    /// scenario issues the same serials, yet distinct for distinct seeds.
    pub fn derive(seed: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, seed);
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest.as_ref()[..16]);
        bytes[0] = (bytes[0] & 0x7f) | 0x10; // positive, and no leading zero to trim
        Serial::from_bytes(&bytes)
    }

    /// A random 16-byte serial, as a CA issues them.
    pub fn random() -> Self {
        let mut seed = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
            .expect("the OS random number generator failed");
        Self::derive(&seed)
    }

    /// The hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn to_rcgen(&self) -> SerialNumber {
        SerialNumber::from_slice(&hex::decode(&self.0).expect("validated hex"))
    }
}

impl TryFrom<String> for Serial {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let cleaned: String = s
            .chars()
            .filter(|c| !c.is_whitespace() && *c != ':')
            .collect();
        let bytes = hex::decode(&cleaned)
            .map_err(|_| format!("serial `{s}` is not hexadecimal (expected e.g. `3A5F0C...`)"))?;
        if bytes.is_empty() {
            return Err("serial is empty".into());
        }
        Ok(Serial::from_bytes(&bytes))
    }
}

impl From<Serial> for String {
    fn from(s: Serial) -> String {
        s.0
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SHA-1 thumbprint of a certificate's DER: 40 uppercase hex digits, as Windows shows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Thumbprint(String);

impl Thumbprint {
    /// The thumbprint of `der`.
    pub fn of(der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
        Thumbprint(hex::encode_upper(digest.as_ref()))
    }

    /// The hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Thumbprint {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit()) {
            Ok(Thumbprint(s.to_ascii_uppercase()))
        } else {
            Err(format!("`{s}` is not a thumbprint (40 hex digits)"))
        }
    }
}

impl From<Thumbprint> for String {
    fn from(t: Thumbprint) -> String {
        t.0
    }
}

impl fmt::Display for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a certificate says about itself, read back from its DER.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// SHA-1 of the DER.
    pub thumbprint: Thumbprint,
    /// Serial number.
    pub serial: Serial,
    /// Issuer distinguished name, e.g. `CN=Contoso Issuing CA, O=Contoso`.
    pub issuer: String,
    /// Subject distinguished name.
    pub subject: String,
    /// Subject alternative names of type DNS.
    pub dns_names: Vec<String>,
    /// Subject alternative names of type IP address.
    pub ip_addresses: Vec<IpAddr>,
    /// Extended key usages, as `server_auth` / `client_auth` / dotted OIDs.
    pub ekus: Vec<String>,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// The subjectPublicKey bits, to match a certificate with its private key.
    #[serde(skip)]
    pub public_key: Vec<u8>,
}

impl CertInfo {
    /// Parses a DER certificate.
    pub fn parse(der: &[u8]) -> Result<Self, PkiError> {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|e| PkiError::NotACertificate {
                reason: e.to_string(),
            })?;
        if !rest.is_empty() {
            return Err(PkiError::NotACertificate {
                reason: format!("{} trailing bytes after the certificate", rest.len()),
            });
        }
        let mut dns_names = Vec::new();
        let mut ip_addresses = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => dns_names.push((*d).to_string()),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => ip_addresses.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap())),
                        16 => ip_addresses.push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap())),
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
        let mut ekus = Vec::new();
        if let Ok(Some(eku)) = cert.extended_key_usage() {
            let e = eku.value;
            if e.server_auth {
                ekus.push("server_auth".to_string());
            }
            if e.client_auth {
                ekus.push("client_auth".to_string());
            }
            ekus.extend(e.other.iter().map(|oid| oid.to_id_string()));
        }
        Ok(CertInfo {
            thumbprint: Thumbprint::of(der),
            serial: Serial::from_bytes(cert.raw_serial()),
            issuer: cert.issuer().to_string(),
            subject: cert.subject().to_string(),
            dns_names,
            ip_addresses,
            ekus,
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            public_key: cert.public_key().subject_public_key.data.to_vec(),
        })
    }

    /// The subject's common name, if any.
    pub fn common_name(&self) -> Option<&str> {
        self.subject
            .split(", ")
            .find_map(|part| part.strip_prefix("CN="))
    }

    /// Whether `key` is the private key of this certificate.
    pub fn matches_key(&self, key: &PrivatePkcs8KeyDer<'_>) -> bool {
        key_pair_from_pkcs8(key).is_ok_and(|pair| pair.public_key_raw() == self.public_key)
    }
}

/// A CA certificate with its key, able to sign.
pub struct CertificateAuthority {
    /// The CA certificate.
    pub cert: CertificateDer<'static>,
    /// Its private key.
    pub key: PrivatePkcs8KeyDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("thumbprint", &Thumbprint::of(&self.cert))
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Loads a CA from its certificate and key.
    pub fn load(
        cert: CertificateDer<'static>,
        key: PrivatePkcs8KeyDer<'static>,
    ) -> Result<Self, PkiError> {
        let issuer = Issuer::from_ca_cert_der(&cert, key_pair_from_pkcs8(&key)?)?;
        Ok(Self { cert, key, issuer })
    }

    /// Information about the CA certificate.
    pub fn info(&self) -> CertInfo {
        CertInfo::parse(&self.cert).expect("a CA we loaded parses")
    }
}

/// A root CA and the issuing CA it certified: the enterprise PKI of the emulated domain.
#[derive(Debug)]
pub struct TestPki {
    /// The self-signed root.
    pub root: CertificateAuthority,
    /// The issuing (intermediate) CA that signs server certificates and renewals.
    pub issuing: CertificateAuthority,
}

/// The organisation name for a domain: `contoso.com` → `Contoso`.
pub fn organisation_of(domain: &str) -> String {
    let label = domain.split('.').next().unwrap_or(domain);
    let mut chars = label.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => "Example".into(),
    }
}

impl TestPki {
    /// Generates a root CA (valid 20 years) and an issuing CA (10 years) for `domain`, both
    /// starting at `now` less a day (so clocks slightly behind still accept them).
    pub fn generate(domain: &str, now: OffsetDateTime) -> Result<Self, PkiError> {
        let org = organisation_of(domain);
        let not_before = now - time::Duration::days(1);

        let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut root_params = CertificateParams::default();
        root_params.distinguished_name = dn(&format!("{org} Root CA"), &org);
        root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        root_params.not_before = not_before;
        root_params.not_after = now + time::Duration::days(365 * 20);
        root_params.serial_number =
            Some(Serial::derive(format!("{domain}/root").as_bytes()).to_rcgen());
        let root_cert = root_params.self_signed(&root_key)?;
        let root = CertificateAuthority::load(
            root_cert.der().clone(),
            PrivatePkcs8KeyDer::from(root_key.serialize_der()),
        )?;

        let issuing_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&format!("{org} Issuing CA"), &org);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = not_before;
        params.not_after = now + time::Duration::days(365 * 10);
        params.use_authority_key_identifier_extension = true;
        params.serial_number =
            Some(Serial::derive(format!("{domain}/issuing").as_bytes()).to_rcgen());
        let issuing_cert = params.signed_by(&issuing_key, &root.issuer)?;
        let issuing = CertificateAuthority::load(
            issuing_cert.der().clone(),
            PrivatePkcs8KeyDer::from(issuing_key.serialize_der()),
        )?;
        Ok(Self { root, issuing })
    }

    /// The chain clients trust, as PEM: issuing CA then root.
    pub fn chain_pem(&self) -> String {
        [&self.issuing.cert, &self.root.cert]
            .iter()
            .map(|c| to_pem("CERTIFICATE", c))
            .collect()
    }
}

/// What goes into a server certificate; also what a renewal copies from the old one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafSpec {
    /// Subject common name (the server's FQDN).
    pub common_name: String,
    /// Subject organisation.
    pub organisation: String,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// Whether the serverAuth EKU is present.
    pub server_auth: bool,
    /// Whether the clientAuth EKU is present (mutual TLS needs it).
    pub client_auth: bool,
}

impl LeafSpec {
    /// The certificate `init` creates for `fqdn`: SANs for the name, `localhost` and `127.0.0.1`
    /// (so loopback clients verify it), serverAuth and clientAuth.
    pub fn server(fqdn: &str, organisation: &str) -> Self {
        Self {
            common_name: fqdn.into(),
            organisation: organisation.into(),
            dns_names: vec![fqdn.into(), "localhost".into()],
            ip_addresses: vec![IpAddr::from([127, 0, 0, 1])],
            server_auth: true,
            client_auth: true,
        }
    }

    /// The spec an existing certificate was issued with, for a renewal that keeps subject,
    /// SANs and EKUs.
    pub fn of(info: &CertInfo) -> Self {
        let org = info
            .subject
            .split(", ")
            .find_map(|p| p.strip_prefix("O="))
            .unwrap_or_default();
        Self {
            common_name: info.common_name().unwrap_or_default().into(),
            organisation: org.into(),
            dns_names: info.dns_names.clone(),
            ip_addresses: info.ip_addresses.clone(),
            server_auth: info.ekus.iter().any(|e| e == "server_auth"),
            client_auth: info.ekus.iter().any(|e| e == "client_auth"),
        }
    }
}

/// Issues a leaf certificate for `key` signed by `ca`.
pub fn issue_leaf(
    ca: &CertificateAuthority,
    spec: &LeafSpec,
    key: &PrivatePkcs8KeyDer<'_>,
    serial: &Serial,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateDer<'static>, PkiError> {
    let key_pair = key_pair_from_pkcs8(key)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(&spec.common_name, &spec.organisation);
    params.subject_alt_names = spec
        .dns_names
        .iter()
        .map(|d| {
            d.clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(PkiError::from)
        })
        .chain(
            spec.ip_addresses
                .iter()
                .map(|ip| Ok(SanType::IpAddress(*ip))),
        )
        .collect::<Result<_, _>>()?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    if spec.server_auth {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if spec.client_auth {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(serial.to_rcgen());
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key_pair, &ca.issuer)?;
    Ok(cert.der().clone())
}

fn dn(common_name: &str, organisation: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if !organisation.is_empty() {
        dn.push(DnType::OrganizationName, organisation);
    }
    dn
}

/// PEM-encodes `der` under `label` (64-column base64, LF line ends, as openssl writes it).
pub fn to_pem(label: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der), config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const EPOCH: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

    #[test]
    fn leaf_carries_spec_and_chains_to_issuing_ca() {
        let pki = TestPki::generate("contoso.com", EPOCH).unwrap();
        let key = KeyAlgorithm::EcdsaP256.generate().unwrap();
        let spec = LeafSpec::server("lcs01.contoso.com", "Contoso");
        let serial = Serial::derive(b"leaf");
        let der = issue_leaf(
            &pki.issuing,
            &spec,
            &key,
            &serial,
            EPOCH,
            EPOCH + time::Duration::days(365),
        )
        .unwrap();
        let info = CertInfo::parse(&der).unwrap();
        assert_eq!(info.serial, serial);
        assert_eq!(info.issuer, pki.issuing.info().subject);
        assert_eq!(info.issuer, "CN=Contoso Issuing CA, O=Contoso");
        assert_eq!(info.dns_names, ["lcs01.contoso.com", "localhost"]);
        assert_eq!(info.ip_addresses, [IpAddr::from([127, 0, 0, 1])]);
        assert_eq!(info.ekus, ["server_auth", "client_auth"]);
        assert_eq!(LeafSpec::of(&info), spec);
        assert!(info.matches_key(&key));
        assert!(!info.matches_key(&KeyAlgorithm::EcdsaP256.generate().unwrap()));
    }

    #[test]
    fn serial_parsing_accepts_separators_and_rejects_garbage() {
        let s = Serial::try_from("3a:5f 0c".to_string()).unwrap();
        assert_eq!(s.as_str(), "3A5F0C");
        assert!(Serial::try_from("xyz".to_string()).is_err());
        assert_eq!(Serial::from_bytes(&[0, 0, 1]).as_str(), "01");
        assert_ne!(Serial::derive(b"a"), Serial::derive(b"b"));
    }

    #[test]
    fn pem_round_trips_through_rustls_parser() {
        use rustls::pki_types::pem::PemObject;
        let der: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let pem = to_pem("CERTIFICATE", &der);
        let back = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(back.as_ref(), &der[..]);
    }
}
