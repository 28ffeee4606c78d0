//! `v1` Secret: TLS certificates and keys (`kubernetes.io/tls`: `tls.crt`, `tls.key`, and
//! optionally `ca.crt`), as Ingress `spec.tls`, domain ConfigMaps and `proxy-ssl-secret`
//! name them.
//!
//! The PEM is parsed and checked when the object is read, so a bad certificate is
//! rejected as a whole (the last good version stays) with the key that is wrong:
//! unparsable PEM, no certificate, a key that does not belong to the certificate.
//! Secret values never leave the process: `/config_dump` shows the keys, not the bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use serde::{Deserialize, Serialize, Serializer};

use super::{from_yaml, FieldError, ObjectMeta};

pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";
pub const TLS_CRT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
pub const CA_CRT: &str = "ca.crt";
/// Istio also reads a certificate and key from these keys.
const CERT_ALIAS: &str = "cert";
const KEY_ALIAS: &str = "key";
const CA_ALIAS: &str = "cacert";

/// What a Secret file says, before its values are decoded.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[derive(Default)]
struct SecretDoc {
    metadata: ObjectMeta,
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Base64 values, as the API server stores them.
    data: BTreeMap<String, String>,
    /// Plain values; they win over `data` for the same key (the API server's merge).
    string_data: BTreeMap<String, String>,
}

#[derive(Clone)]
pub struct Secret {
    pub metadata: ObjectMeta,
    pub kind: String,
    /// Decoded values.
    pub data: BTreeMap<String, Vec<u8>>,
    /// `tls.crt` + `tls.key`, parsed and matched, when both are present.
    pub key_pair: Option<Arc<KeyPair>>,
    /// `ca.crt`, parsed, when present.
    pub ca: Option<Arc<Vec<X509>>>,
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        // The parsed parts follow from the bytes.
        self.metadata == other.metadata && self.kind == other.kind && self.data == other.data
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("metadata", &self.metadata)
            .field("type", &self.kind)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Redacted: key names and the public facts of certificates only.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let data: BTreeMap<&str, String> = self
            .data
            .iter()
            .map(|(k, v)| (k.as_str(), format!("<redacted, {} bytes>", v.len())))
            .collect();
        serde_json::json!({
            "metadata": self.metadata,
            "type": self.kind,
            "data": data,
            "certificate": self.key_pair.as_ref().map(|k| &k.info),
        })
        .serialize(s)
    }
}

/// A certificate chain (leaf first) and the private key of its leaf.
pub struct KeyPair {
    pub chain: Vec<X509>,
    pub key: PKey<Private>,
    pub info: CertInfo,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// The public facts of a leaf certificate, for `/debug/configz` and the expiry stat.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CertInfo {
    pub subject: String,
    /// DNS names of the subjectAltName extension.
    pub dns_names: Vec<String>,
    pub serial: String,
    pub sha256: String,
    pub not_before: String,
    pub not_after: String,
    /// `not_after` as seconds since the Unix epoch.
    #[serde(skip)]
    pub not_after_unix: i64,
}

fn at(key: &str) -> String {
    format!("data[\"{key}\"]")
}

