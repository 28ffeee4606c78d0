//! The Nacos config service over its v1 HTTP API: what Higress standalone's api-server
//! does through the Nacos SDK, spelled out. One connection per call (the calls are few:
//! a relist every 10 s, a long poll every 30 s, the console's writes).
//!
//! - `POST {ctx}/v1/auth/login` (form `username`, `password`) gives `accessToken` and
//!   `tokenTtl` (seconds); every call then carries `accessToken`, renewed at 90 % of its
//!   life or when a call answers 403.
//! - `GET {ctx}/v1/cs/configs?dataId&group&tenant`: the content (404: none).
//! - `GET {ctx}/v1/cs/configs?search=blur&dataId=<pattern>&group&tenant&pageNo&pageSize`:
//!   a page of `{totalCount, pageNumber, pagesAvailable, pageItems: [{dataId, group,
//!   content}]}`; `*` in the pattern matches anything.
//! - `POST {ctx}/v1/cs/configs` (form `dataId`, `group`, `tenant`, `content`, `type`;
//!   header `casMd5`): `true` when published; with `casMd5` only if the stored MD5 is
//!   that one (else 500 "Cas publish fail").
//! - `DELETE {ctx}/v1/cs/configs?dataId&group&tenant`: `true`.
//! - `POST {ctx}/v1/cs/configs/listener` (form `Listening-Configs`: `dataId^2group^2md5
//!   [^2tenant]^1` per config, header `Long-Pulling-Timeout` in ms): answers at once
//!   with the configs whose MD5 differs from what was sent, or after the timeout with
//!   none; the answer is URL-encoded `dataId^2group[^2tenant]^1` lines.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;

/// Longest answer read (a search page of 50 objects; one object is at most 4 MiB, as in
/// a config directory).
const MAX_BODY: usize = 64 << 20;

/// How long a call other than the long poll may take (Higress's `--nacos-timeout`).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A search page's size (Higress's `NACOS_CONFIG_SEARCH_PAGE_SIZE` default).
pub const PAGE_SIZE: usize = 50;

/// The group of the name indexes and of configs published without one.
pub const DEFAULT_GROUP: &str = "DEFAULT_GROUP";

#[derive(Debug, thiserror::Error)]
pub enum NacosError {
    #[error("Nacos {server}: {message}")]
    Unreachable { server: String, message: String },
    #[error("Nacos {server}: {what} answered {status}: {body}")]
    Status {
        server: String,
        what: String,
        status: u16,
        body: String,
    },
    #[error("Nacos {server}: {what}: unexpected answer: {message}")]
    Answer {
        server: String,
        what: String,
        message: String,
    },
}

impl NacosError {
    /// The server refused a CAS publish (the stored MD5 is not the one given).
    pub fn is_conflict(&self) -> bool {
        matches!(self, NacosError::Status { status, body, .. }
            if *status == 409 || (*status == 500 && body.to_ascii_lowercase().contains("cas")))
    }
}

/// `nacos://host[:port][/context]` (Higress's `-c nacos://host:8848`; port 8848 and
/// context `/nacos` by default).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerAddr {
    pub host: String,
    pub port: u16,
    /// `/nacos`: where the API is mounted.
    pub context: String,
}

impl ServerAddr {
    pub fn parse(url: &str) -> Result<ServerAddr, String> {
        let rest = url
            .strip_prefix("nacos://")
            .ok_or_else(|| format!("{url:?}: expected nacos://host[:port]"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{url:?}: invalid port {p:?}"))?;
                (h, port)
            }
            _ => (authority, 8848),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        let path = path.trim_end_matches('/');
        Ok(ServerAddr {
            host: host.to_string(),
            port,
            context: if path.is_empty() {
                "/nacos".into()
            } else {
                path.into()
            },
        })
    }

    fn authority(&self) -> String {
        match self.host.contains(':') {
            true => format!("[{}]:{}", self.host, self.port),
            false => format!("{}:{}", self.host, self.port),
        }
    }
}

impl std::fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.authority(), self.context)
    }
}

/// One config as a search lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigItem {
    pub data_id: String,
    pub group: String,
    pub content: String,
}

/// A config the long poll watches, with the MD5 last seen (`""`: none).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listened {
    pub data_id: String,
    pub group: String,
    pub md5: String,
}

