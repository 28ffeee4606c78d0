//! `gateway demo`: a built-in config for `foo.bar.com` and an in-process echo upstream
//! that answers like httpbin's `/get` (args, headers, origin, url as JSON). HTTPS is on
//! for the host, with a self-signed certificate made at start, configured as the Higress
//! console does it (a domain ConfigMap and a `kubernetes.io/tls` Secret).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const DEMO_HOST: &str = "foo.bar.com";

/// The demo's certificate Secret and the domain ConfigMap that uses it.
const DEMO_SECRET: &str = "foo-bar-com";

/// A self-signed certificate for `host` (ECDSA P-256, 30 days): (cert PEM, key PEM).
fn self_signed(host: &str) -> Result<(Vec<u8>, Vec<u8>), openssl::error::ErrorStack> {
    use openssl::asn1::Asn1Time;
    use openssl::bn::{BigNum, MsbOption};
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509NameBuilder, X509};
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, host)?;
    let name = name.build();
    let mut serial = BigNum::new()?;
    serial.rand(64, MsbOption::MAYBE_ZERO, false)?;
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let serial = serial.to_asn1_integer()?;
    let (not_before, not_after) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(30)?);
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(&key)?;
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    let san = SubjectAlternativeName::new()
        .dns(host)
        .build(&b.x509v3_context(None, None))?;
    b.append_extension(san)?;
    b.sign(&key, MessageDigest::sha256())?;
    Ok((b.build().to_pem()?, key.private_key_to_pem_pkcs8()?))
}

/// Write the demo config into `dir` (the standalone layout), pointing at `echo`.
pub fn write_config(dir: &Path, echo: SocketAddr) -> std::io::Result<()> {
    use base64::Engine;
    let (crt, key) = self_signed(DEMO_HOST).map_err(std::io::Error::other)?;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let files = [
        (
            "mcpbridges/default.yaml",
            format!(
                "apiVersion: networking.higress.io/v1\nkind: McpBridge\nmetadata:\n  name: default\n  namespace: higress-system\nspec:\n  registries:\n  - type: static\n    name: httpbin\n    domain: {echo}\n    port: 80\n"
            ),
        ),
        (
            "ingresses/route-foo-bar.yaml",
            format!(
                "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: route-foo-bar\n  namespace: higress-system\n  annotations:\n    higress.io/destination: httpbin.static\nspec:\n  ingressClassName: higress\n  rules:\n  - host: {DEMO_HOST}\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          resource:\n            apiGroup: networking.higress.io\n            kind: McpBridge\n            name: default\n"
            ),
        ),
        (
            "configmaps/higress-config.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: higress-config\n  namespace: higress-system\ndata:\n  higress: |-\n    downstream:\n      idleTimeout: 180\n    addXRealIpHeader: false\n".to_string(),
        ),
        (
            "secrets/foo-bar-com.yaml",
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {DEMO_SECRET}\n  namespace: higress-system\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
                b64(&crt),
                b64(&key)
            ),
        ),
        (
            "configmaps/domain-foo.bar.com.yaml",
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: domain-{DEMO_HOST}\n  namespace: higress-system\n  labels:\n    higress.io/config-map-type: domain\ndata:\n  domain: {DEMO_HOST}\n  enableHttps: \"on\"\n  cert: {DEMO_SECRET}\n"
            ),
        ),
    ];
    for (rel, body) in files {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(p, body)?;
    }
    Ok(())
}

/// Serve the echo upstream on `listener` until the runtime stops.
pub async fn serve_echo(listener: TcpListener) {
    loop {
        let Ok((conn, peer)) = listener.accept().await else {
            continue;
        };
        // Head and body go out in two writes: with Nagle on, the body waits for the
        // gateway's delayed ACK (40 ms) on every reused connection.
        let _ = conn.set_nodelay(true);
        tokio::spawn(async move {
            let _ = echo_connection(conn, peer).await;
        });
    }
}

async fn echo_connection(mut conn: TcpStream, peer: SocketAddr) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(8192);
    loop {
        // Read one request head.
        let (head_len, method, target, headers) = loop {
            let mut hdrs = [httparse::EMPTY_HEADER; 96];
            let mut req = httparse::Request::new(&mut hdrs);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let headers: Vec<(String, String)> = req
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    break (
                        n,
                        req.method.unwrap_or("GET").to_string(),
                        req.path.unwrap_or("/").to_string(),
                        headers,
                    );
                }
                Ok(httparse::Status::Partial) => {
                    let mut chunk = [0u8; 8192];
                    let n = conn.read(&mut chunk).await?;
                    if n == 0 {
                        return Ok(());
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                Err(_) => {
                    conn.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await?;
                    return Ok(());
                }
            }
        };
        let body_len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_len + body_len {
            let mut chunk = [0u8; 8192];
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&buf[head_len..head_len + body_len]).into_owned();
        buf.drain(..head_len + body_len);
        let close = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close"));
        let json = echo_body(&method, &target, &headers, &body, peer);
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n",
            json.len(),
            if close { "connection: close\r\n" } else { "" }
        );
        conn.write_all(resp.as_bytes()).await?;
        conn.write_all(json.as_bytes()).await?;
        if close {
            return Ok(());
        }
    }
}

fn echo_body(
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &str,
    peer: SocketAddr,
) -> String {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut args: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        args.insert(k.to_string(), serde_json::Value::String(v.to_string()));
    }
    let mut hdrs = serde_json::Map::new();
    for (k, v) in headers {
        hdrs.insert(title_case(k), serde_json::Value::String(v.clone()));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let host = header("host").unwrap_or("");
    // Behind the gateway the scheme is the client's, as httpbin reads it.
    let scheme = header("x-forwarded-proto").unwrap_or("http");
    let mut v = serde_json::json!({
        "args": args,
        "headers": hdrs,
        "method": method,
        "origin": peer.ip().to_string(),
        "url": format!("{scheme}://{host}{path}{}{query}", if query.is_empty() { "" } else { "?" }),
    });
    if !body.is_empty() {
        v["data"] = serde_json::Value::String(body.to_string());
    }
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

/// httpbin shows header names as `X-Request-Id`.
fn title_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_looks_like_httpbin_get() {
        let h = vec![
            ("host".to_string(), "foo.bar.com".to_string()),
            ("x-request-id".into(), "abc".into()),
        ];
        let out = echo_body(
            "GET",
            "/get?foo=bar",
            &h,
            "",
            "127.0.0.1:5".parse().unwrap(),
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["args"]["foo"], "bar");
        assert_eq!(v["headers"]["X-Request-Id"], "abc");
        assert_eq!(v["url"], "http://foo.bar.com/get?foo=bar");
    }
}
