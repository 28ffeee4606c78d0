//! chatgpt-proxy: the plugin of the Higress article "AI API gateway" (image
//! `oci://registry.cn-hangzhou.aliyuncs.com/zwj_test/chatgpt-proxy:1.0.0`, phase AUTHN,
//! priority 1), native. A `GET /?<promptParam>=<prompt>` becomes an OpenAI completions
//! request; the model's reply is the answer.
//!
//! Configuration:
//! - `apiKey`: the API key, sent as `Authorization: Bearer <apiKey>`; required;
//! - `model`: the model name, default `text-davinci-003`;
//! - `promptParam`: the query parameter carrying the prompt, default `prompt`;
//! - `chatgptUri`: `<host>/<path>` of the completions API, default
//!   `api.openai.com/v1/completions` (a scheme in front is ignored).
//!
//! As the article's plugin (a wasm-go `RouteCluster` client), the call goes to the
//! cluster of the route the request took, with `Host: <host of chatgptUri>`: the route's
//! backend is a registry entry (McpBridge `dns` or `static`) naming the model's host. The
//! call is plain HTTP/1.1 to that cluster's endpoint, and times out after 10 s (504).
//!
//! The body sent is `{"model", "prompt", "temperature": 0.9, "max_tokens": 150,
//! "top_p": 1, "frequency_penalty": 0, "presence_penalty": 0.6, "stop": [" Human:",
//! " AI:"]}`; the reply to the client is the model's status, `content-type` and body.
//! Without the prompt parameter: 400 `need prompt param`. An unreachable model: 502.

mod call;

use std::sync::Arc;
use std::time::Duration;

use pingora_http::RequestHeader;
use serde_json::{json, Value};
use telemetry::stats::{Counter, Kind};

use super::config::{self, object};
use super::{BuildContext, ClusterResolver, FilterFactory};
use crate::error::FieldError;
use crate::model::http_filter::{
    Decision, FilterStatus, HttpFilter, LocalReply, MatchInput, Pending,
};
use crate::model::plugin_chain::Phase;

/// How long the model may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Settings {
    api_key: String,
    model: String,
    prompt_param: String,
    host: String,
    path: String,
}

/// One configuration.
pub struct ChatgptProxy {
    settings: Arc<Settings>,
    resolve: ClusterResolver,
    calls: Counter,
    failures: Counter,
}

impl std::fmt::Debug for ChatgptProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatgptProxy")
            .field("model", &self.settings.model)
            .field("host", &self.settings.host)
            .field("path", &self.settings.path)
            .finish_non_exhaustive()
    }
}

