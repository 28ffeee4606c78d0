//! Istio's `Gateway`, `VirtualService` and `DestinationRule` into the model: the
//! DestinationRules' traffic policies onto the clusters (before routes share them), the
//! VirtualServices bound to our Gateways into routes on the listener each Gateway server
//! names, the servers' `credentialName` into certificates.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::certificates::Secrets;
use super::hosts::VirtualHosts;
use super::kingress::TlsEntry;
use crate::model::Cluster;
use crate::resources::{DestinationRule, IstioGateway, VirtualService};

type Clusters = BTreeMap<String, Arc<Cluster>>;

/// The Istio objects of one snapshot.
#[derive(Debug, Default)]
pub struct Inputs<'a> {
    pub gateways: Vec<&'a IstioGateway>,
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
    /// Routes on the gateway's listeners.
    pub external: VirtualHosts,
    /// Routes on the cluster-local listener.
    pub local: VirtualHosts,
    pub tls: Vec<TlsEntry>,
    /// Problems, each naming the object and field.
    pub warnings: Vec<String>,
    /// Fields accepted but not enforced (`virtualservice default/x: spec.http[0].fault`).
    pub not_enforced: Vec<String>,
}

/// Put the DestinationRules' traffic policies on the clusters of their hosts.
pub fn apply_destination_rules(
    _rules: &[&DestinationRule],
    _clusters: &mut Clusters,
    _secrets: &Secrets,
    _out: &mut Output,
) {
}

/// The routes and certificates of the VirtualServices bound to our Gateways.
pub fn build(
    _inputs: &Inputs,
    _opts: &Options,
    _clusters: &Clusters,
    _secrets: &Secrets,
    _out: &mut Output,
) {
}
