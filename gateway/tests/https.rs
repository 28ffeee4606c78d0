//! HTTPS end to end: certificates from Ingress `spec.tls`, domain ConfigMaps and Secrets
//! in the config directory; the HTTPS listener bound only once TLS is configured; SNI
//! picking the certificate (checked with `openssl s_client` and a Rust TLS client); h2
//! over ALPN (curl); HTTP->HTTPS redirects; live certificate rotation under load.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use test_support::tls::{s_client, tls_conn, tls_conn_with_cert, Issued, TestCa};
use test_support::*;

/// Whether the HTTPS listener takes connections.
fn https_bound(gw: &Gateway) -> bool {
    std::net::TcpStream::connect(gw.https).is_ok()
}

/// An Ingress `name` for `host` (None: no host) to `to`, with `spec.tls` entries
/// `(hosts, secret)` and annotations.
fn tls_ingress(
    name: &str,
    hosts: &[Option<&str>],
    to: &str,
    tls: &[(&[&str], &str)],
    annotations: &[(&str, &str)],
) -> String {
    let mut ann: Vec<(&str, &str)> = vec![("higress.io/destination", to)];
    ann.extend_from_slice(annotations);
    let rules: Vec<(Option<&str>, &str, &str)> =
        hosts.iter().map(|h| (*h, "Prefix", "/")).collect();
    let mut y = ingress_yaml(name, &ann, &rules);
    if !tls.is_empty() {
        y.push_str("  tls:\n");
        for (hosts, secret) in tls {
            y.push_str(&format!("  - secretName: {secret}\n"));
            if !hosts.is_empty() {
                y.push_str("    hosts:\n");
                for h in *hosts {
                    y.push_str(&format!("    - \"{h}\"\n"));
                }
            }
        }
    }
    y
}

/// Ingress `a` serving `a.test` (to `be.static`) with the certificate of secret `a-cert`.
fn a_test_over_tls(cfg: &ConfigDir) {
    cfg.write(
        "ingresses/a.yaml",
        &tls_ingress(
            "a",
            &[Some("a.test")],
            "be.static",
            &[(&["a.test"], "a-cert")],
            &[],
        ),
    );
}

