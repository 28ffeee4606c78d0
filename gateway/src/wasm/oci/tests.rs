//! Pulls from a scripted registry on loopback: auth challenges, redirects, indexes,
//! digest checks, the cache and pull policies. (gateway/tests/oci.rs pulls from a real
//! registry.)

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};

use base64::Engine;

use super::layout::tests::tar_gz;
use super::*;
use crate::wasm::vm::sha256_hex;

const WASM: &[u8] = b"\0asm\x01\0\0\0 a module";

struct Req {
    path: String,
    headers: HashMap<String, String>,
}

type Answer = (u16, Vec<(&'static str, String)>, Vec<u8>);

/// Serves `route` on loopback, one request per connection; records request paths.
fn serve(route: impl Fn(&Req) -> Answer + Send + 'static) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut headers = HashMap::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
            let req = Req { path, headers };
            log.lock().unwrap().push(req.path.clone());
            let (status, hdrs, body) = route(&req);
            let mut out = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            );
            for (k, v) in hdrs {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("\r\n");
            let mut conn = reader.into_inner();
            let _ = conn.write_all(out.as_bytes());
            let _ = conn.write_all(&body);
        }
    });
    (addr, seen)
}

fn desc(media_type: &str, blob: &[u8]) -> serde_json::Value {
    serde_json::json!({"mediaType": media_type, "digest": format!("sha256:{}", sha256_hex(blob)), "size": blob.len()})
}

/// A Higress Go-style manifest: a doc layer, then plugin.tar.gz.
fn go_image() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let tgz = tar_gz(&[("plugin.wasm", WASM)]);
    let doc = b"# docs".to_vec();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": layout::OCI_MANIFEST,
        "config": desc("application/vnd.oci.image.config.v1+json", b"{}"),
        "layers": [desc("application/vnd.module.wasm.doc.v1+markdown", &doc), desc(layout::OCI_LAYER, &tgz)],
    }))
    .unwrap();
    (manifest, doc, tgz)
}

fn opts(dir: &tempfile::TempDir) -> OciOptions {
    OciOptions {
        insecure: vec!["*".into()],
        cache_dir: dir.path().join("oci"),
    }
}

