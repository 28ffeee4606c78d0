//! TLS to backends: Debian nginx serving certificates of a test CA tells which SNI (and
//! client certificate) it saw; the gateway reaches it through McpBridge `protocol: https`
//! registries and the `backend-protocol` / `proxy-ssl-*` annotations, verifies what it
//! is told to, and answers 503 with flag `UF` when verification fails.

use test_support::nginx::Nginx;
use test_support::tls::{tls_secret_yaml, TestCa};
use test_support::*;

/// An Ingress `name` for `host` to `to` with annotations.
fn route(cfg: &ConfigDir, name: &str, host: &str, to: &str, annotations: &[(&str, &str)]) {
    let mut ann = vec![("higress.io/destination", to)];
    ann.extend_from_slice(annotations);
    cfg.ingress(name, &ann, &[(Some(host), "Prefix", "/")]);
}

/// The McpBridge with these `(name, endpoint, protocol, sni)` static registries.
fn registries(cfg: &ConfigDir, regs: &[(&str, std::net::SocketAddr, &str, Option<&str>)]) {
    let mut y = String::from("apiVersion: networking.higress.io/v1\nkind: McpBridge\nmetadata:\n  name: default\nspec:\n  registries:\n");
    for (name, addr, protocol, sni) in regs {
        y.push_str(&format!(
            "  - {{type: static, name: {name}, domain: \"{addr}\", port: 443, protocol: {protocol}"
        ));
        if let Some(s) = sni {
            y.push_str(&format!(", sni: {s}"));
        }
        y.push_str("}\n");
    }
    cfg.write("mcpbridges/default.yaml", &y);
}