/// `curl` over HTTPS to `host` (resolved to the gateway): (status, HTTP version, body).
fn curl_https(
    gw: &Gateway,
    ca: &TestCa,
    host: &str,
    path: &str,
    h2: bool,
) -> (u16, String, String) {
    let port = gw.https.port();
    let cacert = ca.pem_path();
    curl(&[
        if h2 { "--http2" } else { "--http1.1" },
        "--cacert",
        cacert.to_str().unwrap(),
        "--resolve",
        &format!("{host}:{port}:127.0.0.1"),
        &format!("https://{host}:{port}{path}"),
    ])
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `envoy_server_days_until_first_cert_expiring` is whole days from the scrape to the
/// `notAfter` of `issued`: check it against the days before and after the scrape.
fn assert_days_left(gw: &Gateway, issued: &Issued) {
    let epoch = openssl::asn1::Asn1Time::from_unix(0).unwrap();
    let d = epoch.diff(issued.cert.not_after()).unwrap();
    let not_after = i64::from(d.days) * 86_400 + i64::from(d.secs);
    let late = (not_after - unix_now()) / 86_400;
    let got = gw
        .metric("envoy_server_days_until_first_cert_expiring")
        .unwrap() as i64;
    let early = (not_after - unix_now()) / 86_400;
    assert!(
        (early..=late).contains(&got),
        "days until expiry {got}, expected {early}..={late}"
    );
}

fn subject_cn(line: &str) -> &str {
    line.rsplit("CN")
        .next()
        .unwrap_or("")
        .trim_start_matches([' ', '='])
        .trim()
}

#[test]
fn sni_picks_the_certificate_h2_is_negotiated_and_headers_say_https() {
    let be = Backend::start("be");
    let ca = TestCa::new("Test CA sni");
    let cfg = ConfigDir::routing_all_to(&be);
    cfg.tls_secret("a-cert", &ca.issue(&["a.test"]));
    // The first to expire.
    let w = ca.issue_for(&["*.w.test"], 45);
    cfg.tls_secret("w-cert", &w);
    cfg.tls_secret("d-cert", &ca.issue(&["default.test"]));
    cfg.write(
        "ingresses/sites.yaml",
        &tls_ingress(
            "sites",
            &[Some("a.test"), Some("*.w.test"), None],
            "be.static",
            &[
                (&["a.test"], "a-cert"),
                (&["*.w.test"], "w-cert"),
                (&[], "d-cert"),
            ],
            &[],
        ),
    );
    let gw = Gateway::start(cfg.path());
    wait_for("the HTTPS listener", || https_bound(&gw).then_some(()));

    // openssl s_client: the certificate per server name, verified against the test CA.
    for (sni, cn) in [
        (Some("a.test"), "a.test"),
        (Some("A.TEST"), "a.test"),
        (Some("x.w.test"), "*.w.test"),
        (Some("deep.x.w.test"), "*.w.test"),
        (Some("other.test"), "default.test"),
        (None, "default.test"),
    ] {
        let (subject, verify, all) = s_client(gw.https, sni, &ca.pem_path());
        assert_eq!(subject_cn(&subject), cn, "SNI {sni:?}: {all}");
        assert!(verify.contains("0 (ok)"), "SNI {sni:?}: {verify}\n{all}");
    }
    // TLS 1.1 is refused (Mozilla intermediate: 1.2 and 1.3).
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &gw.https.to_string(), "-tls1_1"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && text.contains("Cipher is (NONE)"),
        "TLS 1.1 must not complete: {text}"
    );

    // A Rust client over TLS: routed, and the edge headers say https.
    let mut c = tls_conn(gw.https, Some("a.test"), &ca.pem_path()).unwrap();
    let r = c.request("GET", "a.test", "/hello?x=1", &[]).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.json();
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    assert_eq!(seen["path"], "/hello?x=1");
    // Keep-alive over TLS.
    assert_eq!(c.request("GET", "a.test", "/2", &[]).unwrap().status, 200);
    let e = gw.wait_access("the TLS request in the access log", |e| e["path"] == "/2");
    assert_eq!(e["requested_server_name"], "a.test");
    assert_eq!(e["protocol"], "HTTP/1.1");
    // Plain HTTP still says http.
    let r = get(gw.http, "a.test", "/plain").unwrap();
    assert_eq!(r.json()["headers"]["x-forwarded-proto"], "http");
    let e = gw.wait_access("the plain request", |e| e["path"] == "/plain");
    assert!(e["requested_server_name"].is_null(), "{e}");

    // curl: h2 over ALPN, and HTTP/1.1 when asked.
    let (code, version, body) = curl_https(&gw, &ca, "x.w.test", "/h2", true);
    assert_eq!((code, version.as_str()), (200, "2"), "{body}");
    let (code, version, _) = curl_https(&gw, &ca, "x.w.test", "/h1", false);
    assert_eq!((code, version.as_str()), (200, "1.1"));
    let e = gw.wait_access("the h2 request", |e| e["path"] == "/h2");
    assert_eq!(e["protocol"], "HTTP/2");
    assert_eq!(e["requested_server_name"], "x.w.test");

    // Stats: the HTTPS listener's own prefix, Envoy's TLS counters, certificate expiry.
    let prefix = format!("outbound_127.0.0.1_{}", gw.https.port());
    let ssl_total = gw
        .metric(&format!(
            "envoy_http_downstream_cx_ssl_total{{http_conn_manager_prefix=\"{prefix}\"}}"
        ))
        .unwrap();
    assert!(ssl_total >= 4.0, "{ssl_total}");
    let listener = format!("127.0.0.1_{}", gw.https.port());
    let handshakes = gw
        .metric(&format!(
            "envoy_listener_ssl_handshake{{envoy_listener_address=\"{listener}\"}}"
        ))
        .unwrap();
    assert!(handshakes >= 4.0, "{handshakes}");
    assert!(
        gw.metric(&format!(
            "envoy_http_downstream_rq{{response_code_class=\"2xx\",http_conn_manager_prefix=\"{prefix}\"}}"
        ))
        .unwrap()
            >= 4.0
    );
    assert_days_left(&gw, &w);
    // /debug/configz lists the hosts and their certificates.
    let z = gw.configz();
    let certs = z["tls"]["certificates"].as_array().unwrap();
    let hosts: Vec<&str> = certs.iter().map(|c| c["host"].as_str().unwrap()).collect();
    assert_eq!(hosts, ["a.test", "*.w.test", "*"], "{z:#}");
    assert_eq!(certs[0]["secret"], "higress-system/a-cert");
    assert_eq!(certs[0]["certificate"]["dns_names"][0], "a.test");
    // /config_dump never shows key material.
    let dump = String::from_utf8(get(gw.admin, "admin", "/config_dump").unwrap().body).unwrap();
    assert!(
        dump.contains("a-cert") && dump.contains("redacted"),
        "{dump}"
    );
    assert!(
        !dump.contains("PRIVATE KEY") && !dump.contains("LS0tLS1CRUdJTi"),
        "{dump}"
    );
}

