use super::*;

fn config(origins: Vec<Origin>, methods: &[&str], headers: &[&str], expose: &[&str]) -> CorsFilter {
    let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    CorsFilter::new(
        CorsConfig::new(
            origins,
            &v(methods),
            &v(headers),
            &v(expose),
            true,
            Some(1_728_000),
        )
        .unwrap(),
    )
}

fn request(method: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build(method, b"/", None).unwrap();
    for (k, v) in headers {
        r.insert_header(k.to_string(), *v).unwrap();
    }
    r
}

fn header<'a>(reply: &'a LocalReply, name: &str) -> Option<&'a str> {
    reply
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn preflight_from_allowed_origin_is_answered() {
    let f = config(
        vec![Origin::Exact("https://a.com".into())],
        &["GET", "PUT"],
        &["X-A", "X-B"],
        &["X-Total"],
    );
    let mut req = request(
        "OPTIONS",
        &[
            ("origin", "https://a.com"),
            ("access-control-request-method", "PUT"),
        ],
    );
    let FilterStatus::Reply(r) = f.on_request_headers(&mut req, &MatchInput::default()) else {
        panic!("a preflight is answered");
    };
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("https://a.com")
    );
    assert_eq!(header(&r, "access-control-allow-credentials"), Some("true"));
    assert_eq!(header(&r, "access-control-allow-methods"), Some("GET,PUT"));
    assert_eq!(header(&r, "access-control-allow-headers"), Some("X-A,X-B"));
    assert_eq!(header(&r, "access-control-max-age"), Some("1728000"));
    assert_eq!(header(&r, "access-control-expose-headers"), Some("X-Total"));
}

#[test]
fn other_requests_go_on() {
    let f = config(
        vec![Origin::Exact("https://a.com".into())],
        &["GET"],
        &[],
        &[],
    );
    let go_on = |method: &str, headers: &[(&str, &str)]| {
        let mut req = request(method, headers);
        f.on_request_headers(&mut req, &MatchInput::default()) == FilterStatus::Continue
    };
    // Not a preflight: no request method, no origin, an empty one, another method.
    assert!(go_on("OPTIONS", &[("origin", "https://a.com")]));
    assert!(go_on(
        "OPTIONS",
        &[("access-control-request-method", "GET")]
    ));
    assert!(go_on(
        "OPTIONS",
        &[("origin", ""), ("access-control-request-method", "GET")]
    ));
    assert!(go_on(
        "GET",
        &[
            ("origin", "https://a.com"),
            ("access-control-request-method", "GET")
        ]
    ));
    // A preflight from an origin not allowed is forwarded.
    assert!(go_on(
        "OPTIONS",
        &[
            ("origin", "https://b.com"),
            ("access-control-request-method", "GET")
        ]
    ));
    // Exact is case-sensitive.
    assert!(go_on(
        "OPTIONS",
        &[
            ("origin", "https://A.com"),
            ("access-control-request-method", "GET")
        ]
    ));
}

#[test]
fn wildcards_echo_the_request() {
    let f = config(vec![Origin::regex(".*").unwrap()], &["*"], &["*"], &[]);
    let mut req = request(
        "OPTIONS",
        &[
            ("origin", "https://any.where"),
            ("access-control-request-method", "DELETE"),
            ("access-control-request-headers", "x-one,x-two"),
        ],
    );
    let FilterStatus::Reply(r) = f.on_request_headers(&mut req, &MatchInput::default()) else {
        panic!("answered");
    };
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("https://any.where")
    );
    assert_eq!(header(&r, "access-control-allow-methods"), Some("DELETE"));
    assert_eq!(
        header(&r, "access-control-allow-headers"),
        Some("x-one,x-two")
    );
    assert_eq!(header(&r, "access-control-expose-headers"), None);
}

#[test]
fn regex_origins_match_the_whole_origin() {
    let c = CorsConfig::new(
        vec![Origin::regex(r".*\.b\.com:8443").unwrap()],
        &[],
        &[],
        &[],
        false,
        None,
    )
    .unwrap();
    assert!(c.allows(b"https://x.b.com:8443"));
    assert!(c.allows(b"http://y.x.b.com:8443"));
    assert!(!c.allows(b"https://x.b.com"));
    assert!(!c.allows(b"https://x.b.com:8443.evil"));
    assert!(!c.allows(b"https://xb.com:8443"));
    // `*` as an exact origin allows every origin, as Envoy checks it.
    let any = CorsConfig::new(vec![Origin::Exact("*".into())], &[], &[], &[], false, None).unwrap();
    assert!(any.allows(b"https://whatever"));
}

#[test]
fn actual_responses_get_headers_for_allowed_origins_only() {
    let f = config(
        vec![Origin::Exact("https://a.com".into())],
        &["GET"],
        &[],
        &["X-Total, X-Page"],
    );
    let req = request("GET", &[("origin", "https://a.com")]);
    let mut resp = parts();
    resp.headers
        .insert("access-control-allow-origin", HeaderValue::from_static("*"));
    assert_eq!(
        f.on_response_headers(&req, &mut resp),
        FilterStatus::Continue
    );
    let h = |r: &ResponseParts, n: &str| {
        r.headers
            .get_all(n)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        h(&resp, "access-control-allow-origin"),
        vec!["https://a.com"]
    );
    assert_eq!(h(&resp, "access-control-allow-credentials"), vec!["true"]);
    assert_eq!(
        h(&resp, "access-control-expose-headers"),
        vec!["X-Total, X-Page"]
    );
    let other = request("GET", &[("origin", "https://b.com")]);
    let mut resp = parts();
    f.on_response_headers(&other, &mut resp);
    assert!(resp.headers.get("access-control-allow-origin").is_none());
    let none = request("GET", &[]);
    f.on_response_headers(&none, &mut resp);
    assert!(resp.headers.is_empty());
}

fn parts() -> ResponseParts {
    http::Response::new(()).into_parts().0
}

#[test]
fn header_values_are_checked() {
    let bad = ["X-A\nX-B".to_string()];
    assert!(CorsConfig::new(vec![], &[], &bad, &[], true, None).is_err());
    assert!(Origin::regex("(").is_err());
}
