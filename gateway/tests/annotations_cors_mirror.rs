//! Groups 8 (CORS) and 9 (mirroring) of the Ingress annotations, on the wire: the real
//! binary, real upstreams on loopback.
//!
//! The CORS Ingresses include the examples of ingress-nginx's annotation guide
//! (`docs/user-guide/nginx-configuration/annotations.md`, section "Enable CORS",
//! kubernetes/ingress-nginx); ingress-nginx has no `docs/examples` folder for CORS or
//! mirroring, and its mirror annotation (`mirror-target`, a URL) is not one Higress
//! reads, so the mirror Ingresses use Higress's `mirror-target-*` forms (Higress's
//! `pkg/ingress/kube/annotations/mirror_test.go` values).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use test_support::scripted::{reply, Seen, Upstream};
use test_support::*;

const N: &str = "nginx.ingress.kubernetes.io/";
const H: &str = "higress.io/";

fn key(prefix: &str, name: &str) -> String {
    format!("{prefix}{name}")
}

/// An Ingress `name` for every path of `host` to `a.static`, with `annotations`.
fn ingress(cfg: &ConfigDir, name: &str, host: &str, annotations: &[(String, &str)]) {
    let mut a: Vec<(&str, &str)> = vec![("higress.io/destination", "a.static")];
    a.extend(annotations.iter().map(|(k, v)| (k.as_str(), *v)));
    cfg.ingress(name, &a, &[(Some(host), "Prefix", "/")]);
}

fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.header(name)
}

fn preflight(gw: &Gateway, host: &str, origin: &str, method: &str) -> Response {
    request(
        gw.http,
        "OPTIONS",
        host,
        "/api",
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", method),
            ("Access-Control-Request-Headers", "x-one"),
        ],
    )
    .unwrap()
}

