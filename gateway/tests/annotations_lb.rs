//! Upstream choice annotations on the wire: `load-balance`, `upstream-hash-by` and
//! cookie `affinity`, through the real binary and several loopback upstreams.
//!
//! Splits over n requests pass within p +- 4 standard deviations.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use test_support::*;

const N: &str = "nginx.ingress.kubernetes.io/";

fn backend_of(r: &Response) -> String {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["backend"].as_str().unwrap_or("").to_string()
}

/// `n` upstreams named b0.. and their addresses as a static registry's domain.
fn upstreams(n: usize) -> (Vec<Backend>, String) {
    let bs: Vec<Backend> = (0..n).map(|i| Backend::start(&format!("b{i}"))).collect();
    let domain = bs
        .iter()
        .map(|b| b.addr.to_string())
        .collect::<Vec<_>>()
        .join(",");
    (bs, domain)
}

/// Within p +- 4 standard deviations of n draws.
fn within(count: usize, n: usize, p: f64) -> bool {
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    (count as f64 - mean).abs() <= 4.0 * sd
}

/// A connection to the gateway from the loopback address `source` (127.0.0.x), so
/// `$remote_addr` differs between clients.
fn conn_from(source: [u8; 4], gw: SocketAddr) -> Conn {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let tcp = rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::from((source, 0))).unwrap();
        s.connect(gw).await.unwrap()
    });
    let tcp = tcp.into_std().unwrap();
    tcp.set_nonblocking(false).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    Conn::over(tcp.try_clone().unwrap(), Box::new(tcp))
}

/// Each hash source: the same key always reaches the same upstream (3 requests per key,
/// each on a new connection), and 30 different keys spread over the 3 upstreams.
#[test]
fn upstream_hash_by_keeps_each_key_on_one_upstream() {
    let (_bs, domain) = upstreams(3);
    let cfg = ConfigDir::new();
    // One registry (one cluster) per source: the policy belongs to the cluster.
    let sources = [
        ("uri", "$request_uri", "uri.test"),
        ("host", "$host", "*.host.test"),
        ("ip", "$remote_addr", "ip.test"),
        ("hdr", "$http_x_user", "hdr.test"),
        ("arg", "$arg_user", "arg.test"),
    ];
    let regs: Vec<(&str, String, u16)> = sources
        .iter()
        .map(|(r, _, _)| (*r, domain.clone(), 80))
        .collect();
    cfg.static_registries(&regs);
    for (reg, by, host) in sources {
        cfg.ingress(
            reg,
            &[
                ("higress.io/destination", &format!("{reg}.static")),
                (&format!("{N}upstream-hash-by"), by),
            ],
            &[(Some(host), "Prefix", "/")],
        );
    }
    let gw = Gateway::start(cfg.path());
    let ask = |source: &str, key: usize| -> String {
        let r = match source {
            "uri" => get(gw.http, "uri.test", &format!("/item/{key}?v=1")),
            "host" => get(gw.http, &format!("k{key}.host.test"), "/"),
            "ip" => {
                conn_from([127, 0, 0, 2 + key as u8], gw.http).request("GET", "ip.test", "/", &[])
            }
            "hdr" => request(
                gw.http,
                "GET",
                "hdr.test",
                "/",
                &[("x-user", &format!("user-{key}"))],
            ),
            "arg" => get(gw.http, "arg.test", &format!("/?a=1&user=u{key}&b=2")),
            _ => unreachable!(),
        };
        backend_of(&r.unwrap())
    };
    for (source, _, _) in sources {
        let mut used = BTreeSet::new();
        for key in 0..30 {
            let first = ask(source, key);
            for _ in 0..2 {
                assert_eq!(ask(source, key), first, "{source}: key {key} moved");
            }
            used.insert(first);
        }
        assert!(used.len() >= 2, "{source}: 30 keys all on {used:?}");
    }
    // The hashed requests reached the upstream unchanged.
    let r = get(gw.http, "arg.test", "/?user=u1").unwrap();
    assert_eq!(r.json()["path"], "/?user=u1");
}

/// The ingress-nginx example, as written in ingress-nginx's
/// docs/examples/affinity/cookie/ingress.yaml (class `nginx`, so the gateway runs with
/// `--ingress-class nginx`), with a Service `http-svc` of three endpoints.
const AFFINITY_EXAMPLE: &str = r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: nginx-test
  annotations:
    nginx.ingress.kubernetes.io/affinity: "cookie"
    nginx.ingress.kubernetes.io/session-cookie-name: "route"
    nginx.ingress.kubernetes.io/session-cookie-expires: "172800"
    nginx.ingress.kubernetes.io/session-cookie-max-age: "172800"

