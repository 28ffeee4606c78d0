//! A Service's endpoints, as `discovery.k8s.io/v1` EndpointSlices (what Kubernetes mode
//! watches, as Istio does) or `v1` Endpoints (what a Higress standalone directory holds
//! in `endpoints/`). Both reduce to ready addresses per port name.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{from_yaml, FieldError, ObjectMeta};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointSlice {
    pub metadata: ObjectMeta,
    pub address_type: String,
    pub endpoints: Vec<SliceEndpoint>,
    pub ports: Vec<EndpointPort>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct SliceEndpoint {
    pub addresses: Vec<String>,
    pub conditions: Conditions,
}

/// `ready` unset means ready (the API's own rule).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Conditions {
    pub ready: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct EndpointPort {
    pub name: Option<String>,
    pub port: Option<u32>,
    pub protocol: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Endpoints {
    pub metadata: ObjectMeta,
    pub subsets: Vec<EndpointSubset>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointSubset {
    pub addresses: Vec<EndpointAddress>,
    pub not_ready_addresses: Vec<EndpointAddress>,
    pub ports: Vec<EndpointPort>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct EndpointAddress {
    pub ip: String,
}

/// Ready addresses for one port name (`""`: the unnamed port).
#[derive(Clone, Debug, PartialEq)]
pub struct PortEndpoints {
    pub port_name: String,
    pub port: u16,
    pub addresses: Vec<IpAddr>,
}

fn check_ports(ports: &[EndpointPort], at: &str) -> Result<(), FieldError> {
    for (i, p) in ports.iter().enumerate() {
        if let Some(n) = p.port {
            if !(1..=65535).contains(&n) {
                return Err(FieldError::new(
                    format!("{at}[{i}].port"),
                    format!("{n} is not a port (1..65535)"),
                ));
            }
        }
    }
    Ok(())
}

fn ip(s: &str, at: String) -> Result<IpAddr, FieldError> {
    s.parse()
        .map_err(|_| FieldError::new(at, format!("{s:?} is not an IP address")))
}

impl EndpointSlice {
    pub fn parse(bytes: &[u8]) -> Result<EndpointSlice, FieldError> {
        let s: EndpointSlice = from_yaml(bytes)?;
        check_ports(&s.ports, "ports")?;
        // FQDN slices carry names, not addresses; they are kept but give no endpoints.
        if s.address_type != "FQDN" {
            for (i, e) in s.endpoints.iter().enumerate() {
                for (j, a) in e.addresses.iter().enumerate() {
                    ip(a, format!("endpoints[{i}].addresses[{j}]"))?;
                }
            }
        }
        Ok(s)
    }

    /// The Service this slice belongs to.
    pub fn service(&self) -> Option<&str> {
        self.metadata
            .labels
            .get(SERVICE_NAME_LABEL)
            .map(String::as_str)
    }

    pub fn ready(&self) -> Vec<PortEndpoints> {
        if self.address_type == "FQDN" {
            return Vec::new();
        }
        let addresses: Vec<IpAddr> = self
            .endpoints
            .iter()
            .filter(|e| e.conditions.ready != Some(false))
            .flat_map(|e| e.addresses.iter().filter_map(|a| a.parse().ok()))
            .collect();
        self.ports
            .iter()
            .filter_map(|p| {
                Some(PortEndpoints {
                    port_name: p.name.clone().unwrap_or_default(),
                    port: p.port? as u16,
                    addresses: addresses.clone(),
                })
            })
            .collect()
    }
}

impl Endpoints {
    pub fn parse(bytes: &[u8]) -> Result<Endpoints, FieldError> {
        let e: Endpoints = from_yaml(bytes)?;
        for (i, s) in e.subsets.iter().enumerate() {
            check_ports(&s.ports, &format!("subsets[{i}].ports"))?;
            for (j, a) in s.addresses.iter().enumerate() {
                ip(&a.ip, format!("subsets[{i}].addresses[{j}].ip"))?;
            }
        }
        Ok(e)
    }

    pub fn ready(&self) -> Vec<PortEndpoints> {
        self.subsets
            .iter()
            .flat_map(|s| {
                let addresses: Vec<IpAddr> = s
                    .addresses
                    .iter()
                    .filter_map(|a| a.ip.parse().ok())
                    .collect();
                s.ports.iter().filter_map(move |p| {
                    Some(PortEndpoints {
                        port_name: p.name.clone().unwrap_or_default(),
                        port: p.port? as u16,
                        addresses: addresses.clone(),
                    })
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_keep_ready_and_unknown_readiness() {
        let y = b"metadata:\n  labels: {kubernetes.io/service-name: web}\naddressType: IPv4\nendpoints:\n- addresses: [10.0.0.1]\n  conditions: {ready: true}\n- addresses: [10.0.0.2]\n  conditions: {ready: false}\n- addresses: [10.0.0.3]\nports:\n- {name: http, port: 8080}\n";
        let s = EndpointSlice::parse(y).unwrap();
        assert_eq!(s.service(), Some("web"));
        let r = s.ready();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].port, 8080);
        assert_eq!(
            r[0].addresses,
            vec![
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "10.0.0.3".parse().unwrap()
            ]
        );
        let e = EndpointSlice::parse(b"addressType: IPv4\nendpoints:\n- addresses: [nope]\n")
            .unwrap_err();
        assert_eq!(e.path, "endpoints[0].addresses[0]");
    }

    #[test]
    fn endpoints_subsets_skip_not_ready() {
        let y = b"subsets:\n- addresses: [{ip: 127.0.0.1}]\n  notReadyAddresses: [{ip: 127.0.0.2}]\n  ports: [{name: http, port: 9000}]\n";
        let r = Endpoints::parse(y).unwrap().ready();
        assert_eq!(r[0].addresses, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(r[0].port_name, "http");
    }
}
