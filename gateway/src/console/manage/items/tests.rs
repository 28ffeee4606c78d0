use super::*;

use crate::resources::{Kind, Resource};

/// The object parses and validates as a config source would take it.
fn valid(kind: Kind, obj: &Value, name: &str) -> Resource {
    let bytes = serde_json::to_vec(obj).unwrap();
    crate::console::manage::store::validate_one(kind, &bytes, name, "higress-system")
        .unwrap_or_else(|e| panic!("{obj}: {e}"))
}

#[test]
fn a_service_source_is_a_registry_of_the_default_mcpbridge() {
    let item = json!({"name": "ignored", "version": "x", "type": "static",
        "domain": "127.0.0.1:8080", "port": "80", "protocol": "http", "sni": "a.b"});
    let bridge = bridge_with(None, "be", Some(&item)).unwrap();
    assert_eq!(bridge["metadata"]["name"], "default");
    let Resource::McpBridge(b) = valid(Kind::McpBridge, &bridge, "default") else {
        panic!()
    };
    assert_eq!(b.spec.registries[0].name, "be");
    assert_eq!(b.spec.registries[0].port, 80);
    // A second one is added beside it, keeping fields the gateway does not read.
    let other = json!({"type": "nacos2", "domain": "n.local", "port": 8848, "nacosGroups": ["g"]});
    let bridge = bridge_with(Some(&bridge), "nacos", Some(&other)).unwrap();
    assert_eq!(registries(&bridge).len(), 2);
    assert_eq!(
        registry_named(&bridge, "nacos").unwrap()["nacosGroups"],
        json!(["g"])
    );
    // Replaced in place, then removed.
    let again = json!({"type": "dns", "domain": "x.example.com", "port": 443});
    let bridge = bridge_with(Some(&bridge), "be", Some(&again)).unwrap();
    assert_eq!(registries(&bridge)[0]["type"], "dns");
    let bridge = bridge_with(Some(&bridge), "be", None).unwrap();
    assert_eq!(registries(&bridge).len(), 1);
    assert_eq!(
        bridge_with(None, "be", Some(&json!({"port": "http"}))).unwrap_err(),
        bad("port", "expected a port number, got \"http\"")
    );
}

#[test]
fn a_domain_is_its_configmap_and_back() {
    assert_eq!(
        domain_configmap("*.Example.com"),
        "domain-wildcard.example.com"
    );
    assert_eq!(
        domain_host("domain-wildcard.example.com").unwrap(),
        "*.example.com"
    );
    assert_eq!(domain_host("domain-a.com").unwrap(), "a.com");
    let item = json!({"name": "a.com", "enableHttps": "on", "cert": "a-cert"});
    let cm = domain_object("a.com", &item, None).unwrap();
    assert_eq!(cm["metadata"]["name"], "domain-a.com");
    assert_eq!(
        cm["metadata"]["labels"]["higress.io/config-map-type"],
        "domain"
    );
    assert_eq!(
        cm["data"],
        json!({"domain": "a.com", "enableHttps": "on", "cert": "a-cert"})
    );
    let Resource::ConfigMap(parsed) = valid(Kind::ConfigMap, &cm, "domain-a.com") else {
        panic!()
    };
    assert!(parsed.domain.is_some());
    assert_eq!(domain_item(&cm), item);
    let off = domain_object("b.com", &json!({"cert": null}), None).unwrap();
    assert_eq!(
        domain_item(&off),
        json!({"name": "b.com", "enableHttps": "off", "cert": null})
    );
}

#[test]
fn a_route_is_an_ingress_to_the_mcpbridge_with_its_destinations() {
    let item = json!({"name": "r", "domains": ["A.com", "b.com"],
        "path": {"matchType": "PRE", "matchValue": "/api"},
        "services": [{"name": "be.static", "port": 80, "weight": 100}],
        "annotations": {"higress.io/timeout": "5"}});
    let ing = route_object("r", &item, None).unwrap();
    assert_eq!(ing["spec"]["ingressClassName"], "higress");
    assert_eq!(
        ing["metadata"]["annotations"],
        json!({"higress.io/timeout": "5", "higress.io/destination": "be.static:80"})
    );
    assert_eq!(ing["spec"]["rules"].as_array().unwrap().len(), 2);
    assert_eq!(ing["spec"]["rules"][0]["host"], "a.com");
    assert_eq!(
        ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["resource"]["kind"],
        "McpBridge"
    );
    valid(Kind::Ingress, &ing, "r");
    let back = route_item(&ing);
    assert_eq!(back["domains"], json!(["a.com", "b.com"]));
    assert_eq!(
        back["path"],
        json!({"matchType": "PRE", "matchValue": "/api"})
    );
    assert_eq!(
        back["services"],
        json!([{"name": "be.static", "port": 80, "weight": 100}])
    );
    assert_eq!(back["annotations"], json!({"higress.io/timeout": "5"}));

    // Any host, regex path, two weighted services.
    let item = json!({"path": {"matchType": "REGULAR", "matchValue": "/v[0-9]+/.*"},
        "services": [{"name": "a.dns", "weight": 30}, {"name": "b.static", "port": 8080, "weight": 70}]});
    let ing = route_object("r2", &item, None).unwrap();
    assert!(ing["spec"]["rules"][0].get("host").is_none());
    assert_eq!(
        ing["spec"]["rules"][0]["http"]["paths"][0]["pathType"],
        "ImplementationSpecific"
    );
    assert_eq!(
        ing["metadata"]["annotations"]["higress.io/destination"],
        "30% a.dns\n70% b.static:8080"
    );
    valid(Kind::Ingress, &ing, "r2");
    let back = route_item(&ing);
    assert_eq!(back["path"]["matchType"], "REGULAR");
    assert_eq!(back["annotations"], json!({}));
    assert_eq!(
        back["services"][1],
        json!({"name": "b.static", "port": 8080, "weight": 70})
    );

    let e = route_object("r", &json!({"services": []}), None).unwrap_err();
    assert_eq!(e.field, "services");
    let e = route_object(
        "r",
        &json!({"path": {"matchType": "GLOB"}, "services": [{"name": "a.dns"}]}),
        None,
    )
    .unwrap_err();
    assert_eq!(e.field, "path.matchType");
    let e = route_object(
        "r",
        &json!({"services": [{"name": "a.dns", "port": 0}]}),
        None,
    )
    .unwrap_err();
    assert_eq!(e.field, "services[0].port");
}

