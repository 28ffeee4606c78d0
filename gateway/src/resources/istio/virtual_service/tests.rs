use super::*;

const VS: &str = r#"
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: web, namespace: apps}
spec:
  hosts: [web.example.com, "*.example.org"]
  gateways: [higress-system/gw]
  http:
  - name: api
    match:
    - uri: {prefix: /api}
      headers: {x-env: {exact: dev}}
      queryParams: {v: {regex: "[0-9]+"}}
      method: {exact: GET}
    - uri: {regex: "/v[0-9]/.*"}
      ignoreUriCase: true
    route:
    - destination: {host: web, port: {number: 80}}
      weight: 90
      headers: {request: {set: {x-split: a}}}
    - destination: {host: web-canary}
      weight: 10
    headers:
      request: {add: {x-added: "1"}, remove: [x-gone]}
      response: {set: {x-resp: r}}
    rewrite: {uri: /v2, authority: web.internal}
    timeout: 1.5s
    retries: {attempts: 3, perTryTimeout: 300ms, retryOn: "5xx,gateway-error,503"}
    fault:
      delay: {fixedDelay: 5ms, percentage: {value: 0.5}}
      abort: {httpStatus: 418, percentage: {value: 1}}
    mirror: {host: shadow}
    mirrorPercentage: {value: 12.5}
    corsPolicy:
      allowOrigins: [{exact: "https://a.example"}, {regex: "https://.*\\.b\\.example"}]
      allowMethods: [GET, POST]
      maxAge: 24h
      allowCredentials: true
  - redirect: {uri: /moved, redirectCode: 302}
  tcp:
  - route: [{destination: {host: db}}]
"#;

fn err(from: &str, to: &str) -> String {
    let y = VS.replace(from, to);
    assert_ne!(y, VS, "{from} not in the fixture");
    VirtualService::parse(y.as_bytes()).unwrap_err().to_string()
}

#[test]
fn parses_every_field_read() {
    let v = VirtualService::parse(VS.as_bytes()).unwrap();
    let r = &v.spec.http[0];
    assert_eq!(r.matches.len(), 2);
    assert_eq!(
        r.matches[0].uri.as_ref().unwrap().prefix.as_deref(),
        Some("/api")
    );
    assert!(r.matches[1].ignore_uri_case);
    assert_eq!(r.route[0].weight, Some(90));
    assert_eq!(r.route[1].destination.port, None);
    assert_eq!(r.timeout.as_deref(), Some("1.5s"));
    assert_eq!(r.mirror_percentage.unwrap().value, 12.5);
    assert_eq!(
        v.spec.http[1].redirect.as_ref().unwrap().redirect_code,
        Some(302)
    );
    assert_eq!(v.spec.tcp.len(), 1);
}

#[test]
fn bad_values_name_their_field() {
    assert_eq!(
        err("weight: 10", "weight: -10"),
        "spec.http[0].route[1].weight: -10 is negative"
    );
    assert_eq!(
        err("timeout: 1.5s", "timeout: 5x"),
        "spec.http[0].timeout: \"5x\" is not a duration (e.g. 1.5s, 300ms, 1m)"
    );
    assert!(err("\"/v[0-9]/.*\"", "\"/v[0-9/\"")
        .starts_with("spec.http[0].match[1].uri.regex: invalid regex"));
    assert_eq!(
        err("x-env: {exact: dev}", "\"x env\": {exact: dev}"),
        "spec.http[0].match[0].headers.x env: \"x env\" is not a valid header name"
    );
    assert_eq!(
        err("redirectCode: 302", "redirectCode: 200"),
        "spec.http[1].redirect.redirectCode: 200 is not a redirect code (301, 302, 303, 307, 308)"
    );
    assert_eq!(
        err("retryOn: \"5xx,gateway-error,503\"", "retryOn: \"5xx,sometimes\""),
        "spec.http[0].retries.retryOn: \"sometimes\" is neither a retry condition nor a status code"
    );
    assert_eq!(
        err("attempts: 3", "attempts: -1"),
        "spec.http[0].retries.attempts: -1 is negative"
    );
    assert_eq!(
        err("httpStatus: 418", "httpStatus: 99"),
        "spec.http[0].fault.abort.httpStatus: 99 is not within 200..599"
    );
    assert_eq!(
        err("{value: 12.5}", "{value: 120}"),
        "spec.http[0].mirrorPercentage.value: 120 is not within 0..100"
    );
    assert_eq!(
        err("host: web-canary", "host: \"\""),
        "spec.http[0].route[1].destination.host: required"
    );
    assert_eq!(
        err("port: {number: 80}", "port: {number: 70000}"),
        "spec.http[0].route[0].destination.port.number: 70000 is not a port (1..65535)"
    );
    assert_eq!(
        err("set: {x-split: a}", "set: {\"x:split\": a}"),
        "spec.http[0].route[0].headers.request.set.x:split: \"x:split\" is not a valid header name"
    );
    assert_eq!(
        err("maxAge: 24h", "maxAge: forever"),
        "spec.http[0].corsPolicy.maxAge: \"forever\" is not a duration (e.g. 1.5s, 300ms, 1m)"
    );
    assert_eq!(
        err(
            "- redirect: {uri: /moved, redirectCode: 302}",
            "- name: nothing"
        ),
        "spec.http[1]: one of route, redirect, directResponse or delegate is required"
    );
    assert_eq!(
        err("uri: {prefix: /api}", "uri: {prefix: api}"),
        "spec.http[0].match[0].uri: \"api\" does not start with /"
    );
    assert!(err("weight: 90", "weight: ninety")
        .starts_with("spec.http[0].route[0].weight: invalid type"));
    assert_eq!(
        err("hosts: [web.example.com,", "hosts: [\"web example\","),
        "spec.hosts[0]: \"web example\" is not a host name"
    );
}

#[test]
fn unknown_fields_are_accepted() {
    let y = VS
        .replace("  hosts:", "  exportTo: [\".\"]\n  hosts:")
        .replace(
            "    - uri: {prefix: /api}",
            "    - sourceLabels: {app: x}\n      statPrefix: s\n      uri: {prefix: /api}",
        );
    assert!(VirtualService::parse(y.as_bytes()).is_ok());
}
