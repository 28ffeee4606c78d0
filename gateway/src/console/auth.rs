//! Console login, as the Higress console's: one admin user whose password is set on the
//! first visit (from a loopback peer only) and kept hashed (bcrypt) in the Secret
//! `higress-console` of the config source (`adminUsername`, `adminPasswordHash`), so a
//! Secret written by hand works too. Sessions live in memory for 12 h behind a random
//! cookie; 5 failed logins in a minute from one peer IP and that IP gets 429 until the
//! minute has passed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use http::{Method, Response};
use serde_json::{json, Value};

use crate::admin::{method_not_allowed, AdminRequest};
use crate::resources::Kind;

use super::manage::store::{Backend, Precondition, StoreError};
use super::manage::Store;
use super::{error, json};

/// The Secret holding the console's credentials, as Higress's console names it.
pub const SECRET_NAME: &str = "higress-console";
pub const USERNAME_KEY: &str = "adminUsername";
pub const PASSWORD_HASH_KEY: &str = "adminPasswordHash";
pub const COOKIE: &str = "gw_console";
/// How long a session lasts (the cookie's `Max-Age`).
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Failed logins per peer IP within [`FAILURE_WINDOW`] before 429.
pub const MAX_FAILURES: usize = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Shortest password taken; bcrypt reads 72 bytes at most, so no longer one either.
const MIN_PASSWORD: usize = 8;
const MAX_PASSWORD: usize = 72;
/// How long the credentials read from the store are trusted (the settings page asks
/// whether a password is set on every load).
const CREDENTIALS_TTL: Duration = Duration::from_secs(2);
/// Sessions and rate-limited peers kept at most (a flood of logins cannot grow memory).
const MAX_ENTRIES: usize = 10_000;

/// Who is logged in.
#[derive(Clone, Debug)]
pub struct Session {
    pub username: String,
}

/// The admin's credentials as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Credentials {
    username: String,
    hash: String,
}

/// Sessions by token, each with its expiry.
#[derive(Default)]
pub struct Sessions {
    by_token: HashMap<String, (String, Instant)>,
}

impl Sessions {
    pub fn open(&mut self, username: &str, now: Instant) -> String {
        self.by_token.retain(|_, (_, exp)| *exp > now);
        if self.by_token.len() >= MAX_ENTRIES {
            // The oldest goes: a flood of logins ends old sessions, never the new one.
            if let Some(oldest) = self
                .by_token
                .iter()
                .min_by_key(|(_, (_, exp))| *exp)
                .map(|(t, _)| t.clone())
            {
                self.by_token.remove(&oldest);
            }
        }
        let token = random_token();
        self.by_token
            .insert(token.clone(), (username.to_string(), now + SESSION_TTL));
        token
    }

    pub fn get(&self, token: &str, now: Instant) -> Option<Session> {
        self.by_token
            .get(token)
            .filter(|(_, exp)| *exp > now)
            .map(|(u, _)| Session {
                username: u.clone(),
            })
    }

    pub fn close(&mut self, token: &str) {
        self.by_token.remove(token);
    }
}

/// Failed logins per peer IP in the last minute.
#[derive(Default)]
pub struct Limiter {
    failures: HashMap<IpAddr, Vec<Instant>>,
}

impl Limiter {
    /// `Err(seconds to wait)` when `ip` has failed [`MAX_FAILURES`] times within the
    /// window; else the attempt is counted as a failure until [`Limiter::succeeded`]
    /// takes it back (so concurrent attempts cannot pass the limit together).
    pub fn attempt(&mut self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        self.failures.retain(|_, v| {
            v.last()
                .is_some_and(|t| now.duration_since(*t) < FAILURE_WINDOW)
        });
        if self.failures.len() >= MAX_ENTRIES && !self.failures.contains_key(&ip) {
            return Err(FAILURE_WINDOW.as_secs());
        }
        let list = self.failures.entry(ip).or_default();
        list.retain(|t| now.duration_since(*t) < FAILURE_WINDOW);
        if list.len() >= MAX_FAILURES {
            let wait = FAILURE_WINDOW.saturating_sub(now.duration_since(list[0]));
            return Err(wait.as_secs_f64().ceil().max(1.0) as u64);
        }
        list.push(now);
        Ok(())
    }

    /// The attempt made at `at` succeeded: it is no failure.
    pub fn succeeded(&mut self, ip: IpAddr, at: Instant) {
        if let Some(list) = self.failures.get_mut(&ip) {
            if let Some(i) = list.iter().rposition(|t| *t == at) {
                list.remove(i);
            }
        }
    }
}

/// 32 random bytes, hex.
fn random_token() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the OS random source");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Equal in time that depends on the lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        diff |= x ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// The session cookie's token, from any `Cookie` header.
fn cookie_token(req: &AdminRequest) -> Option<&str> {
    crate::model::cookie::cookie(&req.headers, COOKIE)
}

