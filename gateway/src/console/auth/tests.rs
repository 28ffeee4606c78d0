use super::*;

/// A clock the test moves.
fn clock() -> (Arc<Mutex<Instant>>, Arc<dyn Fn() -> Instant + Send + Sync>) {
    let t = Arc::new(Mutex::new(Instant::now()));
    let read = t.clone();
    (t, Arc::new(move || *read.lock().unwrap()))
}

fn request(
    method: Method,
    path: &str,
    body: &str,
    cookie: Option<&str>,
    peer: [u8; 4],
) -> AdminRequest {
    let mut headers = http::HeaderMap::new();
    if let Some(c) = cookie {
        headers.insert(
            http::header::COOKIE,
            format!("x=1; {COOKIE}={c}").parse().unwrap(),
        );
    }
    AdminRequest {
        method,
        path: path.into(),
        query: None,
        headers,
        body: bytes::Bytes::from(body.to_string()),
        peer: std::net::SocketAddr::from((peer, 4000)),
    }
}

/// `POST /api/console/login` with `body` from `peer`.
async fn login(auth: &Auth, body: &str, peer: [u8; 4]) -> Response<Vec<u8>> {
    auth.respond(&request(
        Method::POST,
        "/api/console/login",
        body,
        None,
        peer,
    ))
    .await
    .unwrap()
}

fn token_of(r: &Response<Vec<u8>>) -> String {
    let c = r.headers()[http::header::SET_COOKIE].to_str().unwrap();
    assert!(
        c.ends_with("; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200"),
        "{c}"
    );
    let t = c
        .split(';')
        .next()
        .unwrap()
        .strip_prefix("gw_console=")
        .unwrap();
    assert_eq!(t.len(), 64);
    t.to_string()
}

#[test]
fn sessions_expire_after_12_hours() {
    let t0 = Instant::now();
    let mut s = Sessions::default();
    let tok = s.open("admin", t0);
    assert_eq!(
        s.get(&tok, t0 + SESSION_TTL - Duration::from_secs(1))
            .unwrap()
            .username,
        "admin"
    );
    assert!(s.get(&tok, t0 + SESSION_TTL).is_none());
    assert!(s.get("other", t0).is_none());
    let tok2 = s.open("admin", t0);
    assert_ne!(tok, tok2);
    s.close(&tok2);
    assert!(s.get(&tok2, t0).is_none());
}

#[test]
fn five_failures_a_minute_then_429_until_the_minute_passes() {
    let t0 = Instant::now();
    let ip: IpAddr = "10.0.0.1".parse().unwrap();
    let other: IpAddr = "10.0.0.2".parse().unwrap();
    let mut l = Limiter::default();
    for i in 0..5 {
        l.attempt(ip, t0 + Duration::from_secs(i)).unwrap();
    }
    assert_eq!(l.attempt(ip, t0 + Duration::from_secs(10)), Err(50));
    assert!(l.attempt(other, t0).is_ok(), "per peer IP");
    // The first failure leaves the window: one more attempt.
    assert!(l.attempt(ip, t0 + Duration::from_secs(60)).is_ok());
    // A success is no failure.
    let mut l = Limiter::default();
    for i in 0..10 {
        let at = t0 + Duration::from_millis(i);
        l.attempt(ip, at).unwrap();
        l.succeeded(ip, at);
    }
}

#[test]
fn constant_time_compare() {
    assert!(constant_time_eq(b"admin", b"admin"));
    assert!(!constant_time_eq(b"admin", b"admio"));
    assert!(!constant_time_eq(b"admin", b"admin2"));
    assert!(!constant_time_eq(b"", b"a"));
    assert!(constant_time_eq(b"", b""));
}

