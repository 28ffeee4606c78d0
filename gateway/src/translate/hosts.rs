//! Virtual hosts as the translators fill them: routes by host in the order hosts first
//! appear, each host's routes in the order pushed. Ingresses, KIngresses and Istio
//! VirtualServices each add theirs; the result becomes one [`RouteTable`].

use std::collections::HashMap;
use std::sync::Arc;

use super::certificates::TlsEntry;
use crate::model::{Route, RouteTable};

/// What a translator besides the Ingresses' (KIngresses, Istio) adds to the listeners:
/// routes for the gateway's listeners and for the cluster-local one, and certificates
/// for the HTTPS listener.
#[derive(Debug, Default)]
pub struct ListenerRoutes {
    /// Routes on `--http-addr` / `--https-addr`.
    pub external: VirtualHosts,
    /// Routes on the cluster-local listener (`--local-http-addr`).
    pub local: VirtualHosts,
    pub tls: Vec<TlsEntry>,
}

impl ListenerRoutes {
    /// Add `other`'s after what is here.
    pub fn append(&mut self, other: ListenerRoutes) {
        self.external.append(other.external);
        self.local.append(other.local);
        self.tls.extend(other.tls);
    }
}

/// Routes by host (`None`: the catch-all; `*.suffix`; an exact host, lowercase).
#[derive(Debug, Default)]
pub struct VirtualHosts {
    hosts: Vec<(Option<String>, Vec<Arc<Route>>)>,
    /// Where each host is in `hosts`, found by hash rather than a scan per route.
    at: HashMap<Option<String>, usize>,
}

impl VirtualHosts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Hosts already in match order (the Ingresses' table).
    pub fn from_list(hosts: Vec<(Option<String>, Vec<Arc<Route>>)>) -> Self {
        let at = hosts
            .iter()
            .enumerate()
            .map(|(i, (h, _))| (h.clone(), i))
            .collect();
        VirtualHosts { hosts, at }
    }

    /// Add `route` after those `host` has.
    pub fn push(&mut self, host: Option<String>, route: Arc<Route>) {
        match self.at.get(&host) {
            Some(&i) => self.hosts[i].1.push(route),
            None => {
                self.at.insert(host.clone(), self.hosts.len());
                self.hosts.push((host, vec![route]));
            }
        }
    }

    /// Add every route of `other`, host by host, after what is here.
    pub fn append(&mut self, other: VirtualHosts) {
        for (host, routes) in other.hosts {
            for r in routes {
                self.push(host.clone(), r);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// The routes of `host`, if it has any.
    pub fn routes(&self, host: Option<&str>) -> &[Arc<Route>] {
        self.at
            .get(&host.map(str::to_string))
            .map_or(&[], |&i| &self.hosts[i].1)
    }

    pub fn into_table(self) -> RouteTable {
        RouteTable::new(self.hosts)
    }
}