#[test]
fn the_listener_is_bound_only_while_certificates_exist() {
    let be = Backend::start("be");
    let ca = TestCa::new("Test CA bind");
    let cfg = ConfigDir::routing_all_to(&be);
    let gw = Gateway::start(cfg.path());
    assert!(!https_bound(&gw), "no TLS configured: nothing listens");
    assert!(!gw.listening_ports().contains(&gw.https.port()));

    // An Ingress naming a secret that does not exist yet: still nothing, and a warning.
    let v = gw.version();
    a_test_over_tls(&cfg);
    gw.wait_version_after(v);
    assert!(!https_bound(&gw));
    let z = gw.configz();
    assert!(
        z["warnings"].as_array().unwrap().iter().any(|w| w
            .as_str()
            .unwrap()
            .contains("secret higress-system/a-cert not found")),
        "{z:#}"
    );
    // The secret arrives: the listener is bound.
    cfg.tls_secret("a-cert", &ca.issue(&["a.test"]));
    wait_for("the HTTPS listener", || https_bound(&gw).then_some(()));
    let mut kept = tls_conn(gw.https, Some("a.test"), &ca.pem_path()).unwrap();
    assert_eq!(kept.request("GET", "a.test", "/", &[]).unwrap().status, 200);
    // No certificate for this name and no catch-all: the handshake fails, counted as
    // Envoy counts a server name without a filter chain. (The probes that waited for
    // the listener closed without a handshake: connection errors already.)
    let listener = format!("127.0.0.1_{}", gw.https.port());
    let no_match =
        format!("envoy_listener_no_filter_chain_match{{envoy_listener_address=\"{listener}\"}}");
    let conn_error =
        format!("envoy_listener_ssl_connection_error{{envoy_listener_address=\"{listener}\"}}");
    let errors_before = wait_for("the probes counted", || {
        let n = gw.metric(&conn_error)?;
        (n >= 1.0).then_some(n)
    });
    assert!(tls_conn(gw.https, Some("b.test"), &ca.pem_path()).is_err());
    wait_for("no_filter_chain_match counted", || {
        (gw.metric(&no_match)? == 1.0).then_some(())
    });
    assert_eq!(gw.metric(&conn_error), Some(errors_before));
    // Plain HTTP to the TLS port is a failed handshake.
    let mut plain = Conn::open(gw.https).unwrap();
    plain
        .send_raw(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    // The server answers with a TLS alert at most, then closes (or resets).
    let mut tcp = plain.stream();
    let mut buf = [0u8; 512];
    while matches!(std::io::Read::read(&mut tcp, &mut buf), Ok(n) if n > 0) {}
    wait_for("ssl.connection_error counted", || {
        (gw.metric(&conn_error)? == errors_before + 1.0).then_some(())
    });
    assert_eq!(gw.metric(&no_match), Some(1.0));

    // TLS removed: the listener closes, the open connection keeps working.
    let v = gw.version();
    cfg.host_route("a", "a.test", "be.static");
    gw.wait_version_after(v);
    wait_for("the HTTPS listener to close", || {
        (!https_bound(&gw)).then_some(())
    });
    assert_eq!(
        kept.request("GET", "a.test", "/after", &[]).unwrap().status,
        200
    );
}

#[test]
fn https_off_never_binds() {
    let be = Backend::start("be");
    let ca = TestCa::new("Test CA off");
    let cfg = ConfigDir::routing_all_to(&be);
    cfg.tls_secret("a-cert", &ca.issue(&["a.test"]));
    a_test_over_tls(&cfg);
    let gw = Gateway::start_with(cfg.path(), &["--https-addr", "off"]);
    // The certificate is known, yet only the HTTP, cluster-local, stats and admin
    // listeners exist.
    assert_eq!(
        gw.configz()["tls"]["certificates"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let mut want = vec![
        gw.http.port(),
        gw.local.port(),
        gw.stats.port(),
        gw.admin.port(),
    ];
    want.sort_unstable();
    // A request has been served: the control plane has long published its snapshot.
    assert_eq!(get(gw.http, "a.test", "/").unwrap().status, 200);
    assert_eq!(gw.listening_ports(), want);
}

#[test]
fn ssl_redirect_annotations_and_forced_domains_send_308() {
    let be = Backend::start("be");
    let ca = TestCa::new("Test CA redirect");
    let cfg = ConfigDir::new();
    cfg.static_registries(&[("be", be.addr.to_string(), 80)]);
    cfg.tls_secret("a-cert", &ca.issue(&["a.test"]));
    cfg.tls_secret("d-cert", &ca.issue(&["d.test"]));
    cfg.write(
        "ingresses/r1.yaml",
        &tls_ingress(
            "r1",
            &[Some("a.test")],
            "be.static",
            &[(&["a.test"], "a-cert")],
            &[("higress.io/ssl-redirect", "true")],
        ),
    );
    // force-ssl-redirect behaves the same, TLS or not (Higress).
    cfg.write(
        "ingresses/r2.yaml",
        &tls_ingress(
            "r2",
            &[Some("b.test")],
            "be.static",
            &[],
            &[("nginx.ingress.kubernetes.io/force-ssl-redirect", "true")],
        ),
    );
    cfg.host_route("r3", "c.test", "be.static");
    cfg.host_route("r4", "d.test", "be.static");
    cfg.write(
        "configmaps/domain-d.test.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: domain-d.test\n  labels: {higress.io/config-map-type: domain}\ndata:\n  domain: d.test\n  enableHttps: force\n  cert: d-cert\n",
    );
    let gw = Gateway::start(cfg.path());
    wait_for("the HTTPS listener", || https_bound(&gw).then_some(()));

    let r = get(gw.http, "a.test", "/p/q?x=1&y=2").unwrap();
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("https://a.test/p/q?x=1&y=2"));
    assert_eq!(r.header("content-length"), Some("0"));
    // A Host with the HTTP listener's port leads to the HTTPS listener's.
    let host = format!("a.test:{}", gw.http.port());
    let r = get(gw.http, &host, "/").unwrap();
    assert_eq!(
        r.header("location"),
        Some(format!("https://a.test:{}/", gw.https.port()).as_str())
    );
    let r = get(gw.http, "b.test", "/").unwrap();
    assert_eq!(
        (r.status, r.header("location")),
        (308, Some("https://b.test/"))
    );
    assert_eq!(get(gw.http, "c.test", "/").unwrap().status, 200);
    let r = get(gw.http, "d.test", "/x").unwrap();
    assert_eq!(
        (r.status, r.header("location")),
        (308, Some("https://d.test/x"))
    );
    assert_eq!(be.requests(), 1, "redirects never reach the backend");
    let e = gw.wait_access("the redirect in the access log", |e| {
        e["path"] == "/p/q?x=1&y=2"
    });
    assert_eq!(e["response_code"], 308);
    assert_eq!(e["route_name"], "r1");

    // Over HTTPS the same routes are served (no redirect loop); d.test has its domain's
    // certificate.
    let mut c = tls_conn(gw.https, Some("a.test"), &ca.pem_path()).unwrap();
    assert_eq!(c.request("GET", "a.test", "/p", &[]).unwrap().status, 200);
    let (mut c, cert) = tls_conn_with_cert(gw.https, Some("d.test"), &ca.pem_path()).unwrap();
    assert_eq!(c.request("GET", "d.test", "/p", &[]).unwrap().status, 200);
    let names: Vec<String> = cert
        .subject_alt_names()
        .unwrap()
        .iter()
        .filter_map(|n| n.dnsname().map(str::to_string))
        .collect();
    assert_eq!(names, ["d.test"]);
    // `curl -L` follows the redirect to the HTTPS listener.
    let out = Command::new("curl")
        .args(["-s", "-L", "--cacert"])
        .arg(ca.pem_path())
        .args(["--resolve", &format!("a.test:{}:127.0.0.1", gw.http.port())])
        .args([
            "--resolve",
            &format!("a.test:{}:127.0.0.1", gw.https.port()),
        ])
        .args([
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{url_effective} %{num_redirects}",
        ])
        .arg(format!("http://a.test:{}/follow", gw.http.port()))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("200 https://a.test:{}/follow 1", gw.https.port())
    );

    // enableHttps: on keeps the certificate and drops the redirect, live.
    let v = gw.version();
    cfg.write(
        "configmaps/domain-d.test.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: domain-d.test\ndata:\n  domain: d.test\n  enableHttps: \"on\"\n  cert: d-cert\n",
    );
    gw.wait_version_after(v);
    assert_eq!(get(gw.http, "d.test", "/").unwrap().status, 200);
    assert!(tls_conn(gw.https, Some("d.test"), &ca.pem_path()).is_ok());
}

#[test]
fn bad_tls_objects_are_rejected_and_the_last_good_ones_stay() {
    let be = Backend::start("be");
    let ca = TestCa::new("Test CA bad");
    let cfg = ConfigDir::routing_all_to(&be);
    let good = ca.issue(&["a.test"]);
    cfg.tls_secret("a-cert", &good);
    a_test_over_tls(&cfg);
    let gw = Gateway::start(cfg.path());
    wait_for("the HTTPS listener", || https_bound(&gw).then_some(()));

    // A key that is not the certificate's: rejected, named, the old one still served.
    let other = ca.issue(&["a.test"]);
    let mut mixed = good.clone();
    mixed.key_pem = other.key_pem.clone();
    cfg.tls_secret("a-cert", &mixed);
    let rejected = wait_for("the rejection", || {
        gw.configz()["rejected"]
            .as_array()
            .and_then(|a| a.first().cloned())
    });
    assert_eq!(rejected["file"], "secrets/a-cert.yaml");
    let err = rejected["error"].as_str().unwrap();
    assert!(
        err.contains("data[\"tls.key\"]") && err.contains("does not belong"),
        "{err}"
    );
    let (_, cert) = tls_conn_with_cert(gw.https, Some("a.test"), &ca.pem_path()).unwrap();
    assert_eq!(cert.to_der().unwrap(), good.cert.to_der().unwrap());
    // Not PEM at all, and a domain with a bad enableHttps: rejected too.
    cfg.write(
        "secrets/b-cert.yaml",
        "type: kubernetes.io/tls\nstringData:\n  tls.crt: nonsense\n  tls.key: nonsense\n",
    );
    cfg.write(
        "configmaps/domain-a.test.yaml",
        "data:\n  domain: a.test\n  enableHttps: yes-please\n  cert: a-cert\n",
    );
    wait_for("three rejections", || {
        (gw.configz()["rejected"].as_array()?.len() == 3).then_some(())
    });
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("validate")
        .arg(cfg.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for line in [
        "secrets/a-cert.yaml: Secret higress-system/a-cert: data[\"tls.key\"]: does not belong to the certificate in tls.crt",
        "secrets/b-cert.yaml: Secret higress-system/b-cert: data[\"tls.crt\"]: holds no PEM certificate",
        "configmaps/domain-a.test.yaml: ConfigMap higress-system/domain-a.test: data.enableHttps: expected on, off or force, got \"yes-please\"",
    ] {
        assert!(text.lines().any(|l| l.starts_with(line)), "no {line:?} in\n{text}");
    }
    // Requests never failed meanwhile.
    let mut c = tls_conn(gw.https, Some("a.test"), &ca.pem_path()).unwrap();
    assert_eq!(c.request("GET", "a.test", "/", &[]).unwrap().status, 200);
}

/// Requests over TLS until `stop`: each thread alternates a fresh connection (a new
/// handshake) and a few keep-alive requests; every failure is counted.
fn tls_load(
    addr: SocketAddr,
    ca: std::path::PathBuf,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) && n < 100_000 {
            n += 1;
            let result = tls_conn(addr, Some("a.test"), &ca).and_then(|mut c| {
                for i in 0..3 {
                    let r = c.request("GET", "a.test", &format!("/load/{n}/{i}"), &[])?;
                    if r.status != 200 {
                        return Err(std::io::Error::other(format!("status {}", r.status)));
                    }
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            });
            if let Err(e) = result {
                failed.lock().unwrap().push(e.to_string());
            }
        }
    })
}