/// The annotations `/debug/configz` lists as not enforced.
fn not_enforced(gw: &Gateway) -> Vec<String> {
    gw.configz()["not_enforced"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .filter(|v| v.contains("annotation"))
        .collect()
}

#[test]
fn cors_preflights_are_answered_and_responses_carry_the_headers() {
    let cfg = ConfigDir::new();
    let a = Backend::start("a");
    cfg.static_registries(&[("a", a.addr.to_string(), 80)]);
    // The defaults: every origin, Higress's lists, 20 days, credentials.
    ingress(
        &cfg,
        "defaults",
        "def.com",
        &[(key(N, "enable-cors"), "true")],
    );
    // ingress-nginx's examples (annotation guide, "Enable CORS").
    ingress(
        &cfg,
        "nginx-example",
        "ex.com",
        &[
            (key(N, "enable-cors"), "true"),
            (key(N, "cors-allow-methods"), "PUT, GET, POST, OPTIONS"),
            (
                key(N, "cors-allow-headers"),
                "X-Forwarded-For, X-app123-XPTO",
            ),
            (key(N, "cors-expose-headers"), "*, X-CustomResponseHeader"),
            (
                key(N, "cors-allow-origin"),
                "https://origin-site.com:4443, http://origin-site.com, https://example.org:1199",
            ),
            (key(N, "cors-allow-credentials"), "false"),
            (key(N, "cors-max-age"), "600"),
        ],
    );
    ingress(
        &cfg,
        "nginx-wildcard",
        "wild.com",
        &[
            (key(H, "enable-cors"), "true"),
            (
                key(H, "cors-allow-origin"),
                "https://*.origin-site.com:4443, http://*.origin-site.com, https://example.org:1199",
            ),
            (key(H, "cors-expose-headers"), "X-Total"),
        ],
    );
    let gw = Gateway::start(cfg.path());
    assert!(not_enforced(&gw).is_empty(), "{:?}", not_enforced(&gw));
    let upstream = || a.requests();

    // A preflight is answered at the gateway: 200, the headers, no upstream request.
    let before = upstream();
    let r = preflight(&gw, "def.com", "https://anyone.example", "PUT");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("https://anyone.example"),
        "Envoy echoes the origin"
    );
    assert_eq!(header(&r, "access-control-allow-credentials"), Some("true"));
    assert_eq!(
        header(&r, "access-control-allow-methods"),
        Some("GET,PUT,POST,DELETE,PATCH,OPTIONS")
    );
    assert_eq!(
        header(&r, "access-control-allow-headers"),
        Some("DNT,X-CustomHeader,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Authorization")
    );
    assert_eq!(header(&r, "access-control-max-age"), Some("1728000"));
    assert_eq!(header(&r, "access-control-expose-headers"), None);
    let r = preflight(&gw, "ex.com", "https://origin-site.com:4443", "GET");
    assert_eq!(r.status, 200);
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("https://origin-site.com:4443")
    );
    assert_eq!(header(&r, "access-control-allow-credentials"), None);
    assert_eq!(
        header(&r, "access-control-allow-methods"),
        Some("PUT,GET,POST,OPTIONS")
    );
    assert_eq!(
        header(&r, "access-control-allow-headers"),
        Some("X-Forwarded-For,X-app123-XPTO")
    );
    assert_eq!(header(&r, "access-control-max-age"), Some("600"));
    // `*` in a list is the whole list.
    assert_eq!(header(&r, "access-control-expose-headers"), Some("*"));
    assert_eq!(upstream(), before, "no preflight reached the upstream");

    // Any other OPTIONS goes upstream: no request method, or an origin not allowed.
    let r = request(
        gw.http,
        "OPTIONS",
        "ex.com",
        "/api",
        &[("Origin", "http://origin-site.com")],
    )
    .unwrap();
    assert_eq!(
        (r.status, r.json()["method"].as_str()),
        (200, Some("OPTIONS"))
    );
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("http://origin-site.com"),
        "an allowed origin's response carries the headers"
    );
    let r = preflight(&gw, "ex.com", "https://evil.com", "GET");
    assert_eq!(
        r.json()["backend"],
        "a",
        "forwarded, as Envoy forwards not-matching preflights"
    );
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    let r = preflight(&gw, "ex.com", "http://origin-site.com:4443", "GET");
    assert_eq!(
        r.json()["backend"],
        "a",
        "exact origins compare scheme and port"
    );
    assert_eq!(upstream(), before + 3);

    // Actual requests: headers for allowed origins only.
    let r = request(
        gw.http,
        "GET",
        "ex.com",
        "/x",
        &[("Origin", "https://example.org:1199")],
    )
    .unwrap();
    assert_eq!(r.json()["backend"], "a");
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("https://example.org:1199")
    );
    assert_eq!(header(&r, "access-control-expose-headers"), Some("*"));
    assert_eq!(header(&r, "access-control-allow-credentials"), None);
    let r = request(
        gw.http,
        "GET",
        "ex.com",
        "/x",
        &[("Origin", "https://example.org")],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(header(&r, "access-control-allow-origin"), None);
    assert_eq!(header(&r, "access-control-expose-headers"), None);
    let r = get(gw.http, "ex.com", "/x").unwrap();
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        None,
        "no Origin, no CORS"
    );
    let r = request(gw.http, "POST", "def.com", "/x", &[("Origin", "null")]).unwrap();
    assert_eq!(header(&r, "access-control-allow-origin"), Some("null"));
    assert_eq!(header(&r, "access-control-allow-credentials"), Some("true"));

    // Wildcard origins become regexes over the whole origin, scheme dropped (Higress).
    let allowed = |origin: &str| {
        let r = request(gw.http, "GET", "wild.com", "/", &[("Origin", origin)]).unwrap();
        assert_eq!(r.status, 200);
        header(&r, "access-control-allow-origin").map(str::to_string)
    };
    assert_eq!(
        allowed("https://a.origin-site.com:4443").as_deref(),
        Some("https://a.origin-site.com:4443")
    );
    assert_eq!(
        allowed("https://a.b.origin-site.com:4443").as_deref(),
        Some("https://a.b.origin-site.com:4443")
    );
    assert!(allowed("http://a.origin-site.com").is_some());
    assert!(
        allowed("https://a.origin-site.com").is_some(),
        "the scheme is not compared"
    );
    assert!(
        allowed("https://origin-site.com:4443").is_none(),
        "one label at least"
    );
    assert!(
        allowed("https://a.origin-site.com:44431").is_none(),
        "whole-origin match"
    );
    assert!(
        allowed("https://aorigin-site.com:4443").is_none(),
        "the dot is literal"
    );
    assert!(allowed("https://example.org:1199").is_some());
    let r = preflight(&gw, "wild.com", "https://x.origin-site.com:4443", "DELETE");
    assert_eq!(
        (r.status, header(&r, "access-control-allow-origin")),
        (200, Some("https://x.origin-site.com:4443"))
    );
    assert_eq!(header(&r, "access-control-expose-headers"), Some("X-Total"));
    assert_eq!(
        upstream(),
        before + 3 + 12,
        "only the actual requests went upstream"
    );
}