spec:
  ingressClassName: nginx
  rules:
  - host: stickyingress.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: http-svc
            port: 
              number: 80
"#;

#[test]
fn cookie_affinity_sets_the_cookie_and_sticks() {
    let (bs, _) = upstreams(3);
    let cfg = ConfigDir::new();
    cfg.write(
        "services/http-svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: http-svc}\nspec:\n  ports:\n  - {name: http, port: 80}\n",
    );
    let mut eps =
        String::from("apiVersion: v1\nkind: Endpoints\nmetadata: {name: http-svc}\nsubsets:\n");
    for b in &bs {
        eps.push_str(&format!(
            "- addresses: [{{ip: 127.0.0.1}}]\n  ports: [{{name: http, port: {}}}]\n",
            b.addr.port()
        ));
    }
    cfg.write("endpoints/http-svc.yaml", &eps);
    cfg.write("ingresses/nginx-test.yaml", AFFINITY_EXAMPLE);
    let gw = Gateway::start_with(cfg.path(), &["--ingress-class", "nginx"]);
    let host = "stickyingress.example.com";
    let z = gw.configz();
    assert!(
        !z["not_enforced"].to_string().contains("nginx-test"),
        "every annotation of the example acts: {}",
        z["not_enforced"]
    );
    let mut seen = BTreeMap::new();
    for client in 0..12 {
        // A new client: no cookie, so the gateway makes one (Envoy's format).
        let mut conn = Conn::open(gw.http).unwrap();
        let r = conn.request("GET", host, "/", &[]).unwrap();
        let first = backend_of(&r);
        let set = r.header("set-cookie").expect("Set-Cookie").to_string();
        let value = set
            .strip_prefix("route=\"")
            .and_then(|s| s.split_once('"'))
            .map(|(v, _)| v.to_string())
            .unwrap_or_else(|| panic!("{set}"));
        assert_eq!(value.len(), 16, "{set}");
        assert!(value.bytes().all(|b| b.is_ascii_hexdigit()), "{set}");
        assert_eq!(
            set,
            format!("route=\"{value}\"; Max-Age=172800; Path=/; HttpOnly"),
            "client {client}"
        );
        // The cookie sent back (quoted or not, on any connection) sticks; no new one.
        for i in 0..5 {
            let cookie = if i % 2 == 0 {
                format!("route={value}")
            } else {
                format!("a=b; route=\"{value}\"")
            };
            let r = request(gw.http, "GET", host, "/", &[("cookie", &cookie)]).unwrap();
            assert_eq!(backend_of(&r), first, "client {client} moved");
            assert!(r.header("set-cookie").is_none());
        }
        seen.insert(value, first);
    }
    // Different clients' cookies spread over the upstreams.
    let used: BTreeSet<&String> = seen.values().collect();
    assert!(used.len() >= 2, "12 cookies all on {used:?}");
}

/// An upstream that answers `{"backend":"slow"}` after `delay`.
fn slow_upstream(delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || serve_slowly(conn, delay));
        }
    });
    addr
}

