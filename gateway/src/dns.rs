//! Resolution of `dns` registry names: every name resolved when it first appears and
//! again every `--dns-refresh`, through `--dns-resolver` or the system's resolver.
//! Answers go back to the config loop; a failure keeps the last good endpoints there.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;
use tokio::sync::{mpsc, watch};

/// One answer for one name.
#[derive(Debug, Clone)]
pub struct DnsAnswer {
    pub name: String,
    pub result: Result<Vec<IpAddr>, String>,
}

pub fn resolver(server: Option<SocketAddr>, timeout: Duration) -> anyhow::Result<TokioResolver> {
    let mut opts = ResolverOpts::default();
    // Follow changes at every refresh rather than at the record's TTL.
    opts.cache_size = 0;
    opts.timeout = timeout;
    opts.attempts = 1;
    let builder = match server {
        Some(addr) => {
            let mut cfg = ResolverConfig::new();
            cfg.add_name_server(NameServerConfig::new(addr, Protocol::Udp));
            cfg.add_name_server(NameServerConfig::new(addr, Protocol::Tcp));
            TokioResolver::builder_with_config(cfg, TokioConnectionProvider::default())
        }
        None => TokioResolver::builder_tokio()?,
    };
    Ok(builder.with_options(opts).build())
}

pub async fn resolve(resolver: &TokioResolver, name: &str) -> Result<Vec<IpAddr>, String> {
    // A trailing dot makes the name absolute: no search-domain guessing.
    let fqdn = if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    };
    match resolver.lookup_ip(fqdn).await {
        Ok(l) => {
            let mut ips: Vec<IpAddr> = l.iter().collect();
            ips.sort();
            ips.dedup();
            if ips.is_empty() {
                Err("no addresses".into())
            } else {
                Ok(ips)
            }
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Resolve the names in `names` (new ones at once, all every `refresh`) and send the
/// answers. Ends when the config loop goes away.
pub async fn run(
    resolver: TokioResolver,
    refresh: Duration,
    mut names: watch::Receiver<Vec<String>>,
    tx: mpsc::Sender<DnsAnswer>,
) {
    let mut known: HashSet<String> = HashSet::new();
    let mut tick = tokio::time::interval(refresh);
    tick.tick().await;
    loop {
        let all = tokio::select! {
            changed = names.changed() => {
                if changed.is_err() { return; }
                false
            }
            _ = tick.tick() => true,
        };
        let current: Vec<String> = names.borrow_and_update().clone();
        let todo: Vec<String> = current
            .iter()
            .filter(|n| all || !known.contains(*n))
            .cloned()
            .collect();
        known = current.into_iter().collect();
        for name in todo {
            let result = resolve(&resolver, &name).await;
            if tx.send(DnsAnswer { name, result }).await.is_err() {
                return;
            }
        }
    }
}