#[test]
fn cors_bad_values_reject_the_ingress_and_keep_the_last_good_one() {
    let cfg = ConfigDir::new();
    let a = Backend::start("a");
    cfg.static_registries(&[("a", a.addr.to_string(), 80)]);
    ingress(&cfg, "shop", "shop.com", &[(key(N, "enable-cors"), "true")]);
    let gw = Gateway::start(cfg.path());
    assert_eq!(
        preflight(&gw, "shop.com", "https://a.com", "GET").status,
        200
    );
    ingress(
        &cfg,
        "shop",
        "shop.com",
        &[
            (key(N, "enable-cors"), "true"),
            (key(N, "cors-max-age"), "abc"),
        ],
    );
    let rejected = wait_for("the rejection", || {
        gw.configz()["rejected"]
            .as_array()
            .and_then(|a| a.first().cloned())
    });
    let err = rejected["error"].as_str().unwrap();
    assert!(
        err.contains("nginx.ingress.kubernetes.io/cors-max-age")
            && err.contains("\"abc\" is not a non-negative integer"),
        "{err}"
    );
    let r = preflight(&gw, "shop.com", "https://a.com", "GET");
    assert_eq!(
        (r.status, header(&r, "access-control-max-age")),
        (200, Some("1728000")),
        "the last good version still serves"
    );
    ingress(
        &cfg,
        "bad-mirror",
        "m.com",
        &[
            (key(H, "mirror-percentage"), "lots"),
            (key(H, "mirror-target-fqdn"), "m.static"),
        ],
    );
    wait_for("the mirror rejection", || {
        let z = gw.configz();
        z["rejected"]
            .as_array()?
            .iter()
            .find(|r| {
                r["error"].as_str().is_some_and(|e| {
                    e.contains("higress.io/mirror-percentage")
                        && e.contains("\"lots\" is not an integer")
                })
            })
            .cloned()
    });
}

/// One request a [`Recorder`] received.
/// A mirror upstream that keeps what it receives and answers 204.
struct Recorder(Upstream);

impl Recorder {
    fn start() -> Recorder {
        Recorder(Upstream::start(|_, _| reply(204, "")))
    }

    fn seen(&self) -> Vec<Seen> {
        self.0.all()
    }

    fn count(&self) -> usize {
        self.0.all().len()
    }
}

/// An upstream that accepts connections and never answers.
fn hanging() -> (SocketAddr, Arc<Mutex<Vec<TcpStream>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            h.lock().unwrap().push(conn);
        }
    });
    (addr, held)
}

fn cluster_metric(gw: &Gateway, family: &str, cluster: &str) -> f64 {
    gw.metric(&format!("{family}{{cluster_name=\"{cluster}\"}}"))
        .unwrap_or(0.0)
}

/// A config with the main upstream `a.static` and the recorder as `mirror.static`.
fn with_mirror() -> (ConfigDir, Backend, Recorder) {
    let cfg = ConfigDir::new();
    let a = Backend::start("a");
    let m = Recorder::start();
    cfg.static_registries(&[
        ("a", a.addr.to_string(), 80),
        ("mirror", m.0.addr.to_string(), 80),
    ]);
    (cfg, a, m)
}

