//! `manifests/`: every overlay renders with the real `kubectl kustomize` (v1.33) and
//! validates with `kubernetes-validate -k 1.33.0 --strict`; the gateway objects carry
//! what the contract promises; the example custom resources validate against the CRDs'
//! schemas (check-jsonschema) and, with the shipped higress-config, against the gateway
//! itself (`gateway validate`).

use std::path::{Path, PathBuf};
use std::process::Command;

use test_support::kube::kubectl_bin;
use test_support::repo_root;

fn venv_tool(name: &str) -> PathBuf {
    let p = test_support::tracing_peers::python().with_file_name(name);
    assert!(p.exists(), "{} not found: run scripts/test.sh", p.display());
    p
}

/// `kubectl kustomize <overlay>` as parsed YAML documents.
fn render(overlay: &str) -> (String, Vec<serde_yaml::Value>) {
    let out = Command::new(kubectl_bin())
        .arg("kustomize")
        .arg(repo_root().join(overlay))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl kustomize {overlay}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let docs = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    (text, docs)
}

fn find<'a>(docs: &'a [serde_yaml::Value], kind: &str, name: &str) -> &'a serde_yaml::Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn validate_k8s(label: &str, text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("all.yaml");
    std::fs::write(&f, text).unwrap();
    let out = Command::new(venv_tool("kubernetes-validate"))
        .args(["-k", "1.33.0", "--strict"])
        .arg(&f)
        .output()
        .unwrap();
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{label}: {report}");
    assert!(
        !report.contains("ERROR") && !report.contains("WARN"),
        "{label}: {report}"
    );
}

#[test]
fn every_overlay_renders_and_validates_for_kubernetes_1_33() {
    for overlay in [
        "manifests",
        "manifests/observability",
        "manifests/demo",
        "manifests/knative",
    ] {
        let (text, docs) = render(overlay);
        validate_k8s(overlay, &text);
        assert!(docs.len() >= 10, "{overlay}: {} objects", docs.len());
    }
    let (_, docs) = render("manifests/demo");
    for (ns, host) in [
        ("app-system", "httpbin.example.com"),
        ("higress-system", "skywalking.higress.io"),
    ] {
        assert!(
            docs.iter().any(|d| d["kind"] == "Ingress"
                && d["metadata"]["namespace"] == ns
                && d["spec"]["ingressClassName"] == "higress"
                && d["spec"]["rules"][0]["host"] == host),
            "no Ingress for {host}"
        );
    }
    for app in ["bff", "middle", "backend"] {
        find(&docs, "Deployment", app);
        find(&docs, "Service", app);
    }
    for name in ["skywalking-oap", "skywalking-ui", "prometheus", "grafana"] {
        find(&docs, "Deployment", name);
    }
}

