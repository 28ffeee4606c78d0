//! The loop fed `Change`s in process, batch by batch as `run` takes them: what the
//! published snapshot serves and what `/debug/configz` reports.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::*;
use crate::dns::DnsAnswer;
use crate::resources::secret::test_certs;
use crate::resources::SYSTEM_NAMESPACE;
use crate::snapshot::{self, Snapshot};
use crate::stats::ServerStats;

struct Fixture {
    cl: ConfigLoop,
    snapshot: SnapshotCell,
    status: StatusCell,
    stats: ConfigStats,
    dns_names: watch::Receiver<Vec<String>>,
}

impl Fixture {
    /// A loop as file mode sets it up: every Ingress is ours, no tracer, no plugins.
    fn new() -> Self {
        let server = ServerStats::new(1);
        let snapshot = snapshot::new_cell();
        let status: StatusCell = Arc::new(ArcSwap::from_pointee(ConfigStatus::default()));
        let wasm = WasmDeps {
            limits: Default::default(),
            cache_dir: None,
            perf_map: false,
            native_plugins: true,
            stats: server.wasm.clone(),
            registry: server.registry.clone(),
            config_dir: std::env::temp_dir(),
            oci: Default::default(),
        };
        let (cl, dns_names) = ConfigLoop::new(
            LoopOptions {
                ingress_class: "higress".into(),
                accept_unclassed: true,
                namespace: SYSTEM_NAMESPACE.into(),
                demo_tracing: false,
                gateway_selector: super::parse_selector("higress=higress-system-higress-gateway"),
                local_port: Some(8081),
                directory: true,
                registry_timing: Default::default(),
            },
            snapshot.clone(),
            status.clone(),
            server.config.clone(),
            (
                ClusterStatsCache::new(server.registry.clone(), SYSTEM_NAMESPACE),
                RouteStatsCache::new(server.registry.clone()),
            ),
            TracingDeps {
                stats: server.tracing.clone(),
                recent: Arc::new(RecentTraces::new(8)),
            },
            wasm,
        );
        Fixture {
            cl,
            snapshot,
            status,
            stats: server.config.clone(),
            dns_names,
        }
    }

    fn batch(&mut self, changes: Vec<Change>) {
        self.cl.take_batch(changes);
    }