#[tokio::test]
async fn init_login_logout_in_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (t, now) = clock();
    let auth = Auth::with_clock(Arc::new(Store::Files(dir.path().to_path_buf())), now);
    let remote = [192, 0, 2, 1];
    let lo = [127, 0, 0, 1];
    let r = auth
        .respond(&request(Method::GET, "/api/console/session", "", None, lo))
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(r.body()).unwrap(),
        json!({"password_set": false, "username": null})
    );
    // Login before any password: refused.
    let r = auth
        .respond(&request(
            Method::POST,
            "/api/console/login",
            r#"{"username":"admin","password":"x"}"#,
            None,
            lo,
        ))
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    // The first password: from loopback only, 8 characters at least.
    let body = r#"{"password": "s3cret-pass"}"#;
    let r = auth
        .respond(&request(
            Method::POST,
            "/api/console/init",
            body,
            None,
            remote,
        ))
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = auth
        .respond(&request(
            Method::POST,
            "/api/console/init",
            r#"{"password": "short"}"#,
            None,
            lo,
        ))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        serde_json::from_slice::<Value>(r.body()).unwrap()["field"],
        "password"
    );
    let r = auth
        .respond(&request(Method::POST, "/api/console/init", body, None, lo))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tok = token_of(&r);
    assert!(auth.password_set());
    // Stored hashed in the Secret file, base64 as Secret data is.
    let text = std::fs::read_to_string(dir.path().join("secrets/higress-console.yaml")).unwrap();
    let secret: Value = serde_yaml::from_str(&text).unwrap();
    let creds = read_credentials(&secret).unwrap();
    assert_eq!(creds.username, "admin");
    assert!(creds.hash.starts_with("$2"), "bcrypt: {}", creds.hash);
    assert!(!text.contains("s3cret-pass"));
    // The Secret parses as the config source reads it.
    crate::resources::Resource::parse(Kind::Secret, text.as_bytes(), SECRET_NAME, "higress-system")
        .unwrap();
    let r = auth
        .respond(&request(Method::POST, "/api/console/init", body, None, lo))
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "set once");
    // The session the init opened, until 12 h have passed.
    let req = request(Method::GET, "/api/console/settings", "", Some(&tok), lo);
    assert_eq!(auth.session(&req).unwrap().username, "admin");
    *t.lock().unwrap() += SESSION_TTL;
    assert!(auth.session(&req).is_none());

    // Login: a wrong password is 401, the right one a session; logout ends it.
    let wrong = r#"{"username":"admin","password":"nope-nope"}"#;
    let right = r#"{"username":"admin","password":"s3cret-pass"}"#;
    let r = login(&auth, wrong, remote).await;
    assert_eq!(r.status(), 401);
    let r = auth
        .respond(&request(
            Method::POST,
            "/api/console/login",
            r#"{"username":"root","password":"s3cret-pass"}"#,
            None,
            remote,
        ))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = login(&auth, right, remote).await;
    assert_eq!(r.status(), 200);
    let tok = token_of(&r);
    let req = request(Method::POST, "/api/console/logout", "", Some(&tok), remote);
    assert!(auth.session(&req).is_some());
    let r = auth.respond(&req).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()[http::header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert!(auth.session(&req).is_none());
    // Three more failures make five in the minute: then 429, even for the right one.
    for _ in 0..3 {
        let r = login(&auth, wrong, remote).await;
        assert_eq!(r.status(), 401);
    }
    let r = login(&auth, right, remote).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key(http::header::RETRY_AFTER));
    *t.lock().unwrap() += FAILURE_WINDOW;
    let r = login(&auth, right, remote).await;
    assert_eq!(r.status(), 200);
    // Other paths are not auth's.
    assert!(auth
        .respond(&request(Method::GET, "/api/console/config", "", None, lo))
        .await
        .is_none());
}

#[tokio::test]
async fn a_secret_written_by_hand_is_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
    let hash = bcrypt::hash("by-hand-pass", 4).unwrap();
    std::fs::write(
        dir.path().join("secrets/higress-console.yaml"),
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: higress-console\nstringData:\n  adminUsername: ops\n  adminPasswordHash: '{hash}'\n"),
    )
    .unwrap();
    let auth = Auth::new(Arc::new(Store::Files(dir.path().to_path_buf())));
    let r = auth
        .respond(&request(
            Method::POST,
            "/api/console/login",
            r#"{"username":"ops","password":"by-hand-pass"}"#,
            None,
            [192, 0, 2, 9],
        ))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(auth.password_set());
}