#[test]
fn the_gateway_objects_carry_what_the_contract_promises() {
    let (_, docs) = render("manifests");
    find(&docs, "IngressClass", "higress");
    find(&docs, "Namespace", "higress-system");
    for crd in [
        "mcpbridges.networking.higress.io",
        "wasmplugins.extensions.higress.io",
    ] {
        find(&docs, "CustomResourceDefinition", crd);
    }
    find(&docs, "PodDisruptionBudget", "higress-gateway");
    find(&docs, "HorizontalPodAutoscaler", "higress-gateway");

    let d = find(&docs, "Deployment", "higress-gateway");
    let pod = &d["spec"]["template"];
    assert_eq!(pod["metadata"]["labels"]["app"], "higress-gateway");
    assert_eq!(
        pod["metadata"]["labels"]["higress"],
        "higress-system-higress-gateway"
    );
    let ann = &pod["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"], "true");
    assert_eq!(ann["prometheus.io/port"], "15020");
    assert_eq!(ann["prometheus.io/path"], "/stats/prometheus");
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["args"][0], "run");
    assert_eq!(c["args"][1], "--kube");
    let ports: Vec<i64> = c["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_i64().unwrap())
        .collect();
    assert_eq!(ports, vec![8080, 8443, 8081, 15020]);
    let env = |name: &str| {
        c["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].clone())
    };
    assert_eq!(
        env("GATEWAY_LOCAL_HTTP_ADDR"),
        Some(serde_yaml::Value::from("0.0.0.0:8081"))
    );
    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
        assert_eq!(c[probe]["httpGet"]["path"], "/healthz/ready", "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], 15020, "{probe}");
    }
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);

    let s = find(&docs, "Service", "higress-gateway");
    let sp: Vec<(i64, i64)> = s["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["port"].as_i64().unwrap(),
                p["targetPort"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(sp, vec![(80, 8080), (443, 8443), (8081, 8081)]);

    // RBAC: read-only but for the status of Ingresses and KIngresses.
    let cr = find(&docs, "ClusterRole", "higress-gateway");
    let allows = |group: &str, resource: &str, verb: &str| {
        cr["rules"].as_sequence().unwrap().iter().any(|r| {
            let has = |field: &str, v: &str| {
                r[field]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|x| x.as_str() == Some(v))
            };
            has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
        })
    };
    for verb in ["get", "list", "watch"] {
        assert!(allows("networking.internal.knative.dev", "ingresses", verb));
        for r in ["gateways", "virtualservices", "destinationrules"] {
            assert!(allows("networking.istio.io", r, verb), "{r} {verb}");
        }
    }
    for verb in ["get", "patch", "update"] {
        assert!(allows(
            "networking.internal.knative.dev",
            "ingresses/status",
            verb
        ));
    }
    assert!(!allows("networking.istio.io", "virtualservices", "patch"));
    for rule in cr["rules"].as_sequence().unwrap() {
        let verbs: Vec<&str> = rule["verbs"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let writes = verbs.iter().any(|v| !["get", "list", "watch"].contains(v));
        let status_only = rule["resources"]
            .as_sequence()
            .unwrap()
            .iter()
            .all(|r| r == "ingresses/status");
        assert!(!writes || status_only, "{rule:?}");
    }
}

/// Write `yaml` as `<kind folder>/<name>.yaml` of a standalone directory.
fn put(dir: &Path, folder: &str, name: &str, yaml: &str) {
    std::fs::create_dir_all(dir.join(folder)).unwrap();
    std::fs::write(dir.join(folder).join(format!("{name}.yaml")), yaml).unwrap();
}

#[test]
fn examples_and_the_default_config_validate_against_the_crds_and_the_gateway() {
    let (_, base) = render("manifests");
    let dir = tempfile::tempdir().unwrap();
    // The CRDs' openAPIV3Schema as JSON Schema files.
    for (crd, example) in [
        ("mcpbridges.networking.higress.io", "mcpbridge.yaml"),
        ("wasmplugins.extensions.higress.io", "wasmplugin.yaml"),
    ] {
        let c = find(&base, "CustomResourceDefinition", crd);
        let schema = &c["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let schema_file = dir.path().join(format!("{crd}.json"));
        std::fs::write(&schema_file, serde_json::to_string(schema).unwrap()).unwrap();
        let ex = repo_root().join("manifests/examples").join(example);
        let out = Command::new(venv_tool("check-jsonschema"))
            .arg("--schemafile")
            .arg(&schema_file)
            .arg(&ex)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{example} against {crd}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // And a wrong one is refused, so the check is real.
        let bad = dir.path().join(format!("bad-{example}"));
        let text = std::fs::read_to_string(&ex).unwrap();
        let broken = text
            .replace("phase: AUTHN", "phase: SOMETIMES")
            .replace("type: dns", "type: carrier-pigeon");
        assert_ne!(broken, text);
        std::fs::write(&bad, broken).unwrap();
        let out = Command::new(venv_tool("check-jsonschema"))
            .arg("--schemafile")
            .arg(&schema_file)
            .arg(&bad)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "a bad {example} passed its CRD schema"
        );
    }
    // The shipped higress-config and the examples, as the gateway reads them.
    let conf = dir.path().join("conf");
    let cm = find(&base, "ConfigMap", "higress-config");
    put(
        &conf,
        "configmaps",
        "higress-config",
        &serde_yaml::to_string(cm).unwrap(),
    );
    for (folder, name, file) in [
        ("mcpbridges", "default", "mcpbridge.yaml"),
        ("wasmplugins", "transformer", "wasmplugin.yaml"),
        ("ingresses", "httpbin-dns", "ingress.yaml"),
    ] {
        let text =
            std::fs::read_to_string(repo_root().join("manifests/examples").join(file)).unwrap();
        put(&conf, folder, name, &text);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("validate")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gateway validate: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The higress-config object itself is a valid v1 ConfigMap.
    validate_k8s("higress-config", &serde_yaml::to_string(cm).unwrap());
    assert!(serde_yaml::to_string(cm)
        .unwrap()
        .contains("outboundClusterStatName: outbound_%SERVICE_PORT%_%SUBSET_NAME%_%SERVICE_FQDN%"));
}

#[test]
fn the_knative_overlay_adds_the_kingress_crd_and_an_example_validates_against_it() {
    let (_, docs) = render("manifests/knative");
    find(&docs, "Deployment", "higress-gateway");
    let crd = find(
        &docs,
        "CustomResourceDefinition",
        "ingresses.networking.internal.knative.dev",
    );
    let spec = &crd["spec"];
    assert_eq!(spec["group"], "networking.internal.knative.dev");
    assert_eq!(spec["scope"], "Namespaced");
    assert_eq!(spec["names"]["kind"], "Ingress");
    assert_eq!(spec["names"]["plural"], "ingresses");
    let v = &spec["versions"][0];
    assert_eq!(v["name"], "v1alpha1");
    assert_eq!(v["served"], true);
    assert_eq!(v["storage"], true);
    assert!(v["subresources"]["status"].is_mapping());
    // The base has no such CRD: Knative Serving ships it.
    let (_, base) = render("manifests");
    assert!(!base.iter().any(|d| d["kind"] == "CustomResourceDefinition"
        && d["metadata"]["name"] == "ingresses.networking.internal.knative.dev"));

    let dir = tempfile::tempdir().unwrap();
    let schema_file = dir.path().join("kingress.json");
    std::fs::write(
        &schema_file,
        serde_json::to_string(&v["schema"]["openAPIV3Schema"]).unwrap(),
    )
    .unwrap();
    let check = |file: &Path| {
        Command::new(venv_tool("check-jsonschema"))
            .arg("--schemafile")
            .arg(&schema_file)
            .arg(file)
            .output()
            .unwrap()
    };
    let example = repo_root().join("manifests/examples/kingress.yaml");
    let out = check(&example);
    assert!(
        out.status.success(),
        "kingress.yaml: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A wrong one is refused, so the check is real; and a status as the gateway writes
    // it is accepted.
    let text = std::fs::read_to_string(&example).unwrap();
    let bad = dir.path().join("bad.yaml");
    let broken = text.replace("percent: 90", "percent: ninety");
    assert_ne!(broken, text);
    std::fs::write(&bad, broken).unwrap();
    assert!(!check(&bad).status.success(), "a bad KIngress passed");
    let with_status = dir.path().join("status.yaml");
    std::fs::write(
        &with_status,
        text + "status:\n  observedGeneration: 1\n  conditions:\n  - {type: LoadBalancerReady, status: \"True\", lastTransitionTime: \"2026-01-01T00:00:00Z\"}\n  - {type: NetworkConfigured, status: \"True\", lastTransitionTime: \"2026-01-01T00:00:00Z\"}\n  - {type: Ready, status: \"True\", lastTransitionTime: \"2026-01-01T00:00:00Z\"}\n  publicLoadBalancer:\n    ingress: [{domainInternal: higress-gateway.higress-system.svc.cluster.local, ip: 10.0.0.7}]\n  privateLoadBalancer:\n    ingress: [{domainInternal: higress-gateway.higress-system.svc.cluster.local, ip: 10.0.0.7}]\n",
    )
    .unwrap();
    let out = check(&with_status);
    assert!(
        out.status.success(),
        "a written status: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // And the gateway reads the example as a KIngress of its own.
    let conf = dir.path().join("conf");
    put(
        &conf,
        "kingresses",
        "hello",
        &std::fs::read_to_string(&example).unwrap(),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("validate")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gateway validate: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_observability_overlay_ships_the_dashboards_of_grafana() {
    for f in ["gateway-overview.json", "upstreams.json", "tracing.json"] {
        let a = std::fs::read(repo_root().join("grafana/dashboards").join(f)).unwrap();
        let b = std::fs::read(repo_root().join("manifests/observability/grafana").join(f)).unwrap();
        assert!(
            a == b,
            "manifests/observability/grafana/{f} differs from grafana/dashboards/{f}: copy it over"
        );
    }
}

#[test]
fn the_helm_chart_lints_and_renders_the_objects_of_the_base() {
    let helm = venv_tool("helm");
    let chart = repo_root().join("manifests/chart");
    let lint = Command::new(&helm)
        .arg("lint")
        .arg(&chart)
        .output()
        .unwrap();
    assert!(
        lint.status.success(),
        "helm lint: {}",
        String::from_utf8_lossy(&lint.stdout)
    );
    let out = Command::new(&helm)
        .args(["template", "gw"])
        .arg(&chart)
        .args(["--namespace", "higress-system", "--include-crds"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    validate_k8s("helm template", &text);
    let key = |d: &serde_yaml::Value| {
        format!(
            "{}/{}",
            d["kind"].as_str().unwrap_or(""),
            d["metadata"]["name"].as_str().unwrap_or("")
        )
    };
    let mut from_helm: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|d: &serde_yaml::Value| !d.is_null())
        .collect();
    // Helm makes the namespace itself (`--create-namespace`).
    let (_, mut from_kustomize) = render("manifests");
    from_kustomize.retain(|d| d["kind"] != "Namespace");
    from_helm.sort_by_key(key);
    from_kustomize.sort_by_key(key);
    let names = |v: &[serde_yaml::Value]| v.iter().map(key).collect::<Vec<_>>();
    assert_eq!(names(&from_helm), names(&from_kustomize));
    for (h, k) in from_helm.iter().zip(&from_kustomize) {
        assert_eq!(
            h,
            k,
            "{} differs between the chart and manifests/base",
            key(h)
        );
    }
    // Values do change what they should.
    let out = Command::new(&helm)
        .args(["template", "gw"])
        .arg(&chart)
        .args([
            "--namespace",
            "edge",
            "--set",
            "watchNamespaces={apps,web}",
            "--set",
            "hpa.enabled=false",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("- --watch-namespace=apps\n"), "{text}");
    assert!(text.contains("higress: edge-higress-gateway"), "{text}");
    assert!(!text.contains("HorizontalPodAutoscaler"));
}

#[test]
fn the_shipped_crds_are_what_the_typed_resources_generate() {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("crds")
        .output()
        .unwrap();
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    assert!(generated.contains("name: mcpbridges.networking.higress.io"));
    assert!(generated.contains("name: wasmplugins.extensions.higress.io"));
    for shipped in ["manifests/base/crds.yaml", "manifests/chart/crds/crds.yaml"] {
        let text = std::fs::read_to_string(repo_root().join(shipped)).unwrap();
        assert!(
            text == generated,
            "{shipped} is not what `gateway crds` prints: run `gateway crds > {shipped}`"
        );
    }
}