fn docker_config(registry: &str, user: &str, pass: &str) -> Vec<u8> {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!(r#"{{"auths":{{"{registry}":{{"auth":"{auth}"}}}}}}"#).into_bytes()
}

#[test]
fn bearer_tokens_redirects_and_the_cache() {
    let (manifest, _, tgz) = go_image();
    let tgz_digest = format!("sha256:{}", sha256_hex(&tgz));
    let addr_cell: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let cell = addr_cell.clone();
    let (addr, seen) = serve(move |r| {
        let me = cell.lock().unwrap().unwrap();
        let authed = r.headers.get("authorization").map(String::as_str) == Some("Bearer tok-1");
        if r.path.starts_with("/token?") {
            let basic = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("alice:pw")
            );
            assert!(
                r.path.contains("scope=repository%3Aplugins%2Ft%3Apull"),
                "{}",
                r.path
            );
            assert!(r.path.contains("service=fake"), "{}", r.path);
            return if r.headers.get("authorization") == Some(&basic) {
                (200, vec![], br#"{"token":"tok-1"}"#.to_vec())
            } else {
                (401, vec![], vec![])
            };
        }
        if r.path.starts_with("/cdn/") {
            // Credentials stay with the registry's host.
            assert!(!r.headers.contains_key("authorization"));
            return (200, vec![], tgz.clone());
        }
        if !authed {
            let challenge = format!(
                r#"Bearer realm="http://{me}/token",service="fake",scope="repository:plugins/t:pull""#
            );
            return (
                401,
                vec![("www-authenticate", challenge)],
                br#"{"errors":[]}"#.to_vec(),
            );
        }
        match r.path.as_str() {
            "/v2/plugins/t/manifests/1.0" => {
                assert!(r.headers["accept"].contains(layout::OCI_MANIFEST));
                (
                    200,
                    vec![("content-type", layout::OCI_MANIFEST.to_string())],
                    manifest.clone(),
                )
            }
            p if p == format!("/v2/plugins/t/blobs/{tgz_digest}") => (
                307,
                vec![("location", format!("http://localhost:{}/cdn/x", me.port()))],
                vec![],
            ),
            _ => (
                404,
                vec![],
                br#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#.to_vec(),
            ),
        }
    });
    *addr_cell.lock().unwrap() = Some(addr);
    let dir = tempfile::tempdir().unwrap();
    let image = format!("{addr}/plugins/t:1.0");
    let secret = docker_config(&addr.to_string(), "alice", "pw");
    let req = PullRequest {
        docker_config: Some(&secret),
        ..Default::default()
    };
    let p = pull(&opts(&dir), &image, &req).unwrap();
    assert_eq!(p.wasm, WASM);
    assert_eq!(p.digest, sha256_hex(&go_image().0));
    assert!(!p.from_cache);
    let hits = seen.lock().unwrap().len();
    // No policy, not `latest`: the cache answers.
    let p = pull(&opts(&dir), &image, &req).unwrap();
    assert!(p.from_cache);
    assert_eq!(p.wasm, WASM);
    assert_eq!(seen.lock().unwrap().len(), hits);
    // `Always` asks the registry again.
    let always = PullRequest {
        policy: PullPolicy::Always,
        ..req
    };
    assert!(!pull(&opts(&dir), &image, &always).unwrap().from_cache);
    // Wrong credentials: the token endpoint says no.
    let bad = docker_config(&addr.to_string(), "alice", "nope");
    let e = pull(
        &opts(&dir),
        &format!("{addr}/plugins/t:2.0"),
        &PullRequest {
            docker_config: Some(&bad),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("token from http://") && e.contains("401"), "{e}");
}

#[test]
fn indexes_raw_layers_and_digest_checks() {
    let config = b"{}".to_vec();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "layers": [desc("application/vnd.module.wasm.config.v1+json", &config), desc(layout::WASM_LAYER, WASM)],
    }))
    .unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": layout::OCI_INDEX,
        "manifests": [{"mediaType": layout::OCI_MANIFEST, "digest": format!("sha256:{}", sha256_hex(&manifest)), "size": manifest.len(), "platform": {"os": "wasip1", "architecture": "wasm"}}],
    }))
    .unwrap();
    let (m, i) = (manifest.clone(), index.clone());
    let (addr, _) = serve(move |r| {
        let p = r.path.as_str();
        if p == "/v2/cpp/p/manifests/v1"
            || p.ends_with(&sha256_hex(&i)) && p.contains("/manifests/")
        {
            return (
                200,
                vec![("content-type", layout::OCI_INDEX.to_string())],
                i.clone(),
            );
        }
        if p.contains("/manifests/")
            && (p.ends_with(&sha256_hex(&m)) || p.starts_with("/v2/cpp/liar/"))
        {
            return (
                200,
                vec![("content-type", layout::OCI_MANIFEST.to_string())],
                m.clone(),
            );
        }
        if p.ends_with(&sha256_hex(WASM)) {
            return (200, vec![], WASM.to_vec());
        }
        if p == "/v2/cpp/bad/manifests/v1" {
            // A manifest whose layer the registry corrupts.
            let bad = serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": layout::OCI_MANIFEST,
                "layers": [{"mediaType": layout::WASM_LAYER, "digest": format!("sha256:{}", "1".repeat(64))}, desc("x", b"x")],
            }))
            .unwrap();
            return (200, vec![], bad);
        }
        if p.ends_with(&"1".repeat(64)) {
            return (200, vec![], WASM.to_vec());
        }
        (404, vec![], vec![])
    });
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&dir);
    let p = pull(&o, &format!("{addr}/cpp/p:v1"), &PullRequest::default()).unwrap();
    assert_eq!(p.wasm, WASM);
    // The digest is the index's: what the reference names.
    assert_eq!(p.digest, sha256_hex(&index));
    // By digest, and with the digest as spec.sha256.
    let by_digest = format!("{addr}/cpp/p@sha256:{}", sha256_hex(&index));
    let dir2 = tempfile::tempdir().unwrap();
    assert!(
        !pull(&opts(&dir2), &by_digest, &PullRequest::default())
            .unwrap()
            .from_cache
    );
    assert!(
        pull(&opts(&dir2), &by_digest, &PullRequest::default())
            .unwrap()
            .from_cache
    );
    // spec.sha256 that is not the manifest digest.
    let wrong = "2".repeat(64);
    let e = pull(
        &o,
        &format!("{addr}/cpp/p:v1"),
        &PullRequest {
            sha256: Some(&wrong),
            policy: PullPolicy::Always,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.is_digest_mismatch(), "{e}");
    assert!(
        e.to_string().contains(&format!("expected sha256:{wrong}")),
        "{e}"
    );
    // A digest reference the registry answers with other content.
    let e = pull(
        &o,
        &format!("{addr}/cpp/liar@sha256:{}", "3".repeat(64)),
        &PullRequest::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("the registry sent content with digest sha256:"),
        "{e}"
    );
    // A blob that does not match its digest.
    let e = pull(&o, &format!("{addr}/cpp/bad:v1"), &PullRequest::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("layer 0 (sha256:1111") && e.contains("the blob's sha256 is"),
        "{e}"
    );
    // No such image.
    let e = pull(&o, &format!("{addr}/cpp/none:v1"), &PullRequest::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("manifest v1: 404 Not Found: no such image"),
        "{e}"
    );
}