#[test]
fn tls_to_backends_sends_the_right_sni_verifies_and_refuses_a_wrong_certificate() {
    let ca = TestCa::new("Upstream CA");
    let other_ca = TestCa::new("Someone else's CA");
    let good = ca.issue(&["backend.test"]);
    let (crt, key) = ca.files("backend", &good);
    let nginx = Nginx::tls_echo(&crt, &key, None);
    // The same host with a certificate the gateway does not trust.
    let wrong = other_ca.issue(&["backend.test"]);
    let (wcrt, wkey) = other_ca.files("wrong", &wrong);
    let impostor = Nginx::tls_echo(&wcrt, &wkey, None);

    let cfg = ConfigDir::new();
    registries(
        &cfg,
        &[
            ("reg", nginx.addr, "https", Some("backend.test")),
            ("imp", impostor.addr, "https", Some("backend.test")),
            ("plain", nginx.addr, "http", None),
            ("nosni", nginx.addr, "https", None),
        ],
    );
    // `ca.crt` only: a trust anchor for `proxy-ssl-secret`.
    cfg.write(
        "secrets/upstream-ca.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: upstream-ca\ndata:\n  ca.crt: {}\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, ca.pem())
        ),
    );
    // 1. The registry's TLS: its `sni`, verified against the system trust store (the
    //    test CA stands in for it through SSL_CERT_FILE).
    route(&cfg, "r-reg", "reg.test", "reg.static", &[]);
    // 2. The same registry name on a server with a certificate nobody here trusts.
    route(&cfg, "r-imp", "imp.test", "imp.static", &[]);
    // 3. A plain registry made TLS by annotations: verified against the secret's CA,
    //    `proxy-ssl-name` sent as SNI.
    let verify = [
        ("higress.io/backend-protocol", "HTTPS"),
        ("higress.io/proxy-ssl-secret", "upstream-ca"),
        ("higress.io/proxy-ssl-verify", "on"),
        ("higress.io/proxy-ssl-name", "backend.test"),
        ("higress.io/proxy-ssl-server-name", "on"),
    ];
    route(&cfg, "r-ann", "ann.test", "plain.static", &verify);
    // 4. Verification on, but the name to check is not the certificate's.
    let mut misnamed = verify;
    misnamed[3] = ("higress.io/proxy-ssl-name", "other.test");
    route(
        &cfg,
        "r-misnamed",
        "misnamed.test",
        "plain.static",
        &misnamed,
    );
    // 5. Verification off: the untrusted server is reached (Higress's default for
    //    annotated HTTPS).
    route(
        &cfg,
        "r-noverify",
        "noverify.test",
        "imp.static",
        &[("nginx.ingress.kubernetes.io/proxy-ssl-verify", "off")],
    );
    // 6. `proxy-ssl-server-name: on` without a name: the request's host is the SNI.
    route(
        &cfg,
        "r-host",
        "backend.test",
        "nosni.static",
        &[("higress.io/proxy-ssl-server-name", "on")],
    );
    // 7. A registry without `sni`: no SNI, no verification.
    route(&cfg, "r-nosni", "nosni.test", "nosni.static", &[]);
    // 8. Verification with the request's host as the name, for any host: a request to an
    //    IP address has no name to check, so it is refused rather than sent unverified.
    cfg.ingress(
        "r-any",
        &[
            ("higress.io/destination", "plain.static"),
            ("higress.io/backend-protocol", "HTTPS"),
            ("higress.io/proxy-ssl-secret", "upstream-ca"),
            ("higress.io/proxy-ssl-verify", "on"),
        ],
        &[(None, "Prefix", "/")],
    );

    let gw = Gateway::start_with_env(
        cfg.path(),
        &[],
        &[("SSL_CERT_FILE", ca.pem_path().to_str().unwrap())],
    );
    let sni_of = |host: &str| {
        let r = get(gw.http, host, "/x").unwrap();
        assert_eq!(r.status, 200, "{host}: {}", r.text());
        r.header("x-sni").unwrap_or("").to_string()
    };
    assert_eq!(sni_of("reg.test"), "backend.test");
    assert_eq!(sni_of("ann.test"), "backend.test");
    // Verification off keeps the registry's SNI.
    assert_eq!(sni_of("noverify.test"), "backend.test");
    assert_eq!(sni_of("backend.test"), "backend.test");
    assert_eq!(sni_of("nosni.test"), "");

    for host in ["imp.test", "misnamed.test"] {
        let r = get(gw.http, host, "/refused").unwrap();
        assert_eq!(r.status, 503, "{host}");
        let body = r.text();
        assert!(
            body.starts_with("upstream connect error or disconnect/reset before headers. reset reason: connection failure, transport failure reason: TLS error:"),
            "{host}: {body}"
        );
        assert!(body.contains("certificate verify failed"), "{host}: {body}");
        let e = gw.wait_access("the refused request", |e| {
            e["authority"] == host && e["path"] == "/refused"
        });
        let flags = e["response_flags"].as_str().unwrap();
        assert!(flags.split(',').any(|f| f == "UF"), "{host}: {e}");
        assert!(
            e["upstream_transport_failure_reason"]
                .as_str()
                .is_some_and(|r| r.contains("certificate verify failed")),
            "{e}"
        );
    }
    // Any other host is the name sent and checked: nginx's certificate names backend.test.
    let r = get(gw.http, "backend.test.", "/any").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = get(gw.http, "127.0.0.1", "/ip").unwrap();
    assert_eq!(r.status, 503);
    assert!(
        r.text()
            .contains("no server name to verify the certificate against"),
        "{}",
        r.text()
    );
    let e = gw.wait_access("the refused IP request", |e| e["path"] == "/ip");
    assert!(e["response_flags"].as_str().unwrap().contains("UF"), "{e}");
    assert_eq!(
        gw.metric("envoy_cluster_ssl_connection_error{cluster_name=\"outbound|443||imp.static\"}"),
        // The first attempt and Envoy's two retries, for imp.test.
        Some(3.0)
    );
    assert!(
        gw.metric("envoy_cluster_ssl_handshake{cluster_name=\"outbound|443||reg.static\"}")
            .unwrap()
            >= 1.0
    );
    // Keep-alive TLS upstream connections are reused: six requests, one connection.
    // (The gateway returns a connection to its pool just after the client has the
    // response, so on a loaded machine the next request may rarely find it still out
    // and open a second; never one per request.)
    for _ in 0..5 {
        assert_eq!(sni_of("reg.test"), "backend.test");
    }
    let opened = gw
        .metric("envoy_cluster_upstream_cx_total{cluster_name=\"outbound|443||reg.static\"}")
        .unwrap();
    assert!(
        (1.0..=2.0).contains(&opened),
        "{opened} connections for 6 requests"
    );
    // /debug/configz shows each destination's TLS.
    let z = gw.configz();
    let dest = |host: &str| {
        z["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["host"] == host)
            .map(|v| v["routes"][0]["destinations"][0]["tls"].clone())
            .unwrap()
    };
    assert_eq!(dest("ann.test")["verify"], true);
    assert_eq!(dest("ann.test")["ca"], "secret ca.crt");
    assert_eq!(dest("reg.test")["sni"], "backend.test");
    assert_eq!(dest("noverify.test")["verify"], false);
    assert!(dest("nosni.test")["sni"].is_null());
}

