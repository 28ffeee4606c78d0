//! Istio's `Gateway`, `VirtualService` and `DestinationRule` into the model: the
//! DestinationRules' traffic policies onto the clusters (before routes share them), the
//! VirtualServices bound to our Gateways into routes on the listener each Gateway server
//! names, the servers' `credentialName` into certificates.
//!
//! - `gateway.rs`: which Gateways are ours and what each server is;
//! - `virtual_service.rs`: routes, in the VirtualServices' order (oldest first) and
//!   each one's `http[]` order;
//! - `destination_rule.rs`: load balancing and upstream TLS on the clusters.
//!
//! A VirtualService whose translation fails is left out alone, with a warning naming it
//! and the field. What is accepted but not enforced is listed as
//! `<kind> <namespace>/<name>: <field path>`.

pub mod destination_rule;
pub mod gateway;
pub mod virtual_service;

use std::collections::BTreeMap;
use std::sync::Arc;

use super::certificates::Secrets;
use super::destinations::ClusterPorts;
use super::hosts::{ListenerRoutes, VirtualHosts};
use crate::model::Cluster;
use crate::resources::{DestinationRule, IstioGateway, VirtualService};

type Clusters = BTreeMap<String, Arc<Cluster>>;

/// The Istio objects of one snapshot.
#[derive(Debug, Default)]
pub struct Inputs<'a> {
    pub gateways: Vec<&'a IstioGateway>,
    /// Oldest first.
    pub virtual_services: Vec<&'a VirtualService>,
    pub destination_rules: Vec<&'a DestinationRule>,
}

/// What decides which Gateways and servers are ours.
#[derive(Debug)]
pub struct Options<'a> {
    /// `--gateway-selector`: a Gateway is ours when its `selector` matches these labels.
    pub selector: &'a BTreeMap<String, String>,
    /// The cluster-local listener's port: plain-HTTP servers on it route there.
    pub local_port: Option<u16>,
}

/// What Istio's objects add to a snapshot.
#[derive(Debug, Default)]
pub struct Output {
    /// Routes by listener, and the servers' certificates.
    pub routes: ListenerRoutes,
    /// Problems, each naming the object and field.
    pub warnings: Vec<String>,
    /// Fields accepted but not enforced (`virtualservice default/x: spec.http[0].fault`).
    pub not_enforced: Vec<String>,
}

/// Put the DestinationRules' traffic policies on the clusters of their hosts.
pub fn apply_destination_rules(
    rules: &[&DestinationRule],
    clusters: &mut Clusters,
    secrets: &Secrets,
    out: &mut Output,
) {
    if rules.is_empty() {
        return;
    }
    destination_rule::apply(rules, clusters, secrets, out);
}

/// The routes and certificates of the VirtualServices bound to our Gateways.
pub fn build(
    inputs: &Inputs,
    opts: &Options,
    clusters: &Clusters,
    secrets: &Secrets,
    out: &mut Output,
) {
    if inputs.gateways.is_empty() && inputs.virtual_services.is_empty() {
        return;
    }
    let servers = gateway::servers(&inputs.gateways, opts, out);
    let ports = ClusterPorts::new(clusters);
    let cx = virtual_service::Ctx {
        servers: &servers,
        ports: &ports,
        clusters,
        secrets,
    };
    for vs in &inputs.virtual_services {
        let mut external = VirtualHosts::new();
        let mut local = VirtualHosts::new();
        let mut notes = Output::default();
        match virtual_service::routes_of(vs, &cx, &mut external, &mut local, &mut notes) {
            Ok(()) => {
                out.routes.external.append(external);
                out.routes.local.append(local);
            }
            Err(e) => out.warnings.push(format!(
                "virtualservice {}/{}: {e}; its routes are left out",
                vs.metadata.namespace, vs.metadata.name
            )),
        }
        out.warnings.append(&mut notes.warnings);
        out.not_enforced.append(&mut notes.not_enforced);
    }
}

#[cfg(test)]
mod tests;
