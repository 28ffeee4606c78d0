//! Domain fronting over HTTPS: a request whose Host is another TLS domain than the one
//! its SNI selected gets 421 Misdirected Request (Envoy's filter chain serves only the
//! SNI's routes); hosts without a certificate are served as before;
//! `--allow-misdirected-hosts` restores Higress's serve-anything behaviour.

use test_support::tls::{tls_conn, TestCa};
use test_support::*;

fn two_tls_domains(be: &Backend, ca: &TestCa) -> ConfigDir {
    let cfg = ConfigDir::routing_all_to(be);
    cfg.tls_secret("a-cert", &ca.issue(&["a.test"]));
    cfg.tls_secret("b-cert", &ca.issue(&["b.test", "*.b.test"]));
    cfg.write(
        "ingresses/tls.yaml",
        &format!(
            "{}  tls:\n  - secretName: a-cert\n    hosts: [a.test]\n  - secretName: b-cert\n    hosts: [b.test, \"*.b.test\"]\n",
            ingress_yaml(
                "tls",
                &[("higress.io/destination", "be.static")],
                &[
                    (Some("a.test"), "Prefix", "/"),
                    (Some("b.test"), "Prefix", "/"),
                    (Some("*.b.test"), "Prefix", "/"),
                    (Some("plain.test"), "Prefix", "/"),
                ],
            )
        ),
    );
    cfg
}

#[test]
fn another_tls_domain_than_the_sni_gets_421() {
    let be = Backend::start("be");
    let ca = TestCa::new("fronting CA");
    let cfg = two_tls_domains(&be, &ca);
    let gw = Gateway::start(cfg.path());
    wait_for("the HTTPS listener", || {
        std::net::TcpStream::connect(gw.https).ok()
    });
    let mut c = tls_conn(gw.https, Some("a.test"), &ca.pem_path()).unwrap();
    assert_eq!(c.request("GET", "a.test", "/", &[]).unwrap().status, 200);
    let before = be.requests();
    for host in ["b.test", "x.b.test", "B.TEST:443"] {
        let r = c.request("GET", host, "/", &[]).unwrap();
        assert_eq!(r.status, 421, "{host}: {}", r.text());
        assert!(r.body.is_empty());
    }
    assert_eq!(
        be.requests(),
        before,
        "nothing misdirected reached the backend"
    );
    // The connection stays usable, and a host without a certificate is served on it.
    assert_eq!(
        c.request("GET", "A.test:443", "/", &[]).unwrap().status,
        200
    );
    assert_eq!(
        c.request("GET", "plain.test", "/", &[]).unwrap().status,
        200
    );
    // The wildcard's own SNI serves its hosts, not a.test.
    let mut w = tls_conn(gw.https, Some("x.b.test"), &ca.pem_path()).unwrap();
    assert_eq!(w.request("GET", "y.b.test", "/", &[]).unwrap().status, 200);
    assert_eq!(w.request("GET", "b.test", "/", &[]).unwrap().status, 200);
    assert_eq!(w.request("GET", "a.test", "/", &[]).unwrap().status, 421);
    let e = gw.wait_access("the 421 in the access log", |e| e["response_code"] == 421);
    assert_eq!(e["requested_server_name"], "a.test", "{e}");
    // Plain HTTP has no SNI to hold a host to.
    assert_eq!(get(gw.http, "b.test", "/").unwrap().status, 200);
}

#[test]
fn allow_misdirected_hosts_serves_any_tls_domain() {
    let be = Backend::start("be");
    let ca = TestCa::new("fronting CA 2");
    let cfg = two_tls_domains(&be, &ca);
    let gw = Gateway::start_with(cfg.path(), &["--allow-misdirected-hosts"]);
    wait_for("the HTTPS listener", || {
        std::net::TcpStream::connect(gw.https).ok()
    });
    let mut c = tls_conn(gw.https, Some("a.test"), &ca.pem_path()).unwrap();
    assert_eq!(c.request("GET", "b.test", "/", &[]).unwrap().status, 200);
}