impl Secret {
    pub fn parse(bytes: &[u8]) -> Result<Secret, FieldError> {
        // The YAML parser quotes offending values in its messages: not for a Secret.
        let doc: SecretDoc =
            from_yaml(bytes).map_err(|e| FieldError::new(e.path, without_values(&e.message)))?;
        let mut data = BTreeMap::new();
        for (k, v) in &doc.data {
            // Multi-line base64 (as `base64` without `-w0` writes it) is accepted.
            let compact: String = v.split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact.as_bytes())
                .map_err(|e| FieldError::new(at(k), base64_problem(&e)))?;
            data.insert(k.clone(), bytes);
        }
        for (k, v) in doc.string_data {
            data.insert(k, v.into_bytes());
        }
        let kind = doc.kind.unwrap_or_else(|| "Opaque".to_string());
        let mut secret = Secret {
            metadata: doc.metadata,
            kind,
            data,
            key_pair: None,
            ca: None,
        };
        secret.check()?;
        Ok(secret)
    }

    fn check(&mut self) -> Result<(), FieldError> {
        let pick = |main: &'static str, alias: &'static str| {
            self.data
                .get(main)
                .map(|v| (main, v))
                .or_else(|| self.data.get(alias).map(|v| (alias, v)))
        };
        let crt = pick(TLS_CRT, CERT_ALIAS);
        let key = pick(TLS_KEY, KEY_ALIAS);
        let ca = pick(CA_CRT, CA_ALIAS);
        if self.kind == TLS_SECRET_TYPE {
            for (k, v) in [(TLS_CRT, crt), (TLS_KEY, key)] {
                if v.is_none() {
                    return Err(FieldError::new(
                        at(k),
                        format!("is required in a {TLS_SECRET_TYPE} secret"),
                    ));
                }
            }
        }
        let key_pair = match (crt, key) {
            (Some(crt), Some(key)) => Some(Arc::new(key_pair(crt, key)?)),
            (Some((k, crt)), None) => {
                certs(crt, k)?;
                None
            }
            (None, Some((k, _))) => {
                return Err(FieldError::new(
                    at(if k == KEY_ALIAS { CERT_ALIAS } else { TLS_CRT }),
                    format!("is required with {k}"),
                ))
            }
            (None, None) => None,
        };
        let ca = match ca {
            Some((k, pem)) => Some(Arc::new(certs(pem, k)?)),
            None => None,
        };
        self.key_pair = key_pair;
        self.ca = ca;
        Ok(())
    }
}

/// A parser message with every quoted part (a value from the file) left out.
fn without_values(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut quoted = false;
    for c in msg.chars() {
        match (c, quoted) {
            ('"', false) => {
                quoted = true;
                out.push_str("(value not shown)");
            }
            ('"', true) => quoted = false,
            (c, false) => out.push(c),
            _ => {}
        }
    }
    out
}

/// What is wrong with a base64 value, without the value's bytes.
fn base64_problem(e: &base64::DecodeError) -> String {
    use base64::DecodeError as E;
    match e {
        E::InvalidByte(at, _) | E::InvalidLastSymbol(at, _) => {
            format!("not base64: invalid character at offset {at}")
        }
        E::InvalidLength(_) => "not base64: invalid length".into(),
        E::InvalidPadding => "not base64: invalid padding".into(),
    }
}

/// What OpenSSL found wrong, without its codes and source locations (which differ from
/// one OpenSSL build to the next and tell a user nothing).
fn reasons(e: &openssl::error::ErrorStack) -> String {
    let mut out: Vec<&str> = Vec::new();
    for r in e.errors().iter().filter_map(|e| e.reason()) {
        if !out.contains(&r) {
            out.push(r);
        }
    }
    if out.is_empty() {
        return "OpenSSL could not decode it".into();
    }
    out.join(", ")
}

