//! The command line: `validate`, exit codes, `--help`, env twins, `demo`, SIGTERM drain.

use std::process::Command;
use std::time::Duration;

use test_support::*;

fn gateway() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
}

#[test]
fn validate_reports_file_and_field_path() {
    let cfg = ConfigDir::new();
    cfg.static_registries(&[("a", "127.0.0.1:1".into(), 80)]);
    cfg.ingress(
        "good",
        &[("higress.io/destination", "a.static")],
        &[(None, "Prefix", "/")],
    );
    let out = gateway().arg("validate").arg(cfg.path()).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    cfg.write(
        "ingresses/bad.yaml",
        &ingress_yaml(
            "bad",
            &[("higress.io/destination", "a.static")],
            &[(None, "Prefixx", "/")],
        ),
    );
    cfg.write(
        "ingresses/nested/dest.yaml",
        &ingress_yaml(
            "dest",
            &[("higress.io/destination", "x% a.static")],
            &[(None, "Prefix", "/")],
        ),
    );
    cfg.higress_config("downstream:\n  maxRequestHeadersKb: 9000\n");
    cfg.write(
        "mcpbridges/default.yaml",
        "spec:\n  registries:\n  - {type: dns, name: d, domain: \"1.2.3.4\", port: 80}\n",
    );
    let out = gateway().arg("validate").arg(cfg.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(text.contains("configmaps/higress-config.yaml: ConfigMap higress-system/higress-config: data.higress.downstream.maxRequestHeadersKb: must be at most 8192, got 9000"), "{text}");
    assert!(
        text.contains(
            "ingresses/bad.yaml: Ingress higress-system/bad: spec.rules[0].http.paths[0].pathType: unknown variant `Prefixx`"
        ),
        "{text}"
    );
    assert!(text.contains("ingresses/nested/dest.yaml: Ingress higress-system/dest: metadata.annotations[\"higress.io/destination\"]: line 1: invalid weight"), "{text}");
    assert!(
        text.contains("mcpbridges/default.yaml: McpBridge higress-system/default: spec.registries[0].domain: "),
        "{text}"
    );
}

#[test]
fn bad_command_lines_and_dirs_exit_2() {
    let out = gateway()
        .args(["run", "--config-dir", "/nonexistent/dir"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/dir"));
    let out = gateway().args(["run", "--bogus-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = gateway()
        .args(["validate", "/nonexistent/dir"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    for sub in [
        &["--help"][..],
        &["run", "--help"],
        &["demo", "--help"],
        &["validate", "--help"],
    ] {
        let out = gateway().args(sub).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{sub:?}");
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(help.contains("Usage:"), "{help}");
    }
    let help =
        String::from_utf8(gateway().args(["run", "--help"]).output().unwrap().stdout).unwrap();
    for flag in [
        "--http-addr",
        "--https-addr",
        "--stats-addr",
        "--admin-addr",
        "--threads",
        "--access-log",
        "--log-format",
        "--dns-resolver",
        "--dns-refresh",
        "GATEWAY_HTTP_ADDR",
    ] {
        assert!(help.contains(flag), "run --help lacks {flag}");
    }
}

#[test]
fn env_twins_set_flags() {
    let be = Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    let http = format!("127.0.0.1:{}", free_port());
    let stats = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let mut child = gateway()
        .arg("run")
        .env("GATEWAY_CONFIG_DIR", cfg.path())
        .env("GATEWAY_HTTP_ADDR", &http)
        .env("GATEWAY_LOCAL_HTTP_ADDR", "off")
        .env("GATEWAY_STATS_ADDR", &stats)
        .env("GATEWAY_ADMIN_ADDR", &admin)
        .env("GATEWAY_ACCESS_LOG", "off")
        .env("GATEWAY_THREADS", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http: std::net::SocketAddr = http.parse().unwrap();
    let r = wait_for("the gateway on its env-given address", || {
        get(http, "x", "/").ok()
    });
    assert_eq!(r.status, 200);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn sigterm_finishes_in_flight_requests_and_exits_0() {
    let be = Backend::start("be");
    let cfg = ConfigDir::routing_all_to(&be);
    let mut gw = Gateway::start(cfg.path());
    let addr = gw.http;
    let inflight = std::thread::spawn(move || get(addr, "x", "/delay/1000"));
    wait_for("the request to reach the backend", || {
        (be.requests() >= 1).then_some(())
    });
    unsafe { libc::kill(gw.pid() as i32, libc::SIGTERM) };
    let r = inflight
        .join()
        .unwrap()
        .expect("in-flight request finished");
    assert_eq!(r.status, 200);
    let status = gw.wait_exit();
    assert_eq!(status.code(), Some(0));
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "listener closed"
    );
}

#[test]
fn demo_serves_foo_bar_com_from_its_echo_upstream() {
    let http: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let https: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let stats = format!("127.0.0.1:{}", free_port());
    let admin = format!("127.0.0.1:{}", free_port());
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = gateway()
        .args([
            "demo",
            "--http-addr",
            &http.to_string(),
            "--https-addr",
            &https.to_string(),
            "--local-http-addr",
            "off",
            "--stats-addr",
            &stats,
            "--admin-addr",
            &admin,
            "--access-log",
            "off",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let r = wait_for("the demo to answer", || {
        get(http, "foo.bar.com", "/get?foo=bar")
            .ok()
            .filter(|r| r.status == 200)
    });
    let j = r.json();
    assert_eq!(j["args"]["foo"], "bar");
    assert_eq!(j["url"], "http://foo.bar.com/get?foo=bar");
    assert!(j["headers"]["X-Request-Id"].as_str().is_some());
    // HTTPS with the demo's self-signed certificate, as the printed curl line does it.
    let printed = std::fs::read_to_string(log.path()).unwrap();
    let line = printed
        .lines()
        .find(|l| l.contains("curl -sk"))
        .unwrap_or_else(|| panic!("demo prints the HTTPS curl line: {printed}"));
    assert!(
        line.contains(&format!("https://foo.bar.com:{}/get", https.port())),
        "{line}"
    );
    let out = wait_for("the demo's HTTPS", || {
        let out = std::process::Command::new("curl")
            .args([
                "-sk",
                "--resolve",
                &format!("foo.bar.com:{}:127.0.0.1", https.port()),
            ])
            .arg(format!("https://foo.bar.com:{}/get?foo=bar", https.port()))
            .output()
            .ok()?;
        out.status.success().then_some(out)
    });
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        j["url"],
        format!("https://foo.bar.com:{}/get?foo=bar", https.port())
    );
    assert!(
        printed.contains("curl -s http://") && printed.contains("/stats/prometheus"),
        "demo prints the curl lines: {printed}"
    );
    let _ = child.kill();
    let _ = child.wait();
}