fn set_cookie(token: &str, max_age: u64) -> http::HeaderValue {
    http::HeaderValue::from_str(&format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}"
    ))
    .unwrap_or_else(|_| http::HeaderValue::from_static(""))
}

/// A JSON error naming a body field.
fn field_error(status: u16, field: &str, message: &str) -> Response<Vec<u8>> {
    json(
        status,
        &json!({"error": message, "field": field, "object": null, "file": null}),
    )
}

/// When the Secret was read and what it said.
struct Cached {
    at: Instant,
    credentials: Option<Credentials>,
}

pub struct Auth {
    backend: Backend,
    sessions: Mutex<Sessions>,
    limiter: Mutex<Limiter>,
    cached: Mutex<Option<Cached>>,
    /// The clock sessions and the limiter read (a test's own in unit tests).
    now: Arc<dyn Fn() -> Instant + Send + Sync>,
}

impl Auth {
    pub fn new(store: Arc<Store>) -> Self {
        Self::with_clock(store, Arc::new(Instant::now))
    }

    pub fn with_clock(store: Arc<Store>, now: Arc<dyn Fn() -> Instant + Send + Sync>) -> Self {
        Auth {
            backend: Backend::new(&store),
            sessions: Mutex::new(Sessions::default()),
            limiter: Mutex::new(Limiter::default()),
            cached: Mutex::new(None),
            now,
        }
    }

    /// The session a request carries, if it is valid.
    pub fn session(&self, req: &AdminRequest) -> Option<Session> {
        let token = cookie_token(req)?;
        self.sessions.lock().ok()?.get(token, (self.now)())
    }