#[test]
fn mirror_receives_a_copy_with_its_body_while_the_main_upstream_answers() {
    let (cfg, a, m) = with_mirror();
    ingress(
        &cfg,
        "fqdn",
        "m.com",
        &[(key(N, "mirror-target-fqdn"), "mirror.static")],
    );
    ingress(
        &cfg,
        "fqdn-port",
        "p.com",
        &[
            (key(H, "mirror-target-fqdn"), "mirror.static"),
            (key(H, "mirror-target-fqdn-port"), "80"),
        ],
    );
    let gw = Gateway::start(cfg.path());
    assert!(not_enforced(&gw).is_empty(), "{:?}", not_enforced(&gw));

    let r = client::request_with_body(
        gw.http,
        "POST",
        "m.com:8080",
        "/orders?id=7",
        &[("x-trace-me", "1")],
        b"hello mirror",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let main = r.json();
    assert_eq!(
        (main["backend"].as_str(), main["body"].as_str()),
        (Some("a"), Some("hello mirror"))
    );
    let copy = wait_for("the mirrored POST", || {
        m.seen().into_iter().find(|s| s.method == "POST")
    });
    assert_eq!(copy.path, "/orders?id=7");
    assert_eq!(copy.body, b"hello mirror");
    assert_eq!(
        copy.headers["host"], "m.com-shadow:8080",
        "Envoy's shadow host"
    );
    assert_eq!(copy.headers["x-trace-me"], "1");
    assert_eq!(
        copy.headers.get("x-request-id"),
        main["headers"]["x-request-id"]
            .as_str()
            .map(str::to_string)
            .as_ref(),
        "the same request, as it went upstream"
    );
    // A request without a body, and the other prefix's spelling.
    let r = get(gw.http, "p.com", "/plain").unwrap();
    assert_eq!(r.json()["backend"], "a");
    let copy = wait_for("the mirrored GET", || {
        m.seen().into_iter().find(|s| s.path == "/plain")
    });
    assert_eq!(
        (copy.method.as_str(), copy.headers["host"].as_str()),
        ("GET", "p.com-shadow")
    );
    assert!(copy.body.is_empty());
    let mirror = "outbound|80||mirror.static";
    wait_for("the mirror's stats", || {
        (cluster_metric(&gw, "envoy_cluster_upstream_rq_total", mirror) == 2.0
            && gw.metric(&format!(
                "envoy_cluster_upstream_rq{{response_code=\"204\",cluster_name=\"{mirror}\"}}"
            )) == Some(2.0))
        .then_some(())
    });
    assert_eq!(a.requests(), 2, "the main upstream saw each request once");
}

#[test]
fn a_hanging_or_down_mirror_neither_slows_nor_fails_the_main_request() {
    let cfg = ConfigDir::new();
    let a = Backend::start("a");
    let (hang, held) = hanging();
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    cfg.static_registries(&[
        ("a", a.addr.to_string(), 80),
        ("hang", hang.to_string(), 80),
        ("dead", dead.to_string(), 80),
    ]);
    ingress(
        &cfg,
        "to-hang",
        "hang.com",
        &[(key(N, "mirror-target-fqdn"), "hang.static")],
    );
    ingress(
        &cfg,
        "to-dead",
        "dead.com",
        &[(key(N, "mirror-target-fqdn"), "dead.static")],
    );
    let gw = Gateway::start(cfg.path());
    // A down mirror: connect failures on its cluster, the main requests fine.
    let mut conn = client::Conn::open(gw.http).unwrap();
    for i in 0..20 {
        let r = conn
            .request(
                "POST",
                "dead.com",
                &format!("/d/{i}"),
                &[("content-length", "0")],
            )
            .unwrap();
        assert_eq!(r.status, 200, "request {i}");
    }
    let dead_cluster = "outbound|80||dead.static";
    wait_for("the down mirror's connect failures", || {
        (cluster_metric(&gw, "envoy_cluster_upstream_cx_connect_fail", dead_cluster) == 20.0
            && gw.metric(&format!("envoy_cluster_upstream_rq{{response_code=\"503\",cluster_name=\"{dead_cluster}\"}}")) == Some(20.0))
            .then_some(())
    });
    // Then more than the in-flight cap (256) of mirrors that never finish (their timeout is
    // 60 s): every main request still gets its answer, within the client's 15 s read
    // timeout, over one keep-alive connection.
    let mut conn = client::Conn::open(gw.http).unwrap();
    for i in 0..300 {
        let r = conn
            .request("GET", "hang.com", &format!("/h/{i}"), &[])
            .unwrap();
        assert_eq!(
            (r.status, r.json()["backend"].as_str()),
            (200, Some("a")),
            "request {i}"
        );
    }
    wait_for("the mirrors held by the hanging upstream", || {
        (held.lock().unwrap().len() == 256).then_some(())
    });
    let hang_cluster = "outbound|80||hang.static";
    wait_for("the overflow counted", || {
        (cluster_metric(
            &gw,
            "envoy_cluster_upstream_rq_pending_overflow",
            hang_cluster,
        ) == 44.0)
            .then_some(())
    });
    assert_eq!(a.requests(), 320);
}

#[test]
fn a_body_over_the_buffer_limit_abandons_the_mirror_not_the_request() {
    let (cfg, _a, m) = with_mirror();
    cfg.higress_config("downstream:\n  connectionBufferLimits: 1024\n");
    ingress(
        &cfg,
        "big",
        "big.com",
        &[(key(N, "mirror-target-fqdn"), "mirror.static")],
    );
    let gw = Gateway::start(cfg.path());
    let body = vec![b'x'; 4096];
    let r = client::request_with_body(gw.http, "PUT", "big.com", "/large", &[], &body).unwrap();
    assert_eq!(
        (r.status, r.json()["body"].as_str().map(str::len)),
        (200, Some(4096))
    );
    wait_for("the abandoned mirror counted", || {
        (cluster_metric(
            &gw,
            "envoy_cluster_upstream_rq_retry_or_shadow_abandoned",
            "outbound|80||a.static",
        ) == 1.0)
            .then_some(())
    });
    let r = client::request_with_body(gw.http, "PUT", "big.com", "/small", &[], b"ok").unwrap();
    assert_eq!(r.status, 200);
    wait_for("the small one mirrored", || {
        m.seen().into_iter().find(|s| s.path == "/small")
    });
    assert!(m.seen().iter().all(|s| s.path != "/large"));
}

#[test]
fn mirror_percentage_splits_within_four_standard_deviations() {
    let (cfg, a, m) = with_mirror();
    ingress(
        &cfg,
        "split",
        "split.com",
        &[
            (key(N, "mirror-target-fqdn"), "mirror.static"),
            (key(N, "mirror-percentage"), "30"),
        ],
    );
    let gw = Gateway::start(cfg.path());
    let n = 1000;
    let mut conn = client::Conn::open(gw.http).unwrap();
    for i in 0..n {
        let r = conn
            .request("GET", "split.com", &format!("/s/{i}"), &[])
            .unwrap();
        assert_eq!(r.status, 200);
    }
    // Settled: every mirror sent has been answered, and no more arrive.
    let mirror = "outbound|80||mirror.static";
    // (Polled every 20 ms: unchanged over 15 polls in a row.)
    let (mut last, mut stable) = (usize::MAX, 0);
    let got = wait_for("the mirrors to settle", || {
        let seen = m.count();
        let answered = gw
            .metric(&format!(
                "envoy_cluster_upstream_rq{{response_code=\"204\",cluster_name=\"{mirror}\"}}"
            ))
            .unwrap_or(0.0) as usize;
        stable = if seen == answered && seen == last {
            stable + 1
        } else {
            0
        };
        last = seen;
        (stable >= 15).then_some(seen)
    });
    let p = 0.3;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    let expected = n as f64 * p;
    assert!(
        (got as f64 - expected).abs() <= 4.0 * sd,
        "{got} of {n} mirrored, expected {expected} +- {:.0}",
        4.0 * sd
    );
    assert_eq!(a.requests(), n);
}

/// `mirror-target-service`: the copy goes to the Service's cluster, its endpoints from
/// the Service's Endpoints (`<namespace>/<name>:<port>` and `<name>` alone, the port then
/// the Service's).
#[test]
fn a_service_mirror_target_reaches_the_services_endpoints() {
    let cfg = ConfigDir::new();
    let a = Backend::start("a");
    let m = Recorder::start();
    cfg.static_registries(&[("a", a.addr.to_string(), 80)]);
    cfg.write(
        "services/shadow.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: shadow}\nspec:\n  ports:\n  - {name: http, port: 8080}\n",
    );
    cfg.write(
        "endpoints/shadow.yaml",
        &format!(
            "apiVersion: v1\nkind: Endpoints\nmetadata: {{name: shadow}}\nsubsets:\n- addresses: [{{ip: 127.0.0.1}}]\n  ports: [{{name: http, port: {}}}]\n",
            m.0.addr.port()
        ),
    );
    ingress(
        &cfg,
        "svc-port",
        "s1.com",
        &[(
            key(N, "mirror-target-service"),
            "higress-system/shadow:8080",
        )],
    );
    ingress(
        &cfg,
        "svc-name",
        "s2.com",
        &[(key(H, "mirror-target-service"), "shadow")],
    );
    let gw = Gateway::start(cfg.path());
    assert!(not_enforced(&gw).is_empty(), "{:?}", not_enforced(&gw));
    for host in ["s1.com", "s2.com"] {
        let path = format!("/from-{host}");
        let r = get(gw.http, host, &path).unwrap();
        assert_eq!(r.status, 200, "{host}");
        assert_eq!(r.json()["backend"], "a");
        let copy = wait_for("the mirrored GET", || {
            m.seen().into_iter().find(|s| s.path == path)
        });
        assert_eq!(copy.headers["host"], format!("{host}-shadow"));
    }
}