fn text_reply(status: u16, body: &str) -> LocalReply {
    LocalReply {
        status,
        body: body.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// A query value as sent, `+` and `%XX` decoded.
fn decode_query(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl HttpFilter for ChatgptProxy {
    fn acts_on_response(&self) -> bool {
        false
    }

    fn on_request_headers(&self, req: &mut RequestHeader, input: &MatchInput<'_>) -> FilterStatus {
        let path = req.uri.path_and_query().map_or("", |p| p.as_str());
        let Some(prompt) = config::query_values(path, &self.settings.prompt_param).next() else {
            return FilterStatus::Reply(text_reply(400, "need prompt param"));
        };
        let s = &self.settings;
        let body = json!({
            "model": s.model,
            "prompt": decode_query(prompt),
            "temperature": 0.9,
            "max_tokens": 150,
            "top_p": 1,
            "frequency_penalty": 0.0,
            "presence_penalty": 0.6,
            "stop": [" Human:", " AI:"],
        })
        .to_string();
        let Some(addr) = input.cluster.and_then(|c| (self.resolve)(c)) else {
            self.failures.inc();
            return FilterStatus::Reply(text_reply(503, "no healthy upstream"));
        };
        self.calls.inc();
        let settings = self.settings.clone();
        let failures = self.failures.clone();
        FilterStatus::Wait(Pending::new(async move {
            let reply = match tokio::time::timeout(
                CALL_TIMEOUT,
                call::post(
                    addr,
                    &settings.host,
                    &settings.path,
                    &settings.api_key,
                    body,
                ),
            )
            .await
            {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    failures.inc();
                    tracing::warn!(upstream = %addr, error = %e, "chatgpt-proxy: the model call failed");
                    text_reply(502, "upstream connect error")
                }
                Err(_) => {
                    failures.inc();
                    text_reply(504, "upstream request timeout")
                }
            };
            Decision {
                reply: Some(reply),
                ..Default::default()
            }
        }))
    }
}

/// The article's `chatgpt-proxy` plugin.
pub struct ChatgptProxyFactory;

pub const FIELDS: &[&str] = &["apiKey", "model", "promptParam", "chatgptUri"];

impl FilterFactory for ChatgptProxyFactory {
    fn name(&self) -> &'static str {
        "chatgpt-proxy"
    }

    fn default_order(&self) -> (Phase, i32) {
        (Phase::Authn, 1)
    }

    fn fields(&self) -> &'static [&'static str] {
        FIELDS
    }

    fn build(
        &self,
        config: &Value,
        _global: Option<&Arc<dyn HttpFilter>>,
        ctx: &BuildContext<'_>,
    ) -> Result<Arc<dyn HttpFilter>, FieldError> {
        let obj = object(config)?;
        let api_key = config::string(obj, "apiKey")?;
        let model = config::opt_string(obj, "model")?.unwrap_or_else(|| "text-davinci-003".into());
        let prompt_param =
            config::opt_string(obj, "promptParam")?.unwrap_or_else(|| "prompt".into());
        if prompt_param.is_empty() {
            return Err(FieldError::new("promptParam", "must not be empty"));
        }
        let uri = config::opt_string(obj, "chatgptUri")?
            .unwrap_or_else(|| "api.openai.com/v1/completions".into());
        let bare = uri.split_once("://").map_or(uri.as_str(), |(_, rest)| rest);
        let (host, path) = match bare.find('/') {
            Some(i) => (&bare[..i], &bare[i..]),
            None => (bare, "/"),
        };
        if host.is_empty() || http::uri::Authority::try_from(host).is_err() {
            return Err(FieldError::new(
                "chatgptUri",
                format!("{uri:?}: expected <host>/<path>"),
            ));
        }
        if http::uri::PathAndQuery::try_from(path).is_err() {
            return Err(FieldError::new("chatgptUri", format!("{uri:?}: bad path")));
        }
        let family = |name: &str, help: &str| {
            ctx.registry
                .family(name, help, Kind::Counter)
                .counter(&[("plugin", ctx.plugin)])
        };
        Ok(Arc::new(ChatgptProxy {
            settings: Arc::new(Settings {
                api_key,
                model,
                prompt_param,
                host: host.to_string(),
                path: path.to_string(),
            }),
            resolve: ctx.resolve.clone(),
            calls: family(
                "gateway_chatgpt_proxy_calls_total",
                "Completions requests chatgpt-proxy sent, per plugin.",
            ),
            failures: family(
                "gateway_chatgpt_proxy_failures_total",
                "chatgpt-proxy calls that got no answer (no endpoint, connect error, timeout), per plugin.",
            ),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_decode_as_forms_do() {
        assert_eq!(decode_query("Say,hello"), "Say,hello");
        assert_eq!(decode_query("a+b%2Cc%zz%4"), "a b,c%zz%4");
        assert_eq!(decode_query("%é%"), "%é%");
    }

    #[test]
    fn the_uri_splits_into_host_and_path_and_errors_name_the_field() {
        let registry = telemetry::stats::Registry::new();
        let ctx = BuildContext::detached("ns.p", &registry);
        let f = ChatgptProxyFactory;
        let ok = f
            .build(
                &json!({"apiKey": "k", "chatgptUri": "https://llm.example:8080/v1/completions"}),
                None,
                &ctx,
            )
            .unwrap();
        let dbg = format!("{ok:?}");
        assert!(
            dbg.contains("llm.example:8080") && dbg.contains("/v1/completions"),
            "{dbg}"
        );
        assert!(!dbg.contains("\"k\""), "the key is not shown: {dbg}");
        assert_eq!(
            f.build(&json!({"model": "m"}), None, &ctx)
                .unwrap_err()
                .path,
            "apiKey"
        );
        assert_eq!(
            f.build(
                &json!({"apiKey": "k", "chatgptUri": "/only/path"}),
                None,
                &ctx
            )
            .unwrap_err()
            .path,
            "chatgptUri"
        );
    }
}