/// Every certificate of a PEM bundle; at least one.
fn certs(pem: &[u8], key: &str) -> Result<Vec<X509>, FieldError> {
    let list = X509::stack_from_pem(pem)
        .map_err(|e| FieldError::new(at(key), format!("not a PEM certificate: {}", reasons(&e))))?;
    if list.is_empty() {
        return Err(FieldError::new(
            at(key),
            "holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(list)
}

fn key_pair(
    (crt_key, crt): (&str, &Vec<u8>),
    (key_key, key): (&str, &Vec<u8>),
) -> Result<KeyPair, FieldError> {
    let chain = certs(crt, crt_key)?;
    if key.windows(9).any(|w| w == b"ENCRYPTED") {
        return Err(FieldError::new(
            at(key_key),
            "is an encrypted private key; keys must be unencrypted PEM (as Kubernetes TLS secrets hold them)",
        ));
    }
    // An empty passphrase: OpenSSL must never ask for one on a terminal.
    let pkey = PKey::private_key_from_pem_callback(key, |_| Ok(0)).map_err(|e| {
        FieldError::new(
            at(key_key),
            format!("not a PEM private key: {}", reasons(&e)),
        )
    })?;
    let leaf = &chain[0];
    let matches = leaf
        .public_key()
        .map(|pk| pk.public_eq(&pkey))
        .unwrap_or(false);
    if !matches {
        return Err(FieldError::new(
            at(key_key),
            format!(
                "does not belong to the certificate in {crt_key} (subject {})",
                subject(leaf)
            ),
        ));
    }
    let info = cert_info(leaf);
    Ok(KeyPair {
        chain,
        key: pkey,
        info,
    })
}

fn subject(cert: &X509) -> String {
    let parts: Vec<String> = cert
        .subject_name()
        .entries()
        .map(|e| {
            let name = e.object().nid().short_name().unwrap_or("?");
            let value = e.data().to_string().unwrap_or_default();
            format!("{name}={value}")
        })
        .collect();
    parts.join(",")
}

pub fn cert_info(cert: &X509) -> CertInfo {
    let dns_names = cert
        .subject_alt_names()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.dnsname().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let serial = cert
        .serial_number()
        .to_bn()
        .and_then(|b| b.to_hex_str().map(|s| s.to_string()))
        .unwrap_or_default();
    let sha256 = cert
        .digest(MessageDigest::sha256())
        .map(|d| d.iter().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_default();
    let epoch = openssl::asn1::Asn1Time::from_unix(0).ok();
    let not_after_unix = epoch
        .as_ref()
        .and_then(|e| e.diff(cert.not_after()).ok())
        .map_or(0, |d| i64::from(d.days) * 86_400 + i64::from(d.secs));
    CertInfo {
        subject: subject(cert),
        dns_names,
        serial,
        sha256,
        not_before: cert.not_before().to_string(),
        not_after: cert.not_after().to_string(),
        not_after_unix,
    }
}

#[cfg(test)]
pub(crate) mod test_certs {
    //! Certificates made on the spot for unit tests.
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509NameBuilder, X509};

    pub fn key() -> PKey<Private> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
    }

    /// A self-signed certificate for `names` (the first is the CN).
    pub fn self_signed(names: &[&str], key: &PKey<Private>) -> X509 {
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_nid(Nid::COMMONNAME, names[0]).unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&BigNum::from_u32(7).unwrap().to_asn1_integer().unwrap())
            .unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
            .unwrap();
        let mut san = SubjectAlternativeName::new();
        for n in names {
            san.dns(n);
        }
        let san = san.build(&b.x509v3_context(None, None)).unwrap();
        b.append_extension(san).unwrap();
        b.sign(key, MessageDigest::sha256()).unwrap();
        b.build()
    }

    /// PEM of a certificate and its key.
    pub fn pem(names: &[&str]) -> (String, String) {
        let k = key();
        let c = self_signed(names, &k);
        (
            String::from_utf8(c.to_pem().unwrap()).unwrap(),
            String::from_utf8(k.private_key_to_pem_pkcs8().unwrap()).unwrap(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn tls_secret(crt: &str, key: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
            b64(crt),
            b64(key)
        )
    }

    #[test]
    fn a_tls_secret_parses_with_its_certificate_facts() {
        let (crt, key) = test_certs::pem(&["a.example.com", "*.b.example.com"]);
        let s = Secret::parse(tls_secret(&crt, &key).as_bytes()).unwrap();
        let kp = s.key_pair.as_ref().unwrap();
        assert_eq!(kp.info.dns_names, vec!["a.example.com", "*.b.example.com"]);
        assert_eq!(kp.info.subject, "CN=a.example.com");
        assert_eq!(kp.info.serial, "07");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let days = (kp.info.not_after_unix - now) / 86_400;
        assert!((29..=30).contains(&days), "{days}");
        // Redacted when shown.
        let shown = serde_json::to_string(&s).unwrap();
        assert!(!shown.contains("BEGIN"), "{shown}");
        assert!(!shown.contains(&b64(&key)), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn string_data_and_multiline_base64_are_read() {
        let (crt, key) = test_certs::pem(&["a.example.com"]);
        let wrapped: String = b64(&crt)
            .as_bytes()
            .chunks(76)
            .map(|c| format!("    {}\n", std::str::from_utf8(c).unwrap()))
            .collect();
        let y =
            format!(
            "type: kubernetes.io/tls\ndata:\n  tls.crt: |\n{wrapped}stringData:\n  tls.key: |\n{}",
            key.lines().map(|l| format!("    {l}\n")).collect::<String>()
        );
        let s = Secret::parse(y.as_bytes()).unwrap();
        assert!(s.key_pair.is_some());
    }

    #[test]
    fn bad_material_names_the_key() {
        let (crt, key) = test_certs::pem(&["a.example.com"]);
        let (_, other_key) = test_certs::pem(&["b.example.com"]);
        let e = Secret::parse(tls_secret(&crt, &other_key).as_bytes()).unwrap_err();
        assert_eq!(e.path, "data[\"tls.key\"]");
        assert!(e.message.contains("does not belong"), "{e}");
        let e = Secret::parse(tls_secret("garbage", &key).as_bytes()).unwrap_err();
        assert_eq!(e.path, "data[\"tls.crt\"]");
        let e = Secret::parse(tls_secret(&crt, "garbage").as_bytes()).unwrap_err();
        assert_eq!(e.path, "data[\"tls.key\"]");
        let e = Secret::parse(b"type: kubernetes.io/tls\ndata:\n  tls.crt: \"@@\"\n").unwrap_err();
        assert_eq!(e.path, "data[\"tls.crt\"]");
        assert_eq!(e.message, "not base64: invalid character at offset 0");
        let e = Secret::parse(
            format!("type: kubernetes.io/tls\ndata:\n  tls.crt: {}\n", b64(&crt)).as_bytes(),
        )
        .unwrap_err();
        assert_eq!(e.path, "data[\"tls.key\"]");
        let e =
            Secret::parse(format!("data:\n  ca.crt: {}\n", b64("nope")).as_bytes()).unwrap_err();
        assert_eq!(e.path, "data[\"ca.crt\"]");
    }

    #[test]
    fn errors_never_show_key_material() {
        let (_, key) = test_certs::pem(&["a.example.com"]);
        // A PEM block where a map belongs: the parser's message would quote it.
        let y = format!(
            "data: |\n{}",
            key.lines().map(|l| format!("  {l}\n")).collect::<String>()
        );
        let e = Secret::parse(y.as_bytes()).unwrap_err();
        assert_eq!(e.path, "data");
        assert!(!e.to_string().contains("PRIVATE"), "{e}");
        assert!(e.message.contains("(value not shown)"), "{e}");
        // An encrypted key is refused at once (OpenSSL would ask for a passphrase).
        let encrypted = test_certs::key()
            .private_key_to_pem_pkcs8_passphrase(openssl::symm::Cipher::aes_128_cbc(), b"pw")
            .unwrap();
        let (crt, _) = test_certs::pem(&["a.example.com"]);
        let y = format!(
            "data:\n  tls.crt: {}\n  tls.key: {}\n",
            b64(&crt),
            b64(std::str::from_utf8(&encrypted).unwrap())
        );
        let e = Secret::parse(y.as_bytes()).unwrap_err();
        assert_eq!(e.path, "data[\"tls.key\"]");
        assert!(e.message.contains("encrypted"), "{e}");
    }

    #[test]
    fn istio_key_names_are_read_too() {
        let (crt, key) = test_certs::pem(&["a.example.com"]);
        let y = format!("data:\n  cert: {}\n  key: {}\n", b64(&crt), b64(&key));
        assert!(Secret::parse(y.as_bytes()).unwrap().key_pair.is_some());
        let y = format!("data:\n  key: {}\n", b64(&key));
        assert_eq!(
            Secret::parse(y.as_bytes()).unwrap_err().path,
            "data[\"cert\"]"
        );
    }

    #[test]
    fn opaque_secrets_without_tls_keys_are_fine() {
        let s = Secret::parse(format!("data:\n  password: {}\n", b64("x")).as_bytes()).unwrap();
        assert_eq!(s.kind, "Opaque");
        assert!(s.key_pair.is_none() && s.ca.is_none());
    }
}