    fn snap(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    fn configz(&self) -> serde_json::Value {
        self.status.load().configz()
    }

    /// The route serving `host` `/` and the cluster of its first destination.
    fn route(&self, host: &str) -> Option<(String, String)> {
        let snap = self.snap();
        let req = pingora_http::RequestHeader::build("GET", b"/", None).unwrap();
        let r = snap.routes.find(host, "/", &req)?;
        Some((r.name.to_string(), r.destinations[0].name.to_string()))
    }

    /// The objects `/debug/configz` lists as rejected.
    fn rejected(&self) -> Vec<String> {
        self.configz()["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["object"].as_str().unwrap().to_string())
            .collect()
    }
}

fn key(kind: Kind, name: &str) -> ResourceKey {
    ResourceKey {
        kind,
        namespace: SYSTEM_NAMESPACE.into(),
        name: name.into(),
    }
}

/// An upsert as the file source makes it: parsed and validated, or the error.
fn upsert(kind: Kind, name: &str, yaml: &str) -> Change {
    Change::Upsert {
        key: key(kind, name),
        origin: format!("{}/{name}.yaml", kind.folder()),
        result: Resource::parse(kind, yaml.as_bytes(), name, SYSTEM_NAMESPACE),
    }
}

fn delete(kind: Kind, name: &str) -> Change {
    Change::Delete {
        key: key(kind, name),
        origin: format!("{}/{name}.yaml", kind.folder()),
    }
}

/// The `default` McpBridge with one static registry `<name>.static` per name.
fn bridge(registries: &[&str]) -> Change {
    let mut y = String::from("spec:\n  registries:\n");
    for (i, r) in registries.iter().enumerate() {
        y.push_str(&format!(
            "  - {{type: static, name: {r}, domain: \"127.0.0.1:{}\", port: 80}}\n",
            9000 + i
        ));
    }
    upsert(Kind::McpBridge, "default", &y)
}

/// Ingress `name`: `host` `/` to `<dest>.static`, with TLS from secret `tls` if given.
fn ingress(name: &str, host: &str, dest: &str, tls: Option<&str>) -> Change {
    let mut y = format!(
        "metadata:\n  annotations:\n    higress.io/destination: {dest}.static\nspec:\n  rules:\n  - host: {host}\n    http:\n      paths:\n      - path: /\n        pathType: Prefix\n        backend:\n          resource: {{kind: McpBridge, name: default}}\n"
    );
    if let Some(secret) = tls {
        y.push_str(&format!(
            "  tls:\n  - {{hosts: [{host}], secretName: {secret}}}\n"
        ));
    }
    upsert(Kind::Ingress, name, &y)
}

/// An Ingress that fails validation (`pathType` is not one Kubernetes knows).
fn bad_ingress(name: &str) -> Change {
    let c = upsert(
        Kind::Ingress,
        name,
        "spec:\n  rules:\n  - host: bad.test\n    http:\n      paths:\n      - path: /\n        pathType: Sometimes\n        backend:\n          resource: {kind: McpBridge, name: default}\n",
    );
    assert!(matches!(&c, Change::Upsert { result: Err(_), .. }));
    c
}

/// A `kubernetes.io/tls` Secret with a certificate for `host`.
fn secret(name: &str, host: &str) -> Change {
    let (crt, key) = test_certs::pem(&[host]);
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let y = format!(
        "type: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&crt),
        indent(&key)
    );
    upsert(Kind::Secret, name, &y)
}

/// `higress-config` with `higress` set to `config`.
fn higress_config(config: &str) -> Change {
    let indented: String = config.lines().map(|l| format!("    {l}\n")).collect();
    upsert(
        Kind::ConfigMap,
        HIGRESS_CONFIG_NAME,
        &format!("data:\n  higress: |\n{indented}"),
    )
}

#[test]
fn a_bad_object_is_rejected_alone_and_its_last_good_version_keeps_serving() {
    let mut f = Fixture::new();
    f.batch(vec![
        bridge(&["a", "b"]),
        ingress("one", "one.test", "a", None),
    ]);
    assert_eq!(f.snap().version, 1);
    assert_eq!(
        f.route("one.test"),
        Some(("one".into(), "outbound|80||a.static".into()))
    );

    // In one batch: a broken version of `one`, a good new `two`.
    f.batch(vec![
        bad_ingress("one"),
        ingress("two", "two.test", "b", None),
    ]);
    assert_eq!(f.snap().version, 2, "the good object still publishes");
    assert_eq!(
        f.route("one.test"),
        Some(("one".into(), "outbound|80||a.static".into())),
        "the last good version of the rejected object keeps serving"
    );
    assert_eq!(
        f.route("two.test"),
        Some(("two".into(), "outbound|80||b.static".into()))
    );
    assert_eq!(f.route("bad.test"), None);
    assert_eq!(f.rejected(), vec!["Ingress higress-system/one"]);
    let z = f.configz();
    let rejection = &z["rejected"][0];
    assert_eq!(rejection["file"], "ingresses/one.yaml");
    assert!(
        rejection["error"].as_str().unwrap().contains("pathType"),
        "{rejection}"
    );
    assert!(rejection["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(f.stats.rejected.get(), 1);
    assert_eq!(f.stats.applied.get(), 2);
    assert_eq!(f.stats.version.get(), 2);

    // A batch with only a rejection publishes nothing but shows it.
    f.batch(vec![bad_ingress("two")]);
    assert_eq!(f.snap().version, 2);
    assert!(f.route("two.test").is_some());
    assert_eq!(
        f.rejected(),
        vec!["Ingress higress-system/one", "Ingress higress-system/two"]
    );
    assert_eq!(f.stats.rejected.get(), 2);
    assert_eq!(f.stats.applied.get(), 2);

    // A good version clears the rejection.
    f.batch(vec![ingress("one", "one.test", "b", None)]);
    assert_eq!(f.rejected(), vec!["Ingress higress-system/two"]);
    assert_eq!(
        f.route("one.test"),
        Some(("one".into(), "outbound|80||b.static".into()))
    );
}

#[test]
fn a_bad_higress_config_keeps_the_whole_old_config() {
    let mut f = Fixture::new();
    f.batch(vec![higress_config(
        "downstream:\n  idleTimeout: 7\ngzip:\n  enable: true\n  minContentLength: 2048\n",
    )]);
    let snap = f.snap();
    assert_eq!(snap.version, 1);
    assert_eq!(snap.filters.global.downstream_idle_timeout.as_secs(), 7);
    assert_eq!(snap.filters.gzip.as_ref().unwrap().min_content_length, 2048);
    let items = f.configz()["items"].clone();

    // Every item changes, and tracing is out of range: none of it applies.
    f.batch(vec![higress_config(
        "downstream:\n  idleTimeout: 9\ngzip:\n  enable: false\ntracing:\n  enable: true\n  sampling: 101\n  zipkin: {service: z.static, port: 80}\n",
    )]);
    let z = f.configz();
    assert_eq!(z["version"], 1, "no snapshot is built");
    assert_eq!(z["items"], items, "every item keeps its settings");
    let snap = f.snap();
    assert_eq!(snap.filters.global.downstream_idle_timeout.as_secs(), 7);
    assert_eq!(snap.filters.gzip.as_ref().unwrap().min_content_length, 2048);
    assert!(snap.filters.tracing.is_none());
    assert_eq!(
        f.rejected(),
        vec!["ConfigMap higress-system/higress-config"]
    );
    assert!(
        z["rejected"][0]["error"]
            .as_str()
            .unwrap()
            .contains("data.higress.tracing.sampling"),
        "{z}"
    );
    assert_eq!(f.stats.rejected.get(), 1);

    // One that does not even parse is rejected the same way.
    f.batch(vec![higress_config("downstream:\n  idleTimeout: soon\n")]);
    assert_eq!(f.configz()["items"], items);
    assert_eq!(f.snap().version, 1);
    assert_eq!(f.stats.rejected.get(), 2);

    // Deleting it keeps the last config too (Higress has no delete handler); the
    // rejection is gone with the object.
    f.batch(vec![delete(Kind::ConfigMap, HIGRESS_CONFIG_NAME)]);
    assert_eq!(f.snap().version, 1);
    assert_eq!(f.configz()["items"], items);
    assert!(f.rejected().is_empty());

    // A good one applies whole: a section it leaves out goes back to its defaults.
    f.batch(vec![higress_config("downstream:\n  idleTimeout: 9\n")]);
    let snap = f.snap();
    assert_eq!(snap.version, 2);
    assert_eq!(snap.filters.global.downstream_idle_timeout.as_secs(), 9);
    assert_eq!(snap.filters.gzip.as_ref().unwrap().min_content_length, 1024);
}

#[test]
fn deletes_remove_routes_clusters_and_certificates() {
    let mut f = Fixture::new();
    f.batch(vec![
        bridge(&["a", "b"]),
        secret("one-tls", "one.test"),
        ingress("one", "one.test", "a", Some("one-tls")),
        ingress("two", "two.test", "b", None),
    ]);
    let snap = f.snap();
    assert_eq!(
        snap.clusters.keys().collect::<Vec<_>>(),
        ["outbound|80||a.static", "outbound|80||b.static"]
    );
    assert!(snap.certs.find(Some("one.test")).is_some());
    assert!(f.route("one.test").is_some() && f.route("two.test").is_some());
    assert_eq!(f.configz()["warnings"], serde_json::json!([]));

    // The Secret: no certificate, the route stays (and says why it has no TLS).
    f.batch(vec![delete(Kind::Secret, "one-tls")]);
    let snap = f.snap();
    assert_eq!(snap.version, 2);
    assert!(snap.certs.find(Some("one.test")).is_none());
    assert!(f.route("one.test").is_some());
    let warnings = f.configz()["warnings"].to_string();
    assert!(warnings.contains("one-tls"), "{warnings}");

    // The Ingress: its route goes, the other stays.
    f.batch(vec![delete(Kind::Ingress, "one")]);
    assert_eq!(f.route("one.test"), None);
    assert!(f.route("two.test").is_some());
    assert_eq!(f.configz()["warnings"], serde_json::json!([]));

    // The McpBridge: its clusters go; the route stays, to an unknown cluster (503).
    f.batch(vec![delete(Kind::McpBridge, "default")]);
    let snap = f.snap();
    assert!(snap.clusters.is_empty());
    let req = pingora_http::RequestHeader::build("GET", b"/", None).unwrap();
    assert!(snap
        .routes
        .find("two.test", "/", &req)
        .unwrap()
        .destinations[0]
        .cluster
        .is_none());
    assert_eq!(f.configz()["clusters"], serde_json::json!([]));

    // Deleting what is not there publishes nothing.
    f.batch(vec![delete(Kind::Ingress, "never")]);
    assert_eq!(f.snap().version, 4);
    assert_eq!(f.stats.applied.get(), 4);
    assert_eq!(f.stats.rejected.get(), 0);
}

#[test]
fn in_a_burst_the_last_change_to_an_object_wins() {
    let mut f = Fixture::new();
    f.batch(vec![bridge(&["a"])]);
    let v = f.snap().version;

    // Three versions of one object in one batch: one publish, the last version.
    f.batch(vec![
        ingress("one", "v1.test", "a", None),
        ingress("one", "v2.test", "a", None),
        ingress("one", "v3.test", "a", None),
    ]);
    assert_eq!(f.snap().version, v + 1);
    assert_eq!(f.route("v1.test"), None);
    assert_eq!(f.route("v2.test"), None);
    assert!(f.route("v3.test").is_some());

    // Upsert then delete: gone.
    f.batch(vec![
        ingress("two", "two.test", "a", None),
        delete(Kind::Ingress, "two"),
    ]);
    assert_eq!(f.route("two.test"), None);
    assert!(f.route("v3.test").is_some());

    // Delete then upsert: the new version.
    f.batch(vec![
        delete(Kind::Ingress, "one"),
        ingress("one", "v4.test", "a", None),
    ]);
    assert_eq!(f.route("v3.test"), None);
    assert!(f.route("v4.test").is_some());

    // Broken then good: the good one, and no rejection left standing.
    f.batch(vec![
        bad_ingress("one"),
        ingress("one", "v5.test", "a", None),
    ]);
    assert!(f.route("v5.test").is_some());
    assert!(f.rejected().is_empty());

    // Good then broken: the good one serves, the broken one is reported.
    f.batch(vec![
        ingress("one", "v6.test", "a", None),
        bad_ingress("one"),
    ]);
    assert_eq!(f.route("v5.test"), None);
    assert!(f.route("v6.test").is_some());
    assert_eq!(f.rejected(), vec!["Ingress higress-system/one"]);
    assert_eq!(f.stats.rejected.get(), 2);
}

#[test]
fn dns_answers_fill_the_clusters_of_dns_registries() {
    let mut f = Fixture::new();
    f.batch(vec![upsert(
        Kind::McpBridge,
        "default",
        "spec:\n  registries:\n  - {type: dns, name: d, domain: d.example, port: 8080}\n",
    )]);
    assert_eq!(*f.dns_names.borrow(), vec!["d.example".to_string()]);
    let endpoints = |f: &Fixture| f.snap().clusters["outbound|8080||d.dns"].endpoints.clone();
    assert!(endpoints(&f).is_empty());

    f.cl.take_dns(DnsAnswer {
        name: "d.example".into(),
        result: Ok(vec!["127.0.0.7".parse().unwrap()]),
    });
    assert_eq!(f.snap().version, 2);
    assert_eq!(endpoints(&f), vec!["127.0.0.7:8080".parse().unwrap()]);

    // A failed answer keeps the last good endpoints and publishes nothing.
    f.cl.take_dns(DnsAnswer {
        name: "d.example".into(),
        result: Err("timed out".into()),
    });
    assert_eq!(f.snap().version, 2);
    assert_eq!(endpoints(&f), vec!["127.0.0.7:8080".parse().unwrap()]);
}