/// MD5 hex of a config's content: Nacos's own version of it, and the object's
/// `resourceVersion` in Higress standalone.
pub fn md5_hex(content: &str) -> String {
    use md5::Digest as _;
    md5::Md5::digest(content.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub struct NacosClient {
    server: ServerAddr,
    /// The Nacos namespace id (`tenant`).
    tenant: String,
    credentials: Option<(String, String)>,
    /// The access token and when to renew it.
    token: tokio::sync::Mutex<Option<(String, Instant)>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Login {
    access_token: String,
    #[serde(default)]
    token_ttl: Option<u64>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    #[serde(default)]
    pages_available: usize,
    #[serde(default)]
    page_items: Vec<PageItem>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageItem {
    data_id: String,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    content: Option<String>,
}

/// A call's answer: status and body.
struct Answer {
    status: u16,
    body: String,
}

impl NacosClient {
    pub fn new(server: ServerAddr, tenant: String, credentials: Option<(String, String)>) -> Self {
        NacosClient {
            server,
            tenant,
            credentials,
            token: tokio::sync::Mutex::new(None),
        }
    }

    pub fn server(&self) -> &ServerAddr {
        &self.server
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    fn unreachable(&self, message: impl std::fmt::Display) -> NacosError {
        NacosError::Unreachable {
            server: self.server.to_string(),
            message: message.to_string(),
        }
    }

    fn status(&self, what: &str, a: Answer) -> NacosError {
        NacosError::Status {
            server: self.server.to_string(),
            what: what.to_string(),
            status: a.status,
            body: a.body.chars().take(300).collect(),
        }
    }

    async fn addr(&self) -> Result<SocketAddr, NacosError> {
        tokio::net::lookup_host((self.server.host.as_str(), self.server.port))
            .await
            .map_err(|e| self.unreachable(format!("resolving {}: {e}", self.server.host)))?
            .next()
            .ok_or_else(|| self.unreachable(format!("{}: no address", self.server.host)))
    }

    /// One exchange: `method` on `{ctx}{path}?{query}` with a form body, bounded by
    /// `timeout`.
    async fn send(
        &self,
        method: http::Method,
        path: &str,
        query: &str,
        form: Option<String>,
        headers: &[(&str, String)],
        timeout: Duration,
    ) -> Result<Answer, NacosError> {
        let addr = self.addr().await?;
        let uri = format!("{}{path}?{query}", self.server.context);
        let mut req = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::HOST, self.server.authority());
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let body = match form {
            Some(f) => {
                req = req.header(
                    http::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded; charset=utf-8",
                );
                Bytes::from(f)
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(body)).map_err(|e| self.unreachable(e))?;
        let (parts, body) =
            tokio::time::timeout(timeout, crate::http1::exchange(addr, req, MAX_BODY))
                .await
                .map_err(|_| self.unreachable(format!("no answer within {timeout:?}")))?
                .map_err(|e| self.unreachable(e))?;
        Ok(Answer {
            status: parts.status.as_u16(),
            body: String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        })
    }

    /// The access token, logging in when there is none or it is about to expire;
    /// `None` without credentials.
    async fn token(&self, renew: bool) -> Result<Option<String>, NacosError> {
        let Some((user, pass)) = &self.credentials else {
            return Ok(None);
        };
        let mut slot = self.token.lock().await;
        if let Some((t, until)) = &*slot {
            if !renew && Instant::now() < *until {
                return Ok(Some(t.clone()));
            }
        }
        let body = form(&[("username", user.as_str()), ("password", pass.as_str())]);
        let a = self
            .send(
                http::Method::POST,
                "/v1/auth/login",
                "",
                Some(body),
                &[],
                CALL_TIMEOUT,
            )
            .await?;
        if a.status != 200 {
            return Err(self.status("login", a));
        }
        let login: Login = serde_json::from_str(&a.body).map_err(|e| NacosError::Answer {
            server: self.server.to_string(),
            what: "login".into(),
            message: e.to_string(),
        })?;
        // Renewed at 90 % of its life, as the Nacos clients do.
        let ttl = Duration::from_secs(login.token_ttl.unwrap_or(18_000));
        *slot = Some((
            login.access_token.clone(),
            Instant::now() + ttl.mul_f64(0.9),
        ));
        Ok(Some(login.access_token))
    }

    /// A call with the token; once more with a new token when it answers 403.
    async fn call(
        &self,
        method: http::Method,
        path: &str,
        params: &[(&str, &str)],
        body_params: Option<&[(&str, &str)]>,
        headers: &[(&str, String)],
        timeout: Duration,
    ) -> Result<Answer, NacosError> {
        let mut renew = false;
        loop {
            let token = self.token(renew).await?;
            let mut q: Vec<(&str, &str)> = params.to_vec();
            if let Some(t) = &token {
                q.push(("accessToken", t.as_str()));
            }
            let a = self
                .send(
                    method.clone(),
                    path,
                    &form(&q),
                    body_params.map(form),
                    headers,
                    timeout,
                )
                .await?;
            if a.status == 403 && token.is_some() && !renew {
                renew = true;
                continue;
            }
            return Ok(a);
        }
    }

    /// The content of `data_id` in `group`; `None` when there is none.
    pub async fn get(&self, data_id: &str, group: &str) -> Result<Option<String>, NacosError> {
        let a = self
            .call(
                http::Method::GET,
                "/v1/cs/configs",
                &[
                    ("dataId", data_id),
                    ("group", group),
                    ("tenant", self.tenant.as_str()),
                ],
                None,
                &[],
                CALL_TIMEOUT,
            )
            .await?;
        match a.status {
            200 => Ok(Some(a.body)),
            404 => Ok(None),
            _ => Err(self.status(&format!("reading {group}/{data_id}"), a)),
        }
    }

    /// Every config whose data id matches `pattern` (`*` any run of characters), in
    /// `group` (`""`: every group), page after page.
    pub async fn search(&self, pattern: &str, group: &str) -> Result<Vec<ConfigItem>, NacosError> {
        let what = format!("searching {pattern}");
        let size = PAGE_SIZE.to_string();
        let mut out = Vec::new();
        let mut page_no = 1usize;
        loop {
            let no = page_no.to_string();
            let a = self
                .call(
                    http::Method::GET,
                    "/v1/cs/configs",
                    &[
                        ("search", "blur"),
                        ("dataId", pattern),
                        ("group", group),
                        ("tenant", self.tenant.as_str()),
                        ("pageNo", no.as_str()),
                        ("pageSize", size.as_str()),
                    ],
                    None,
                    &[],
                    CALL_TIMEOUT,
                )
                .await?;
            if a.status != 200 {
                return Err(self.status(&what, a));
            }
            let page: Page = serde_json::from_str(&a.body).map_err(|e| NacosError::Answer {
                server: self.server.to_string(),
                what: what.clone(),
                message: e.to_string(),
            })?;
            let got = page.page_items.len();
            out.extend(page.page_items.into_iter().map(|i| ConfigItem {
                data_id: i.data_id,
                group: i.group.unwrap_or_else(|| DEFAULT_GROUP.to_string()),
                content: i.content.unwrap_or_default(),
            }));
            if got == 0 || page.pages_available <= page_no {
                return Ok(out);
            }
            page_no += 1;
        }
    }

    /// Publish `content` as YAML; with `cas_md5`, only over that stored version (an
    /// absent config is created whatever `cas_md5` says, as Nacos does). `Ok(false)`:
    /// the server did not take it.
    pub async fn publish(
        &self,
        data_id: &str,
        group: &str,
        content: &str,
        cas_md5: Option<&str>,
    ) -> Result<bool, NacosError> {
        let p = [
            ("dataId", data_id),
            ("group", group),
            ("tenant", self.tenant.as_str()),
            ("content", content),
            ("type", "yaml"),
        ];
        // Nacos's v1 publish reads the expected MD5 from a header, not the form.
        let headers: Vec<(&str, String)> = cas_md5
            .map(|m| ("casMd5", m.to_string()))
            .into_iter()
            .collect();
        let a = self
            .call(
                http::Method::POST,
                "/v1/cs/configs",
                &[],
                Some(&p[..]),
                &headers,
                CALL_TIMEOUT,
            )
            .await?;
        match a.status {
            200 => Ok(a.body.trim() == "true"),
            _ => Err(self.status(&format!("publishing {group}/{data_id}"), a)),
        }
    }

    pub async fn delete(&self, data_id: &str, group: &str) -> Result<bool, NacosError> {
        let a = self
            .call(
                http::Method::DELETE,
                "/v1/cs/configs",
                &[
                    ("dataId", data_id),
                    ("group", group),
                    ("tenant", self.tenant.as_str()),
                ],
                None,
                &[],
                CALL_TIMEOUT,
            )
            .await?;
        match a.status {
            200 => Ok(a.body.trim() == "true"),
            _ => Err(self.status(&format!("deleting {group}/{data_id}"), a)),
        }
    }

    /// Long poll: waits up to `hold` for one of `configs` to differ from the MD5 given;
    /// returns those that do, as `(data_id, group)` (empty after `hold`).
    pub async fn listen(
        &self,
        configs: &[Listened],
        hold: Duration,
    ) -> Result<Vec<(String, String)>, NacosError> {
        let mut spec = String::new();
        for c in configs {
            spec.push_str(&c.data_id);
            spec.push('\u{2}');
            spec.push_str(&c.group);
            spec.push('\u{2}');
            spec.push_str(&c.md5);
            if !self.tenant.is_empty() {
                spec.push('\u{2}');
                spec.push_str(&self.tenant);
            }
            spec.push('\u{1}');
        }
        let a = self
            .call(
                http::Method::POST,
                "/v1/cs/configs/listener",
                &[],
                Some(&[("Listening-Configs", spec.as_str())][..]),
                &[("Long-Pulling-Timeout", hold.as_millis().to_string())],
                // The server answers at `hold`; past it with some slack, the poll is lost.
                hold + CALL_TIMEOUT,
            )
            .await?;
        if a.status != 200 {
            return Err(self.status("listening", a));
        }
        Ok(changed_configs(&a.body))
    }
}

/// `k=v&...`, form-encoded.
fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// The long poll's answer: URL-encoded `dataId^2group[^2tenant]^1` entries.
fn changed_configs(body: &str) -> Vec<(String, String)> {
    let decoded: String = form_urlencoded::parse(format!("x={}", body.trim()).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    decoded
        .split('\u{1}')
        .filter_map(|entry| {
            let mut f = entry.split('\u{2}');
            let data_id = f.next().filter(|d| !d.is_empty())?;
            let group = f.next()?;
            Some((data_id.to_string(), group.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        let a = ServerAddr::parse("nacos://192.168.0.1:8848").unwrap();
        assert_eq!(
            (a.host.as_str(), a.port, a.context.as_str()),
            ("192.168.0.1", 8848, "/nacos")
        );
        assert_eq!(a.to_string(), "192.168.0.1:8848/nacos");
        let a = ServerAddr::parse("nacos://nacos.local").unwrap();
        assert_eq!((a.port, a.context.as_str()), (8848, "/nacos"));
        let a = ServerAddr::parse("nacos://[::1]:9000/cfg/").unwrap();
        assert_eq!(
            (a.host.as_str(), a.port, a.context.as_str()),
            ("::1", 9000, "/cfg")
        );
        assert_eq!(a.to_string(), "[::1]:9000/cfg");
        assert!(ServerAddr::parse("http://h:8848").is_err());
        assert!(ServerAddr::parse("nacos://h:0").is_err());
        assert!(ServerAddr::parse("nacos://:8848").is_err());
    }

    #[test]
    fn long_poll_answers_are_decoded() {
        assert_eq!(
            changed_configs("ingresses.a%02higress-system%02higress-system%01mcpbridges.default%02higress-system%01\n"),
            [
                ("ingresses.a".to_string(), "higress-system".to_string()),
                ("mcpbridges.default".to_string(), "higress-system".to_string())
            ]
        );
        assert!(changed_configs("").is_empty());
    }

    #[test]
    fn md5_is_hex_of_the_content() {
        assert_eq!(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex("a"), "0cc175b9c0f1b6a831c399e269772661");
    }

    #[test]
    fn a_cas_refusal_is_a_conflict() {
        let e = |status, body: &str| NacosError::Status {
            server: "s".into(),
            what: "w".into(),
            status,
            body: body.into(),
        };
        assert!(e(500, "Cas publish fail, server md5 may have changed.").is_conflict());
        assert!(e(409, "").is_conflict());
        assert!(!e(500, "boom").is_conflict());
    }
}
