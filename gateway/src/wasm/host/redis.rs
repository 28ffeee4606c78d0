//! `proxy_redis_init` and `proxy_redis_call`, the Redis calls of Higress's Envoy fork.
//!
//! A plugin names a cluster as `outbound|<port>||<fqdn>`, for init with a query string
//! (`?db=1&buffer_flush_timeout=3...`, of which only `db` matters, as in Envoy). Init
//! picks the client for its options (shared by the plugin's VMs); a call records one
//! RESP command, sent once the callback returns (`wasm/http_call.rs`), whose reply goes
//! to `proxy_on_redis_call_response` on the root context like an HTTP call's response.

use std::time::Duration;

use bytes::Bytes;

use super::memory::{code, ok, read, read_str, write_u32, Ret};
use super::state::{CallRequest, PendingCall};
use crate::redis::{resp, RedisOptions};
use crate::wasm::abi::Status;

/// A cluster name as a plugin passes it: the cluster (up to `?`) and the database of
/// its `db=` parameter (0 without one). `None`: `db` is not a number.
pub(super) fn parse_cluster(name: &str) -> Option<(&str, u32)> {
    let Some((cluster, query)) = name.split_once('?') else {
        return Some((name, 0));
    };
    let mut db = 0;
    for param in query.split('&') {
        if let Some(value) = param.strip_prefix("db=") {
            db = value.parse().ok()?;
        }
    }
    Some((cluster, db))
}

/// Whether `query` is exactly one RESP command (an array). The connection matches
/// replies to callers by count, so two commands in one query would hand every later
/// caller on it the wrong reply.
pub(super) fn one_command(query: &[u8]) -> bool {
    query.first() == Some(&b'*') && resp::reply_len(query) == Ok(Some(query.len()))
}

/// wasm-go's default when a plugin gives no timeout; a call is never unbounded.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);

host_fns! { "env" -> Ret;
    fn proxy_redis_init(mut c, np: i32, nl: i32, up: i32, ul: i32, pp: i32, pl: i32, timeout: i32) {
        let args = (read_str(&c, np, nl), read_str(&c, up, ul), read_str(&c, pp, pl));
        let (name, user, pass) = match args {
            (Ok(n), Ok(u), Ok(p)) => (n, u, p),
            (Err(s), _, _) | (_, Err(s), _) | (_, _, Err(s)) => return ok(s),
        };
        let Some((cluster, database)) = parse_cluster(&name) else {
            return ok(Status::BadArgument);
        };
        // Envoy refuses a cluster it does not know.
        if (c.data().plugin.resolve)(cluster).is_none() {
            tracing::debug!(plugin = %c.data().plugin.name, %cluster, "proxy_redis_init for a cluster with no endpoint: BadArgument");
            return ok(Status::BadArgument);
        }
        let timeout = match timeout as u32 {
            0 => DEFAULT_TIMEOUT,
            ms => Duration::from_millis(u64::from(ms)),
        };
        let options = RedisOptions {
            username: (!user.is_empty()).then_some(user),
            password: (!pass.is_empty()).then_some(pass),
            database,
            timeout,
        };
        let client = c.data().plugin.redis.get(options);
        c.data_mut().redis_clusters.insert(cluster.to_string(), client);
        ok(Status::Ok)
    }

    fn proxy_redis_call(mut c, np: i32, nl: i32, qp: i32, ql: i32, tokp: i32) {
        let (name, query) = match (read_str(&c, np, nl), read(&c, qp, ql)) {
            (Ok(n), Ok(q)) => (n, q),
            (Err(s), _) | (_, Err(s)) => return ok(s),
        };
        let cluster = name.split_once('?').map_or(name.as_str(), |(c, _)| c);
        let Some(addr) = (c.data().plugin.resolve)(cluster) else {
            tracing::debug!(plugin = %c.data().plugin.name, %cluster, "proxy_redis_call to a cluster with no endpoint: BadArgument");
            return ok(Status::BadArgument);
        };
        if !one_command(&query) {
            return ok(Status::BadArgument);
        }
        let st = c.data_mut();
        // Without an init Envoy's client has its defaults: no AUTH, database 0.
        let client = match st.redis_clusters.get(cluster) {
            Some(client) => client.clone(),
            None => st.plugin.redis.get(RedisOptions::default()),
        };
        st.next_token += 1;
        let token = st.next_token;
        let context = st.effective;
        st.pending_calls.push(PendingCall {
            token,
            context,
            request: CallRequest::Redis {
                client,
                addr,
                query: Bytes::from(query),
            },
        });
        code(write_u32(&mut c, tokp, token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_as_plugins_write_them() {
        assert_eq!(
            parse_cluster("outbound|6379||redis.default.svc.cluster.local"),
            Some(("outbound|6379||redis.default.svc.cluster.local", 0))
        );
        // wasm-go: `db` only when non-zero, then its buffer settings.
        assert_eq!(
            parse_cluster(
                "outbound|80||redis.static?db=3&buffer_flush_timeout=3&max_buffer_size_before_flush=1024"
            ),
            Some(("outbound|80||redis.static", 3))
        );
        assert_eq!(
            parse_cluster("outbound|80||redis.static?buffer_flush_timeout=3"),
            Some(("outbound|80||redis.static", 0))
        );
        assert_eq!(parse_cluster("outbound|80||redis.static?db=x"), None);
        assert_eq!(parse_cluster("outbound|80||redis.static?db=-1"), None);
    }

    #[test]
    fn a_query_is_one_command() {
        assert!(one_command(&resp::encode_command(&[b"GET", b"k"])));
        let mut two = resp::encode_command(&[b"GET", b"k"]);
        two.extend(resp::encode_command(&[b"GET", b"j"]));
        assert!(!one_command(&two));
        assert!(!one_command(b"*2\r\n$3\r\nGET\r\n"));
        assert!(!one_command(b"+OK\r\n"));
        assert!(!one_command(b""));
        assert!(!one_command(b"GET k\r\n"));
    }
}