fn serve_slowly(conn: TcpStream, delay: Duration) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let mut line = String::new();
        // The request head (GETs without a body).
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => {}
            }
        }
        std::thread::sleep(delay);
        let body = r#"{"backend":"slow"}"#;
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if out.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// `load-balance: least_conn` is Envoy's least request (two random choices, fewer
/// active requests wins): with a slow upstream beside a fast one and 4 clients in
/// parallel, the slow one always has requests in flight and wins only when both draws
/// name it (p = 1/4), where round robin would give it 1/2.
#[test]
fn least_conn_prefers_the_idle_upstream() {
    let fast = Backend::start("fast");
    let slow = slow_upstream(Duration::from_millis(100));
    let cfg = ConfigDir::new();
    cfg.static_registries(&[("pool", format!("{slow},{}", fast.addr), 80)]);
    cfg.ingress(
        "lc",
        &[
            ("higress.io/destination", "pool.static"),
            (&format!("{N}load-balance"), "least_conn"),
        ],
        &[(None, "Prefix", "/")],
    );
    let gw = Gateway::start(cfg.path());
    let (clients, each) = (4, 75);
    let http = gw.http;
    let slow_count: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                s.spawn(move || {
                    let mut conn = Conn::open(http).unwrap();
                    (0..each)
                        .filter(|_| {
                            let r = conn.request("GET", "lc.test", "/", &[]).unwrap();
                            backend_of(&r) == "slow"
                        })
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let n = clients * each;
    // Round robin's 1/2 is 8.5 sd away at n = 300; least request stays near 1/4.
    assert!(
        slow_count as f64 <= n as f64 * 0.25 + 4.0 * (n as f64 * 0.25 * 0.75).sqrt() + 4.0,
        "slow upstream got {slow_count} of {n}"
    );
}

/// `random` and `round_robin` (the default, also written out) spread evenly.
#[test]
fn random_and_round_robin_spread() {
    let (_bs, domain) = upstreams(3);
    let cfg = ConfigDir::new();
    cfg.static_registries(&[
        ("rnd", domain.clone(), 80),
        ("rr", domain.clone(), 80),
        ("plain", domain, 80),
    ]);
    for (name, lb) in [
        ("rnd", Some("random")),
        ("rr", Some("round_robin")),
        ("plain", None),
    ] {
        let mut ann = vec![(
            "higress.io/destination".to_string(),
            format!("{name}.static"),
        )];
        if let Some(lb) = lb {
            ann.push(("higress.io/load-balance".to_string(), lb.to_string()));
        }
        let ann: Vec<(&str, &str)> = ann.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        cfg.ingress(
            name,
            &ann,
            &[(Some(&format!("{name}.test")), "Prefix", "/")],
        );
    }
    let gw = Gateway::start(cfg.path());
    let n = 1200;
    for name in ["rnd", "rr", "plain"] {
        let mut conn = Conn::open(gw.http).unwrap();
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..n {
            let r = conn
                .request("GET", &format!("{name}.test"), "/", &[])
                .unwrap();
            *counts.entry(backend_of(&r)).or_default() += 1;
        }
        assert_eq!(counts.len(), 3, "{name}: {counts:?}");
        for (b, c) in &counts {
            assert!(
                within(*c, n, 1.0 / 3.0),
                "{name}: {b} got {c} of {n}: {counts:?}"
            );
        }
    }
}

/// A bad value rejects the Ingress with the annotation and the reason.
#[test]
fn bad_values_are_rejected_with_the_annotation() {
    let cfg = ConfigDir::new();
    cfg.ingress(
        "bad",
        &[(&format!("{N}upstream-hash-by"), "$binary_remote_addr")],
        &[(None, "Prefix", "/")],
    );
    let (status, text) = validate(cfg.path());
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("nginx.ingress.kubernetes.io/upstream-hash-by")
            && text.contains("$binary_remote_addr"),
        "{text}"
    );
}

/// `session-cookie-path` and `session-cookie-expires` (without `-max-age`): the cookie
/// the gateway makes carries that path and lifetime, under the default name
/// `INGRESSCOOKIE`, and sticks on that path.
#[test]
fn session_cookie_path_and_expires_shape_the_cookie() {
    let (_bs, domain) = upstreams(3);
    let cfg = ConfigDir::new();
    cfg.static_registries(&[("pool", domain, 80)]);
    cfg.ingress(
        "app",
        &[
            ("higress.io/destination", "pool.static"),
            ("nginx.ingress.kubernetes.io/affinity", "cookie"),
            ("nginx.ingress.kubernetes.io/session-cookie-path", "/app"),
            ("nginx.ingress.kubernetes.io/session-cookie-expires", "3600"),
        ],
        &[(Some("app.test"), "Prefix", "/app")],
    );
    let gw = Gateway::start(cfg.path());
    let r = get(gw.http, "app.test", "/app/x").unwrap();
    let first = backend_of(&r);
    let set = r.header("set-cookie").expect("Set-Cookie").to_string();
    let value = set
        .strip_prefix("INGRESSCOOKIE=\"")
        .and_then(|s| s.split_once('"'))
        .map(|(v, _)| v.to_string())
        .unwrap_or_else(|| panic!("{set}"));
    assert_eq!(
        set,
        format!("INGRESSCOOKIE=\"{value}\"; Max-Age=3600; Path=/app; HttpOnly")
    );
    let cookie = format!("INGRESSCOOKIE={value}");
    for _ in 0..5 {
        let again = request(gw.http, "GET", "app.test", "/app/y", &[("cookie", &cookie)]).unwrap();
        assert_eq!(backend_of(&again), first);
    }
}