    /// Whether the console password was set (as last read from the store).
    pub fn password_set(&self) -> bool {
        self.cached
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|c| c.credentials.is_some()))
            .unwrap_or(false)
    }

    /// Read the credentials from the store (always when `fresh`, else when the last
    /// read is older than [`CREDENTIALS_TTL`]).
    async fn credentials(&self, fresh: bool) -> Result<Option<Credentials>, StoreError> {
        let now = Instant::now();
        if !fresh {
            if let Some(c) = self.cached.lock().ok().as_deref().and_then(Option::as_ref) {
                if now.duration_since(c.at) < CREDENTIALS_TTL {
                    return Ok(c.credentials.clone());
                }
            }
        }
        let secret = self.backend.get(Kind::Secret, SECRET_NAME).await?;
        let credentials = secret.and_then(|s| read_credentials(&s.object));
        if let Ok(mut c) = self.cached.lock() {
            *c = Some(Cached {
                at: now,
                credentials: credentials.clone(),
            });
        }
        Ok(credentials)
    }

    /// `/api/console/login`, `/logout`, `/init`, `/session`.
    pub async fn respond(&self, req: &AdminRequest) -> Option<Response<Vec<u8>>> {
        // Every console request passes here first: keep `password_set` current.
        if let Err(e) = self.credentials(false).await {
            tracing::warn!(error = %e, "console: cannot read the Secret {SECRET_NAME}");
        }
        match req.path.as_str() {
            "/api/console/session" => Some(match req.method {
                Method::GET | Method::HEAD => json(
                    200,
                    &json!({
                        "password_set": self.password_set(),
                        "username": self.session(req).map(|s| s.username),
                    }),
                ),
                _ => method_not_allowed("GET, HEAD"),
            }),
            "/api/console/init" | "/api/console/login" | "/api/console/logout"
                if req.method != Method::POST =>
            {
                Some(method_not_allowed("POST"))
            }
            "/api/console/init" => Some(self.init(req).await),
            "/api/console/login" => Some(self.login(req).await),
            "/api/console/logout" => {
                if let Some(t) = cookie_token(req) {
                    if let Ok(mut s) = self.sessions.lock() {
                        s.close(t);
                    }
                }
                let mut r = json(200, &json!({}));
                r.headers_mut()
                    .insert(http::header::SET_COOKIE, set_cookie("", 0));
                Some(r)
            }
            _ => None,
        }
    }

    /// A session for `username`, answered with its cookie.
    fn logged_in(&self, username: &str) -> Response<Vec<u8>> {
        let token = match self.sessions.lock() {
            Ok(mut s) => s.open(username, (self.now)()),
            Err(_) => return error(500, "session store unavailable"),
        };
        let mut r = json(200, &json!({ "username": username }));
        r.headers_mut().insert(
            http::header::SET_COOKIE,
            set_cookie(&token, SESSION_TTL.as_secs()),
        );
        r
    }

    async fn init(&self, req: &AdminRequest) -> Response<Vec<u8>> {
        if !req.peer.ip().to_canonical().is_loopback() {
            return error(
                403,
                "the first password is set from the gateway's own host only (a loopback peer)",
            );
        }
        let body: Value = match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(e) => return error(400, format!("the body must be JSON: {e}")),
        };
        let username = match &body["username"] {
            Value::Null => "admin".to_string(),
            Value::String(u) if !u.trim().is_empty() && !u.contains(char::is_control) => {
                u.trim().to_string()
            }
            _ => return field_error(400, "username", "expected a non-empty name"),
        };
        let Some(password) = body["password"].as_str() else {
            return field_error(400, "password", "is required");
        };
        if password.chars().count() < MIN_PASSWORD || password.len() > MAX_PASSWORD {
            return field_error(
                400,
                "password",
                "must be 8 characters at least and 72 bytes at most",
            );
        }
        // The Secret as it is now, read again: set by hand since the last look?
        let secret = match self.backend.get(Kind::Secret, SECRET_NAME).await {
            Ok(s) => s,
            Err(e) => return error(500, e.to_string()),
        };
        if secret
            .as_ref()
            .and_then(|s| read_credentials(&s.object))
            .is_some()
        {
            return error(409, "the console password is set already; log in");
        }
        let password = password.to_string();
        let hash =
            match tokio::task::spawn_blocking(move || bcrypt::hash(password, bcrypt::DEFAULT_COST))
                .await
            {
                Ok(Ok(h)) => h,
                Ok(Err(e)) => return error(500, format!("hashing the password: {e}")),
                Err(e) => return error(500, format!("hashing the password: {e}")),
            };
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        // Written over a Secret of that name that has no password (kept keys and all).
        let (mut object, pre) = match secret {
            Some(s) => (s.object, Precondition::Version(s.version)),
            None => (
                json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": SECRET_NAME, "namespace": self.backend.namespace()}}),
                Precondition::Absent,
            ),
        };
        if !object["data"].is_object() {
            object["data"] = json!({});
        }
        object["data"][USERNAME_KEY] = b64(&username).into();
        object["data"][PASSWORD_HASH_KEY] = b64(&hash).into();
        match self
            .backend
            .put(Kind::Secret, SECRET_NAME, object, pre)
            .await
        {
            Ok(_) => {}
            Err(StoreError::Conflict { .. }) => {
                return error(409, "the console password was set meanwhile; log in")
            }
            Err(e) => return error(500, format!("storing the password: {e}")),
        }
        let _ = self.credentials(true).await;
        tracing::info!(user = %username, "console: password set");
        self.logged_in(&username)
    }

    async fn login(&self, req: &AdminRequest) -> Response<Vec<u8>> {
        let ip = req.peer.ip().to_canonical();
        let at = (self.now)();
        let limited = match self.limiter.lock() {
            Ok(mut l) => l.attempt(ip, at),
            Err(_) => Ok(()),
        };
        if let Err(wait) = limited {
            let mut r = error(429, "too many failed logins; try again later");
            if let Ok(v) = http::HeaderValue::from_str(&wait.to_string()) {
                r.headers_mut().insert(http::header::RETRY_AFTER, v);
            }
            return r;
        }
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let username = body["username"].as_str().unwrap_or("").to_string();
        let password = body["password"].as_str().unwrap_or("").to_string();
        let credentials = match self.credentials(true).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                self.forgive(ip, at);
                return error(
                    409,
                    "no console password yet: set one first (/api/console/init)",
                );
            }
            Err(e) => {
                self.forgive(ip, at);
                return error(500, e.to_string());
            }
        };
        // bcrypt runs for a wrong user name too: the answer's time tells nothing.
        let user_ok = constant_time_eq(username.as_bytes(), credentials.username.as_bytes());
        let hash = credentials.hash.clone();
        let password_ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        if !(user_ok && password_ok) {
            tracing::warn!(peer = %ip, "console: failed login");
            return error(401, "wrong user name or password");
        }
        self.forgive(ip, at);
        tracing::info!(user = %credentials.username, peer = %ip, "console: logged in");
        self.logged_in(&credentials.username)
    }

    fn forgive(&self, ip: IpAddr, at: Instant) {
        if let Ok(mut l) = self.limiter.lock() {
            l.succeeded(ip, at);
        }
    }
}

/// `adminUsername` and `adminPasswordHash` of the Secret (`stringData` over `data`).
fn read_credentials(secret: &Value) -> Option<Credentials> {
    let value = |key: &str| -> Option<String> {
        if let Some(s) = secret["stringData"][key].as_str() {
            return Some(s.to_string());
        }
        let b64 = secret["data"][key].as_str()?;
        let compact: String = b64.split_whitespace().collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .ok()?;
        String::from_utf8(bytes).ok()
    };
    let username = value(USERNAME_KEY).filter(|u| !u.is_empty())?;
    let hash = value(PASSWORD_HASH_KEY).filter(|h| !h.is_empty())?;
    Some(Credentials { username, hash })
}

#[cfg(test)]
mod tests;