#[test]
fn rewriting_a_route_keeps_what_the_item_does_not_say() {
    let existing = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "r", "labels": {"team": "a"}, "resourceVersion": "7",
            "annotations": {"higress.io/destination": "old.dns"}},
        "spec": {"tls": [{"hosts": ["a.com"], "secretName": "s"}]}});
    let ing = route_object(
        "r",
        &json!({"services": [{"name": "new.dns"}]}),
        Some(&existing),
    )
    .unwrap();
    assert_eq!(ing["metadata"]["labels"]["team"], "a");
    assert_eq!(ing["metadata"]["resourceVersion"], "7");
    assert_eq!(ing["spec"]["tls"][0]["secretName"], "s");
    assert_eq!(
        ing["metadata"]["annotations"]["higress.io/destination"],
        "new.dns"
    );
}

#[test]
fn a_plugin_is_a_wasmplugin_spec() {
    let item = json!({"name": "p", "url": "oci://higress-registry/plugins/key-auth:1.0.0",
        "phase": "AUTHN", "priority": 310, "defaultConfigDisable": true,
        "matchRules": [{"ingress": ["r"], "config": {"allow": ["c"]}, "configDisable": false}]});
    let wp = plugin_object("p", &item, None).unwrap();
    assert_eq!(wp["kind"], "WasmPlugin");
    assert_eq!(wp["spec"]["priority"], 310);
    assert!(wp["spec"].get("name").is_none());
    assert_eq!(plugin_item(&wp), item);
}

#[test]
fn tracing_is_set_in_higress_config_keeping_every_other_key() {
    let existing = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "higress-config"},
        "data": {"mesh": "accessLogFile: /dev/stdout\n",
            "higress": "gzip:\n  enable: false\ntracing:\n  enable: false\n  skywalking:\n    service: oap.static\n    port: \"11800\"\n    access_token: t\n"}});
    let before = tracing_item(Some(&existing)).unwrap();
    assert_eq!(before["provider"], "skywalking");
    assert_eq!(before["port"], 11800);
    assert_eq!(before["sampling"], 100.0);
    let item = json!({"enable": true, "sampling": 50, "timeout": 800,
        "provider": "zipkin", "service": "zipkin.static", "port": 9411});
    let cm = config_with_tracing(Some(&existing), &item).unwrap();
    assert_eq!(cm["data"]["mesh"], existing["data"]["mesh"]);
    let Resource::ConfigMap(parsed) = valid(Kind::ConfigMap, &cm, "higress-config") else {
        panic!()
    };
    let cfg = parsed.higress.unwrap();
    assert!(!cfg.gzip.unwrap().enable, "gzip kept");
    let t = cfg.tracing.unwrap();
    assert!(t.enable && t.skywalking.is_none());
    assert_eq!(t.sampling, 50.0);
    assert_eq!(t.zipkin.unwrap().port, "9411");
    let after = tracing_item(Some(&cm)).unwrap();
    assert_eq!(after["provider"], "zipkin");
    assert_eq!(after["service"], "zipkin.static");
    // No higress-config yet: Higress's defaults, and a new ConfigMap.
    assert_eq!(tracing_item(None).unwrap()["timeout"], 500);
    let cm = config_with_tracing(None, &item).unwrap();
    valid(Kind::ConfigMap, &cm, "higress-config");
    assert_eq!(
        config_with_tracing(None, &json!({"provider": "jaeger"}))
            .unwrap_err()
            .field,
        "provider"
    );
}

#[test]
fn object_fields_name_item_fields() {
    assert_eq!(
        item_field("routes", "metadata.annotations[\"higress.io/timeout\"]").unwrap(),
        "annotations[\"higress.io/timeout\"]"
    );
    assert_eq!(
        item_field("routes", "metadata.annotations[\"higress.io/destination\"]").unwrap(),
        "services"
    );
    assert_eq!(
        item_field("routes", "spec.rules[1].host").unwrap(),
        "domains[1]"
    );
    assert_eq!(
        item_field("routes", "spec.rules[0].http.paths[0].path").unwrap(),
        "path.matchValue"
    );
    assert_eq!(item_field("domains", "data.cert").unwrap(), "cert");
    assert_eq!(
        item_field("service-sources", "spec.registries[2].domain").unwrap(),
        "domain"
    );
    assert_eq!(
        item_field("plugins", "spec.defaultConfig.x").unwrap(),
        "defaultConfig.x"
    );
    assert_eq!(
        item_field("global", "data.higress.tracing.sampling").unwrap(),
        "sampling"
    );
    assert_eq!(
        item_field("global", "data.higress.tracing.zipkin.port").unwrap(),
        "port"
    );
    assert_eq!(item_field("routes", "spec").as_deref(), None);
}