#[test]
fn basic_challenges_need_credentials() {
    let (addr, _) = serve(|r| {
        if r.headers.contains_key("authorization") {
            (403, vec![], b"denied".to_vec())
        } else {
            (
                401,
                vec![(
                    "www-authenticate",
                    r#"Basic realm="basic-realm""#.to_string(),
                )],
                vec![],
            )
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let e = pull(
        &opts(&dir),
        &format!("{addr}/p/x:1"),
        &PullRequest::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(&format!("registry {addr} refused access"))
            && e.contains("spec.imagePullSecret"),
        "{e}"
    );
    let secret = docker_config(&addr.to_string(), "u", "p");
    let e = pull(
        &opts(&dir),
        &format!("{addr}/p/x:1"),
        &PullRequest {
            docker_config: Some(&secret),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("403 Forbidden: the registry refused the credentials"),
        "{e}"
    );
}

#[test]
fn an_unreachable_registry_falls_back_to_the_cache_for_latest_only() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&dir);
    // Port 1 on loopback: refused at once.
    let image = "127.0.0.1:1/p/x";
    let e = pull(&o, image, &PullRequest::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("registry 127.0.0.1:1 unreachable: connecting to 127.0.0.1:1"),
        "{e}"
    );
    assert!(e.contains("after 4 attempts"), "{e}");
    let hex = "cd".repeat(32);
    cache::Cache::new(&o.cache_dir)
        .store("127.0.0.1:1/p/x:latest", &hex, WASM)
        .unwrap();
    // `latest` without a policy asks the registry first, then takes the cache.
    let p = pull(&o, image, &PullRequest::default()).unwrap();
    assert!(p.from_cache);
    assert_eq!(p.digest, hex);
    // A pinned digest is the cache's without asking.
    let p = pull(
        &o,
        &format!("127.0.0.1:1/p/y@sha256:{hex}"),
        &PullRequest::default(),
    )
    .unwrap();
    assert_eq!(p.wasm, WASM);
}

#[test]
fn insecure_registries_and_policies() {
    let o = OciOptions {
        insecure: vec!["r.local:5000".into(), " 10.0.0.1".into()],
        cache_dir: PathBuf::new(),
    };
    assert!(o.insecure("r.local:5000"));
    assert!(!o.insecure("r.local:5001"));
    assert!(!o.insecure("r.local"));
    assert!(o.insecure("10.0.0.1:5000"));
    assert!(o.insecure("10.0.0.1"));
    assert!(!o.insecure("example.com"));
    let all = OciOptions {
        insecure: vec!["*".into()],
        ..Default::default()
    };
    assert!(all.insecure("example.com"));
    assert_eq!(PullPolicy::parse(Some("Always")), PullPolicy::Always);
    assert_eq!(
        PullPolicy::parse(Some("IfNotPresent")),
        PullPolicy::IfNotPresent
    );
    assert_eq!(
        PullPolicy::parse(Some("UNSPECIFIED_POLICY")),
        PullPolicy::Unspecified
    );
    assert_eq!(PullPolicy::parse(None), PullPolicy::Unspecified);
}
