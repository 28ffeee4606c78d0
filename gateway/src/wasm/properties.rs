//! `proxy_get_property`: Envoy's attribute names, encoded as Envoy encodes them (strings
//! raw, integers 8 bytes little-endian, maps as pairs), from the stream and the plugin.
//! Values a plugin stored with `proxy_set_property` are looked up by the caller.

use std::time::UNIX_EPOCH;

use super::abi::serialize_pairs;
use super::stream::StreamView;

/// What properties may read besides the stream: the plugin's names and memory size.
pub struct PluginFacts<'a> {
    /// `<namespace>.<name>`.
    pub plugin_name: &'a str,
    pub root_id: &'a str,
    pub vm_id: &'a str,
    pub memory_bytes: u64,
}

fn int(v: i64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

/// The value of property `path`, if the gateway has it.
pub fn get(path: &[&[u8]], view: Option<&StreamView>, plugin: &PluginFacts<'_>) -> Option<Vec<u8>> {
    let seg = |i: usize| path.get(i).map(|s| std::str::from_utf8(s).unwrap_or(""));
    match (seg(0)?, path.len()) {
        ("plugin_name", 1) => return Some(plugin.plugin_name.as_bytes().to_vec()),
        ("plugin_root_id", 1) => return Some(plugin.root_id.as_bytes().to_vec()),
        ("plugin_vm_id", 1) => return Some(plugin.vm_id.as_bytes().to_vec()),
        ("plugin_vm_memory", 1) => return Some(plugin.memory_bytes.to_le_bytes().to_vec()),
        _ => {}
    }
    let view = view?;
    // SAFETY: properties are read inside the guest call the view was lent for.
    let (req, info) = unsafe { (view.request(), view.info()) };
    let header =
        |name: &str| -> Option<Vec<u8>> { req.headers.get(name).map(|v| v.as_bytes().to_vec()) };
    let authority = || -> Option<Vec<u8>> {
        header("host").or_else(|| req.uri.authority().map(|a| a.as_str().as_bytes().to_vec()))
    };
    match (seg(0)?, seg(1), path.len()) {
        ("route_name", None, 1) | ("xds", Some("route_name"), 2) => {
            info.route_name.as_ref().map(|r| r.as_bytes().to_vec())
        }
        ("cluster_name", None, 1) | ("xds", Some("cluster_name"), 2) => {
            info.cluster_name.as_ref().map(|c| c.as_bytes().to_vec())
        }
        ("connection_id", None, 1) => info.connection_id.map(|id| id.to_le_bytes().to_vec()),
        ("request", Some(what), 2) => match what {
            "path" => Some(
                req.uri
                    .path_and_query()
                    .map_or(req.uri.path(), |p| p.as_str())
                    .as_bytes()
                    .to_vec(),
            ),
            "url_path" => Some(req.uri.path().as_bytes().to_vec()),
            "query" => Some(req.uri.query().unwrap_or("").as_bytes().to_vec()),
            "host" => authority(),
            "scheme" => Some(info.scheme.as_bytes().to_vec()),
            "method" => Some(req.method.as_str().as_bytes().to_vec()),
            "referer" => header("referer"),
            "useragent" => header("user-agent"),
            "id" => header("x-request-id"),
            "protocol" => Some(info.protocol.as_bytes().to_vec()),
            "time" => info.start.and_then(|t| {
                t.duration_since(UNIX_EPOCH)
                    .ok()
                    .map(|d| int(d.as_nanos() as i64))
            }),
            "duration" => info
                .start
                .and_then(|t| t.elapsed().ok().map(|d| int(d.as_nanos() as i64))),
            "size" | "total_size" => Some(int(info.request_size as i64)),
            "headers" => {
                let pairs: Vec<(&[u8], &[u8])> = req
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str().as_bytes(), v.as_bytes()))
                    .collect();
                Some(serialize_pairs(pairs))
            }
            _ => None,
        },
        ("request", Some("headers"), 3) => header(seg(2)?),
        ("response", Some(what), 2) => {
            // SAFETY: as above.
            let resp = unsafe { view.response() };
            match what {
                "code" => resp
                    .map(|r| r.status.as_u16())
                    .or((info.response_code != 0).then_some(info.response_code))
                    .map(|c| int(i64::from(c))),
                "code_details" => Some(b"via_upstream".to_vec()),
                "flags" => Some(int(info.response_flags as i64)),
                "size" | "total_size" => Some(int(info.response_size as i64)),
                "headers" => resp.map(|r| {
                    let pairs: Vec<(&[u8], &[u8])> = r
                        .headers
                        .iter()
                        .map(|(k, v)| (k.as_str().as_bytes(), v.as_bytes()))
                        .collect();
                    serialize_pairs(pairs)
                }),
                _ => None,
            }
        }
        ("response", Some("headers"), 3) => unsafe { view.response() }
            .and_then(|r| r.headers.get(seg(2)?).map(|v| v.as_bytes().to_vec())),
        ("source", Some("address"), 2) => info.peer.map(|a| a.to_string().into_bytes()),
        ("source", Some("port"), 2) => info.peer.map(|a| int(i64::from(a.port()))),
        ("destination", Some("address"), 2) => info.local.map(|a| a.to_string().into_bytes()),
        ("destination", Some("port"), 2) => info.local.map(|a| int(i64::from(a.port()))),
        ("upstream", Some("address"), 2) => info.upstream.map(|a| a.to_string().into_bytes()),
        ("upstream", Some("port"), 2) => info.upstream.map(|a| int(i64::from(a.port()))),
        ("connection", Some(what), 2) => match what {
            "id" => info.connection_id.map(|id| id.to_le_bytes().to_vec()),
            "mtls" => Some(vec![0]),
            "requested_server_name" => Some(
                info.sni
                    .as_ref()
                    .map_or(Vec::new(), |s| s.as_bytes().to_vec()),
            ),
            "tls_version" => info.tls_version.as_ref().map(|v| v.as_bytes().to_vec()),
            _ => None,
        },
        _ => None,
    }
}
