//! TLS test support: a test CA that issues certificates on the spot, Secret files in the
//! standalone layout, and a TLS client (OpenSSL) for the raw HTTP/1.1 client.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};

use base64::Engine;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslConnector, SslMethod, SslStream, SslVerifyMode};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509NameBuilder, X509};

use crate::client::{connect, Conn};
use crate::ConfigDir;

fn ec_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn serial() -> openssl::asn1::Asn1Integer {
    let mut bn = BigNum::new().unwrap();
    bn.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    bn.to_asn1_integer().unwrap()
}

fn name(cn: &str) -> openssl::x509::X509Name {
    let mut b = X509NameBuilder::new().unwrap();
    b.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    b.build()
}

/// A certificate and its key, as PEM text.
#[derive(Clone)]
pub struct Issued {
    pub cert: X509,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Issued {
    /// Hex serial, as `openssl x509 -serial` prints it (uppercase).
    pub fn serial(&self) -> String {
        self.cert
            .serial_number()
            .to_bn()
            .unwrap()
            .to_hex_str()
            .unwrap()
            .to_string()
    }
}

/// A certificate authority of the test's own.
pub struct TestCa {
    pub cert: X509,
    key: PKey<Private>,
    pub dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new(cn: &str) -> TestCa {
        let key = ec_key();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&serial()).unwrap();
        b.set_subject_name(&name(cn)).unwrap();
        b.set_issuer_name(&name(cn)).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(365).unwrap())
            .unwrap();
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .unwrap(),
        )
        .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        let ca = TestCa {
            cert: b.build(),
            key,
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(ca.pem_path(), ca.pem()).unwrap();
        ca
    }

    pub fn pem(&self) -> String {
        String::from_utf8(self.cert.to_pem().unwrap()).unwrap()
    }

    /// The CA certificate as a file (for curl `--cacert`, `openssl s_client -CAfile`).
    pub fn pem_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A server (and client) certificate for `names`, the first also its CN, valid for
    /// `days`.
    pub fn issue_for(&self, names: &[&str], days: u32) -> Issued {
        let key = ec_key();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&serial()).unwrap();
        b.set_subject_name(&name(names[0])).unwrap();
        b.set_issuer_name(self.cert.subject_name()).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(days).unwrap())
            .unwrap();
        let mut san = SubjectAlternativeName::new();
        for n in names {
            san.dns(n);
        }
        let san = san
            .build(&b.x509v3_context(Some(&self.cert), None))
            .unwrap();
        b.append_extension(san).unwrap();
        b.append_extension(
            ExtendedKeyUsage::new()
                .server_auth()
                .client_auth()
                .build()
                .unwrap(),
        )
        .unwrap();
        b.sign(&self.key, MessageDigest::sha256()).unwrap();
        let cert = b.build();
        Issued {
            cert_pem: String::from_utf8(cert.to_pem().unwrap()).unwrap(),
            key_pem: String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap(),
            cert,
        }
    }

    pub fn issue(&self, names: &[&str]) -> Issued {
        self.issue_for(names, 90)
    }

    /// Write `issued` (and its chain file) for nginx: returns (cert path, key path).
    pub fn files(&self, stem: &str, issued: &Issued) -> (PathBuf, PathBuf) {
        let crt = self.dir.path().join(format!("{stem}.crt"));
        let key = self.dir.path().join(format!("{stem}.key"));
        std::fs::write(&crt, &issued.cert_pem).unwrap();
        std::fs::write(&key, &issued.key_pem).unwrap();
        (crt, key)
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A `kubernetes.io/tls` Secret's YAML, with `ca.crt` when given.
pub fn tls_secret_yaml(name: &str, issued: &Issued, ca: Option<&str>) -> String {
    let mut y = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
        b64(&issued.cert_pem),
        b64(&issued.key_pem)
    );
    if let Some(ca) = ca {
        y.push_str(&format!("  ca.crt: {}\n", b64(ca)));
    }
    y
}

impl ConfigDir {
    /// `secrets/<name>.yaml` holding `issued`.
    pub fn tls_secret(&self, name: &str, issued: &Issued) {
        self.write(
            &format!("secrets/{name}.yaml"),
            &tls_secret_yaml(name, issued, None),
        );
    }
}

/// A TLS connection to `addr` sending `sni`, trusting `ca` (and checking the name
/// `sni` when given): the raw client over it.
pub fn tls_conn(addr: SocketAddr, sni: Option<&str>, ca: &Path) -> std::io::Result<Conn> {
    let (conn, _) = tls_conn_with_cert(addr, sni, ca)?;
    Ok(conn)
}

/// As [`tls_conn`], also giving the certificate the server presented.
pub fn tls_conn_with_cert(
    addr: SocketAddr,
    sni: Option<&str>,
    ca: &Path,
) -> std::io::Result<(Conn, X509)> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(std::io::Error::other)?;
    b.set_ca_file(ca).map_err(std::io::Error::other)?;
    b.set_alpn_protos(b"\x08http/1.1")
        .map_err(std::io::Error::other)?;
    let connector = b.build();
    let mut cfg = connector.configure().map_err(std::io::Error::other)?;
    if sni.is_none() {
        cfg.set_use_server_name_indication(false);
        cfg.set_verify_hostname(false);
    }
    cfg.set_verify(SslVerifyMode::PEER);
    let tcp = connect(addr)?;
    let raw = tcp.try_clone()?;
    let tls: SslStream<TcpStream> = cfg
        .connect(sni.unwrap_or("unused"), raw)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let cert = tls
        .ssl()
        .peer_certificate()
        .ok_or_else(|| std::io::Error::other("no server certificate"))?;
    Ok((Conn::over(tcp, Box::new(tls)), cert))
}

/// What `openssl s_client` says of a handshake with `addr`: (subject line, verify
/// result line, whole output).
pub fn s_client(addr: SocketAddr, sni: Option<&str>, ca: &Path) -> (String, String, String) {
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(["s_client", "-connect", &addr.to_string(), "-CAfile"])
        .arg(ca);
    match sni {
        Some(s) => {
            cmd.args(["-servername", s]);
        }
        None => {
            cmd.arg("-noservername");
        }
    }
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl (Debian openssl) must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    (line("subject="), line("Verify return code:"), text)
}
