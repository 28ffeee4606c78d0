//! A real Prometheus (the `prometheus` binary) scraping the gateway's stats listener,
//! queried through its HTTP API, and `promtool`. Both come from the Debian package
//! `prometheus`, which `scripts/test.sh` installs; a missing binary fails the test.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, get};

/// The `higress` label the Higress dashboard filters on (`$gateway`), set on the
/// scrape job as Higress's all-in-one Prometheus sets it.
pub const HIGRESS_LABEL: &str = "higress-system-higress-gateway";

/// Bound for Prometheus start-up and for a scrape to catch up. Generous: scrapes are
/// every second, but a loaded test machine may delay a few of them.
pub const PROM_WAIT: Duration = Duration::from_secs(60);

/// One series of an instant query's result: its labels and value.
pub type Sample = (BTreeMap<String, String>, f64);

/// Fails the test (never skips) when `bin` is not installed.
pub fn require(bin: &str) {
    match Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => {}
        Err(e) => panic!(
            "`{bin}` is not runnable ({e}): run scripts/test.sh, which installs the Debian \
             package `prometheus` (it provides `prometheus` and `promtool`)"
        ),
    }
}

/// Poll `f` until it returns `Some`, or panic after `bound` with `what` and the last
/// thing `f` reported.
pub fn poll<T>(what: &str, bound: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) if start.elapsed() > bound => {
                panic!("timed out after {bound:?} waiting for {what}; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A running Prometheus with a scrape job for one gateway; killed on drop.
pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Start Prometheus scraping `stats` (the gateway's `--stats-addr`) every second and
    /// wait until that target is up.
    pub fn start(stats: SocketAddr) -> Prometheus {
        require("prometheus");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, scrape_config(stats)).unwrap();
        let log_path = dir.path().join("prometheus.log");
        // The port is free when picked but could be taken before Prometheus binds it:
        // try a few.
        let mut last_log = String::new();
        for _ in 0..3 {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let mut child = Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                // Prometheus 2.42 asks for OpenMetrics by default; with this feature it
                // also keeps the exemplars the gateway attaches to latency buckets.
                .arg("--enable-feature=exemplar-storage")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log_path).unwrap())
                .spawn()
                .expect("start prometheus");
            if wait_ready(&mut child, addr, &log_path) {
                let p = Prometheus { child, addr, dir };
                p.wait_target_up();
                return p;
            }
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("prometheus did not start:\n{last_log}");
    }

    /// Prometheus's own log (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// GET `path` from the HTTP API and parse its JSON envelope: `data` on success,
    /// else the API's error.
    fn api(&self, path: &str) -> Result<serde_json::Value, String> {
        let r = get(self.addr, "prometheus", path).map_err(|e| format!("GET {path}: {e}"))?;
        let v: serde_json::Value = serde_json::from_slice(&r.body)
            .map_err(|e| format!("GET {path}: {} not JSON ({e}): {}", r.status, r.text()))?;
        if v["status"] != "success" {
            return Err(format!(
                "GET {path}: {} {}: {}",
                r.status, v["errorType"], v["error"]
            ));
        }
        Ok(v["data"].clone())
    }

    /// Exemplars of the series `promql` selects, over the last `window_s` seconds: each
    /// `{seriesLabels, exemplars: [{labels, value, timestamp}]}`.
    pub fn exemplars(&self, promql: &str, window_s: u64) -> Result<Vec<serde_json::Value>, String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let data = self.api(&format!(
            "/api/v1/query_exemplars?query={}&start={}&end={}",
            urlencode(promql),
            now.saturating_sub(window_s),
            now + 1
        ))?;
        Ok(data.as_array().cloned().unwrap_or_default())
    }

    /// The scrape target (the one job has one): `(health, lastError)`.
    pub fn target_health(&self) -> Result<(String, String), String> {
        let data = self.api("/api/v1/targets?state=active")?;
        let t = data["activeTargets"]
            .as_array()
            .and_then(|a| a.first())
            .ok_or_else(|| format!("no active target: {data}"))?;
        let s = |k: &str| t[k].as_str().unwrap_or_default().to_string();
        Ok((s("health"), s("lastError")))
    }

    /// The type Prometheus recorded for metric family `name` (`/api/v1/metadata`).
    pub fn metadata_type(&self, name: &str) -> Result<Option<String>, String> {
        let data = self.api(&format!("/api/v1/metadata?metric={}", urlencode(name)))?;
        Ok(data[name][0]["type"].as_str().map(String::from))
    }

    /// The target is up and its last scrape had no error.
    pub fn assert_target_healthy(&self) {
        let (health, err) = self.target_health().unwrap();
        assert!(
            health == "up" && err.is_empty(),
            "scrape target unhealthy: health={health} lastError={err:?}"
        );
    }

    fn wait_target_up(&self) {
        poll("the gateway scrape target up", PROM_WAIT, || {
            match self.target_health()? {
                (h, e) if h == "up" && e.is_empty() => Ok(()),
                (h, e) => Err(format!("health={h} lastError={e:?}\n{}", self.log())),
            }
        })
    }

    /// Evaluate `promql` now (`/api/v1/query`): one entry per series; a scalar result
    /// is one entry without labels.
    pub fn try_query(&self, promql: &str) -> Result<Vec<Sample>, String> {
        let data = self.api(&format!("/api/v1/query?query={}", urlencode(promql)))?;
        let value = |v: &serde_json::Value| -> Result<f64, String> {
            let s = v[1].as_str().ok_or_else(|| format!("bad value {v}"))?;
            parse_value(s).ok_or_else(|| format!("bad value {s:?}"))
        };
        match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    let labels = s["metric"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect();
                    Ok((labels, value(&s["value"])?))
                })
                .collect(),
            Some("scalar") => Ok(vec![(BTreeMap::new(), value(&data["result"])?)]),
            other => Err(format!("unexpected result type {other:?}: {data}")),
        }
    }

    pub fn query(&self, promql: &str) -> Vec<Sample> {
        self.try_query(promql)
            .unwrap_or_else(|e| panic!("query {promql}: {e}"))
    }

    /// Poll `promql` until `ok` accepts its result (bounded by `PROM_WAIT`).
    pub fn wait_query(&self, promql: &str, ok: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
        poll(promql, PROM_WAIT, || {
            let r = self.try_query(promql)?;
            if ok(&r) {
                Ok(r)
            } else {
                Err(format!("{r:?}"))
            }
        })
    }

    /// Poll until `promql` returns exactly one sample, equal to `expected`.
    pub fn wait_value(&self, promql: &str, expected: f64) {
        self.wait_query(promql, |r| r.len() == 1 && r[0].1 == expected);
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait for `/-/ready`: false when Prometheus exited (e.g. its port was taken).
fn wait_ready(child: &mut Child, addr: SocketAddr, log: &Path) -> bool {
    let start = Instant::now();
    loop {
        if get(addr, "prometheus", "/-/ready").is_ok_and(|r| r.status == 200) {
            return true;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if start.elapsed() > PROM_WAIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "prometheus not ready after {PROM_WAIT:?}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn scrape_config(stats: SocketAddr) -> String {
    format!(
        "global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: gateway
    metrics_path: /stats/prometheus
    static_configs:
      - targets: ['{stats}']
        labels:
          higress: {HIGRESS_LABEL}
"
    )
}

/// Prometheus writes `NaN`, `+Inf` and `-Inf` besides plain numbers.
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Percent-encode a query parameter (everything but RFC 3986 unreserved characters).
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Expectations on PromQL results that share one deadline: each is polled until it
/// holds or the deadline passes (then evaluated once more), and every failure is
/// reported together at `finish`, so one run shows all that is missing.
pub struct Checks<'a> {
    prom: &'a Prometheus,
    deadline: Instant,
    failures: Vec<String>,
}

impl<'a> Checks<'a> {
    pub fn new(prom: &'a Prometheus, within: Duration) -> Self {
        Checks {
            prom,
            deadline: Instant::now() + within,
            failures: Vec::new(),
        }
    }

    /// `ok` must accept the result of `promql`; `what` names the expectation.
    /// Returns the last result.
    pub fn check(
        &mut self,
        what: &str,
        promql: &str,
        ok: impl Fn(&[Sample]) -> bool,
    ) -> Result<Vec<Sample>, String> {
        let last = loop {
            let r = self.prom.try_query(promql);
            if matches!(&r, Ok(v) if ok(v)) {
                println!("ok    {what}: {promql}");
                return r;
            }
            if Instant::now() > self.deadline {
                break r;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let got = match &last {
            Ok(v) => format!("{v:?}"),
            Err(e) => e.clone(),
        };
        println!("FAIL  {what}: {promql}\n      got {got}");
        self.failures
            .push(format!("{what}\n    query: {promql}\n    got:   {got}"));
        last
    }

    /// `promql` returns exactly these series, keyed by the value of label `key`.
    pub fn by_label(&mut self, promql: &str, key: &str, expected: &[(&str, f64)]) {
        let want: BTreeMap<String, f64> =
            expected.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let what = format!("{key} -> {want:?}");
        let _ = self.check(&what, promql, |r| by_label(r, key) == want);
    }

    /// `promql` returns one sample equal to `expected`.
    pub fn value(&mut self, promql: &str, expected: f64) {
        let _ = self.check(&format!("= {expected}"), promql, |r| {
            r.len() == 1 && r[0].1 == expected
        });
    }

    /// `promql` returns one sample with a finite value.
    pub fn finite(&mut self, promql: &str) {
        let _ = self.check("finite", promql, |r| r.len() == 1 && r[0].1.is_finite());
    }

    /// Record a failure found by other means.
    pub fn fail(&mut self, msg: String) {
        println!("FAIL  {msg}");
        self.failures.push(msg);
    }

    /// Panic listing every failed expectation, if any.
    pub fn finish(self) {
        if !self.failures.is_empty() {
            panic!(
                "{} PromQL expectation(s) failed:\n{}",
                self.failures.len(),
                self.failures.join("\n")
            );
        }
    }
}

/// A result as `label value -> sample value` (series without the label key on "").
pub fn by_label(r: &[Sample], key: &str) -> BTreeMap<String, f64> {
    r.iter()
        .map(|(l, v)| (l.get(key).cloned().unwrap_or_default(), *v))
        .collect()
}

/// Run `promtool check metrics` on `exposition` (text format): its exit code and what
/// it printed (it reports problems on stderr).
pub fn promtool_check_metrics(exposition: &str) -> (Option<i32>, String) {
    use std::io::Write;
    require("promtool");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    // Written from a thread so a chatty promtool cannot deadlock on a full pipe.
    let mut stdin = child.stdin.take().unwrap();
    let body = exposition.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(body.as_bytes()));
    let out = child.wait_with_output().expect("promtool output");
    writer.join().unwrap().expect("write to promtool");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// The full dashboard JSON, where it is available: `HIGRESS_DASHBOARD_JSON`, else the
/// team's shared reference copy. Only used to check the fixture has not drifted.
pub fn dashboard_path() -> std::path::PathBuf {
    std::env::var_os("HIGRESS_DASHBOARD_JSON")
        .map(Into::into)
        .unwrap_or_else(|| {
            Path::new("/work/shared/reference/higress-console-dashboard-main.json").into()
        })
}

/// The dashboard's PromQL expressions, as kept in `tests/fixtures`.
pub fn dashboard_fixture() -> Vec<String> {
    let text = include_str!("../../fixtures/higress-dashboard-exprs.json");
    let v: serde_json::Value = serde_json::from_str(text).expect("fixture is JSON");
    v["exprs"]
        .as_array()
        .expect("fixture has exprs")
        .iter()
        .map(|e| e.as_str().expect("expr is a string").to_string())
        .collect()
}

/// Every `targets[].expr` of a Grafana dashboard, in panel order, through rows and
/// nested panels.
pub fn dashboard_exprs(dashboard: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(targets) = m.get("targets").and_then(|t| t.as_array()) {
                    out.extend(
                        targets
                            .iter()
                            .filter_map(|t| t["expr"].as_str())
                            .filter(|e| !e.trim().is_empty())
                            .map(String::from),
                    );
                }
                for (k, child) in m {
                    if k != "targets" {
                        walk(child, out);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out
}
