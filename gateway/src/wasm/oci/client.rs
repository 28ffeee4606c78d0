//! The registry side of a pull (OCI distribution API): the manifest by tag or digest,
//! then blobs by digest, answering `401` challenges (a Bearer token from the realm, or
//! Basic credentials) and following redirects (blob stores often redirect to a CDN;
//! credentials are not sent to another host). Each request is bounded: 15 s per attempt,
//! retried with backoff on connection errors, timeouts, 429 and 5xx, for at most 30 s.

use std::time::{Duration, Instant};

use http::header::{HeaderName, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::StatusCode;

use super::auth::{query_escape, Challenge, Credentials};
use super::layout::{Descriptor, Manifest, DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use super::reference::Reference;
use super::OciError;
use crate::wasm::download::{redirect_target, request, Response};
use crate::wasm::vm::sha256_hex;

const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
const REQUEST_BUDGET: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_ATTEMPTS: u32 = 4;
const MAX_REDIRECTS: usize = 5;

/// One registry and repository, with the authorization earned so far.
pub struct Registry<'a> {
    reference: &'a Reference,
    /// `http(s)://host[:port]`.
    base: String,
    credentials: Option<Credentials>,
    authorization: Option<String>,
}

impl<'a> Registry<'a> {
    pub fn new(reference: &'a Reference, insecure: bool, credentials: Option<Credentials>) -> Self {
        let scheme = if insecure { "http" } else { "https" };
        Registry {
            reference,
            base: format!("{scheme}://{}", reference.api_host()),
            credentials,
            authorization: None,
        }
    }

    /// The image's manifest (an index resolved to one of its manifests) and the digest
    /// hex of what the reference names (the index's, for an index).
    pub async fn manifest(&mut self) -> Result<(String, Manifest), OciError> {
        let wanted = self.reference.manifest_ref();
        let (digest, top) = self.get_manifest(&wanted).await?;
        if !top.is_index() {
            return Ok((digest, top));
        }
        let child = top.pick().ok_or_else(|| OciError::Manifest {
            reference: wanted.clone(),
            why: "the index lists no manifests".into(),
        })?;
        tracing::debug!(image = %self.reference, manifest = %child.digest, "index resolved to a manifest");
        let (_, m) = self.get_manifest(&child.digest).await?;
        if m.is_index() {
            return Err(OciError::Manifest {
                reference: child.digest.clone(),
                why: "an index inside an index".into(),
            });
        }
        Ok((digest, m))
    }

    /// One manifest by tag or `sha256:` digest, checked against the digest when it is one.
    async fn get_manifest(&mut self, reference: &str) -> Result<(String, Manifest), OciError> {
        let url = format!(
            "{}/v2/{}/manifests/{reference}",
            self.base, self.reference.repository
        );
        let accept = [OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST].join(", ");
        let resp = self.get(&url, Some(&accept)).await?;
        let err = |why: String| OciError::Manifest {
            reference: reference.to_string(),
            why,
        };
        if resp.status != StatusCode::OK {
            return Err(err(self.status_problem(&resp)));
        }
        let digest = sha256_hex(&resp.body);
        if let Some(hex) = reference.strip_prefix("sha256:") {
            if !digest.eq_ignore_ascii_case(hex) {
                return Err(err(format!(
                    "the registry sent content with digest sha256:{digest}"
                )));
            }
        }
        let content_type = resp.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let m = Manifest::parse(&resp.body, content_type).map_err(err)?;
        Ok((digest, m))
    }

    /// Blob `layer` (the `index`th layer), its digest and size checked.
    pub async fn blob(&mut self, index: usize, layer: &Descriptor) -> Result<Vec<u8>, OciError> {
        let err = |why: String| OciError::Layer {
            index,
            digest: layer.digest.clone(),
            why,
        };
        let Some(hex) = layer.digest.strip_prefix("sha256:") else {
            return Err(err("only sha256 digests are supported".into()));
        };
        let url = format!(
            "{}/v2/{}/blobs/{}",
            self.base, self.reference.repository, layer.digest
        );
        let resp = self.get(&url, None).await?;
        if resp.status != StatusCode::OK {
            return Err(err(self.status_problem(&resp)));
        }
        if let Some(size) = layer.size {
            if resp.body.len() as u64 != size {
                return Err(err(format!(
                    "{} bytes, the manifest says {size}",
                    resp.body.len()
                )));
            }
        }
        let actual = sha256_hex(&resp.body);
        if !actual.eq_ignore_ascii_case(hex) {
            return Err(err(format!("the blob's sha256 is {actual}")));
        }
        Ok(resp.body)
    }

    fn status_problem(&self, resp: &Response) -> String {
        let status = resp.status;
        let hint = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                if self.credentials.is_some() {
                    ": the registry refused the credentials of spec.imagePullSecret"
                } else {
                    ": the registry wants credentials (spec.imagePullSecret)"
                }
            }
            StatusCode::NOT_FOUND => ": no such image",
            _ => "",
        };
        // The distribution API's error body is JSON with a short message.
        let body = String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)]);
        format!("{status}{hint} ({})", body.trim())
    }

    /// `GET url` with the authorization earned so far: a `401` is answered once, redirects
    /// are followed.
    async fn get(&mut self, url: &str, accept: Option<&str>) -> Result<Response, OciError> {
        let mut url = url.to_string();
        let mut challenged = false;
        let mut same_host = true;
        let mut redirects = 0;
        loop {
            let mut headers: Vec<(HeaderName, String)> = Vec::new();
            if let Some(a) = accept {
                headers.push((ACCEPT, a.to_string()));
            }
            if let (true, Some(auth)) = (same_host, &self.authorization) {
                headers.push((AUTHORIZATION, auth.clone()));
            }
            let resp = send(&url, &headers)
                .await
                .map_err(|detail| OciError::Unreachable {
                    registry: self.reference.registry.clone(),
                    detail,
                })?;
            if resp.status == StatusCode::UNAUTHORIZED && same_host && !challenged {
                challenged = true;
                self.answer(&resp).await?;
                continue;
            }
            if resp.status.is_redirection() {
                if let Some(to) = resp.headers.get(http::header::LOCATION) {
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        return Err(OciError::Unreachable {
                            registry: self.reference.registry.clone(),
                            detail: format!("more than {MAX_REDIRECTS} redirects from {url}"),
                        });
                    }
                    url = redirect_target(&url, to.to_str().unwrap_or(""));
                    same_host = authority(&url) == authority(&self.base);
                    tracing::debug!(to = %url, "registry redirected");
                    continue;
                }
            }
            return Ok(resp);
        }
    }

    /// Earn an authorization for the challenge of a `401`.
    async fn answer(&mut self, resp: &Response) -> Result<(), OciError> {
        let registry = self.reference.registry.clone();
        let unauthorized = |why: String| OciError::Unauthorized {
            registry: registry.clone(),
            why,
        };
        let header = resp
            .headers
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| unauthorized("401 without a WWW-Authenticate challenge".into()))?;
        match Challenge::parse(header).map_err(unauthorized)? {
            Challenge::Basic => {
                let c = self.credentials.as_ref().ok_or_else(|| {
                    unauthorized("it asks for Basic credentials; name a Secret with them in spec.imagePullSecret".into())
                })?;
                self.authorization = Some(c.basic());
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let token = self.token(&realm, service, scope).await?;
                self.authorization = Some(format!("Bearer {token}"));
            }
            Challenge::Other(scheme) => {
                return Err(unauthorized(format!(
                    "unsupported authentication scheme {scheme:?}"
                )))
            }
        }
        Ok(())
    }

    /// A token from a Bearer realm, asked with Basic credentials when there are some.
    async fn token(
        &self,
        realm: &str,
        service: Option<String>,
        scope: Option<String>,
    ) -> Result<String, OciError> {
        let scope =
            scope.unwrap_or_else(|| format!("repository:{}:pull", self.reference.repository));
        let mut query = vec![format!("scope={}", query_escape(&scope))];
        if let Some(s) = service {
            query.push(format!("service={}", query_escape(&s)));
        }
        let sep = if realm.contains('?') { '&' } else { '?' };
        let url = format!("{realm}{sep}{}", query.join("&"));
        let err = |why: String| OciError::Token {
            realm: realm.to_string(),
            why,
        };
        let mut headers = Vec::new();
        if let Some(c) = &self.credentials {
            headers.push((AUTHORIZATION, c.basic()));
        }
        let resp = send(&url, &headers).await.map_err(err)?;
        if resp.status != StatusCode::OK {
            let hint = if resp.status == StatusCode::UNAUTHORIZED {
                " (check spec.imagePullSecret)"
            } else {
                ""
            };
            return Err(err(format!("{}{hint}", resp.status)));
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: TokenResponse = serde_json::from_slice(&resp.body)
            .map_err(|e| err(format!("the answer is not a token: {e}")))?;
        t.token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| err("the answer has no token".into()))
    }
}

fn authority(url: &str) -> Option<String> {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|u| u.authority().map(|a| a.as_str().to_ascii_lowercase()))
}

/// One request, retried on what may pass: connection errors, timeouts, 429 and 5xx.
async fn send(url: &str, headers: &[(HeaderName, String)]) -> Result<Response, String> {
    let start = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        let left = REQUEST_BUDGET.saturating_sub(start.elapsed());
        let wait = left.min(ATTEMPT_TIMEOUT);
        let e = match tokio::time::timeout(wait, request(url, headers)).await {
            Ok(Ok(r))
                if r.status.is_server_error() || r.status == StatusCode::TOO_MANY_REQUESTS =>
            {
                format!("GET {url}: {}", r.status)
            }
            Ok(Ok(r)) => return Ok(r),
            Ok(Err(e)) => e,
            Err(_) => format!("GET {url}: no answer within {}s", wait.as_secs()),
        };
        if attempt >= MAX_ATTEMPTS || start.elapsed() + backoff >= REQUEST_BUDGET {
            return Err(format!("{e} (after {attempt} attempts)"));
        }
        tracing::debug!(error = %e, attempt, "registry request failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff *= 2;
        attempt += 1;
    }
}