#[test]
fn certificates_rotate_live_under_load_without_a_failed_request() {
    let be = Backend::start("be");
    let ca = TestCa::new("Test CA rotate");
    let cfg = ConfigDir::routing_all_to(&be);
    let first = ca.issue(&["a.test"]);
    cfg.tls_secret("a-cert", &first);
    a_test_over_tls(&cfg);
    let gw = Gateway::start(cfg.path());
    wait_for("the HTTPS listener", || https_bound(&gw).then_some(()));
    // A connection made before any rotation, kept open throughout.
    let (mut kept, cert) = tls_conn_with_cert(gw.https, Some("a.test"), &ca.pem_path()).unwrap();
    assert_eq!(cert.to_der().unwrap(), first.cert.to_der().unwrap());

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let load: Vec<_> = (0..3)
        .map(|_| {
            tls_load(
                gw.https,
                ca.pem_path(),
                stop.clone(),
                ok.clone(),
                failed.clone(),
            )
        })
        .collect();
    let mut issued: Vec<Issued> = Vec::new();
    for round in 0..5 {
        let before = ok.load(Ordering::Relaxed);
        let next = ca.issue_for(&["a.test"], 30 + round);
        cfg.tls_secret("a-cert", &next);
        // New handshakes get the new certificate soon.
        wait_for("a handshake with the rotated certificate", || {
            let (_, cert) = tls_conn_with_cert(gw.https, Some("a.test"), &ca.pem_path()).ok()?;
            (cert.to_der().ok()? == next.cert.to_der().unwrap()).then_some(())
        });
        wait_for("load to go on", || {
            (ok.load(Ordering::Relaxed) > before + 20).then_some(())
        });
        assert_eq!(
            kept.request("GET", "a.test", "/kept", &[]).unwrap().status,
            200
        );
        issued.push(next);
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    let failed = failed.lock().unwrap();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        ok.load(Ordering::Relaxed) > 100,
        "load ran: {}",
        ok.load(Ordering::Relaxed)
    );
    // The expiry gauge follows the certificate served now.
    assert_days_left(&gw, issued.last().unwrap());
    let serial = gw.configz()["tls"]["certificates"][0]["certificate"]["serial"].clone();
    assert_eq!(serial, issued.last().unwrap().serial().as_str());
}