#[test]
fn a_client_certificate_from_proxy_ssl_secret_passes_mutual_tls() {
    let ca = TestCa::new("mTLS CA");
    let server = ca.issue(&["backend.test"]);
    let (crt, key) = ca.files("server", &server);
    let nginx = Nginx::tls_echo(&crt, &key, Some(&ca.pem_path()));
    let client = ca.issue(&["gateway-client"]);

    let cfg = ConfigDir::new();
    registries(&cfg, &[("be", nginx.addr, "https", Some("backend.test"))]);
    cfg.write(
        "secrets/client-cert.yaml",
        &tls_secret_yaml("client-cert", &client, Some(&ca.pem())),
    );
    route(
        &cfg,
        "mtls",
        "mtls.test",
        "be.static",
        &[
            ("higress.io/proxy-ssl-secret", "higress-system/client-cert"),
            ("higress.io/proxy-ssl-verify", "on"),
        ],
    );
    route(
        &cfg,
        "anon",
        "anon.test",
        "be.static",
        &[("higress.io/proxy-ssl-verify", "off")],
    );
    let gw = Gateway::start(cfg.path());
    let r = get(gw.http, "mtls.test", "/").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text().trim(), "sni=backend.test client=CN=gateway-client");
    // Without a client certificate nginx answers 400 itself.
    let r = get(gw.http, "anon.test", "/").unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("No required SSL certificate was sent"),
        "{}",
        r.text()
    );
}

#[test]
fn grpcs_registries_speak_http2_over_tls() {
    // The inner gateway's HTTPS listener is the TLS + h2 backend; its access log says
    // what arrived.
    let be = Backend::start("be");
    let ca = TestCa::new("h2 CA");
    let inner_cfg = ConfigDir::routing_all_to(&be);
    inner_cfg.tls_secret("inner-cert", &ca.issue(&["inner.test"]));
    inner_cfg.write(
        "configmaps/domain-inner.test.yaml",
        "data:\n  domain: inner.test\n  enableHttps: \"on\"\n  cert: inner-cert\n",
    );
    let inner = Gateway::start(inner_cfg.path());
    wait_for("the inner HTTPS listener", || {
        std::net::TcpStream::connect(inner.https).ok()
    });

    let cfg = ConfigDir::new();
    registries(&cfg, &[("inner", inner.https, "grpcs", Some("inner.test"))]);
    route(&cfg, "via-h2", "h2.test", "inner.static", &[]);
    let outer = Gateway::start_with_env(
        cfg.path(),
        &[],
        &[("SSL_CERT_FILE", ca.pem_path().to_str().unwrap())],
    );
    let r = get(outer.http, "h2.test", "/over-h2").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["headers"]["x-forwarded-proto"], "https");
    let e = inner.wait_access("the request at the inner gateway", |e| {
        e["path"] == "/over-h2"
    });
    assert_eq!(e["protocol"], "HTTP/2");
    assert_eq!(e["requested_server_name"], "inner.test");
}
