//! `v1` Service: the ports an Ingress `backend.service` names. Its endpoints come from
//! EndpointSlices (Kubernetes mode) or `v1` Endpoints (`endpoints/` in a directory).

use serde::{Deserialize, Serialize};

use super::{from_yaml, FieldError, ObjectMeta};

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Service {
    pub metadata: ObjectMeta,
    pub spec: ServiceSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceSpec {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub ports: Vec<ServicePort>,
    pub external_name: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u32,
    pub protocol: Option<String>,
    pub app_protocol: Option<String>,
}

impl Service {
    pub fn parse(bytes: &[u8]) -> Result<Service, FieldError> {
        let s: Service = from_yaml(bytes)?;
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), FieldError> {
        for (i, p) in self.spec.ports.iter().enumerate() {
            if !(1..=65535).contains(&p.port) {
                return Err(FieldError::new(
                    format!("spec.ports[{i}].port"),
                    format!("{} is not a port (1..65535)", p.port),
                ));
            }
        }
        Ok(())
    }

    /// The host its clusters carry: `<name>.<namespace>.svc.cluster.local`.
    pub fn host(&self) -> String {
        service_host(&self.metadata.name, &self.metadata.namespace)
    }
}

pub fn service_host(name: &str, namespace: &str) -> String {
    format!("{name}.{namespace}.svc.cluster.local")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_checked() {
        let ok = Service::parse(b"spec:\n  ports:\n  - {name: http, port: 80}\n").unwrap();
        assert_eq!(ok.spec.ports[0].name.as_deref(), Some("http"));
        let e = Service::parse(b"spec:\n  ports:\n  - {port: 0}\n").unwrap_err();
        assert_eq!(e.path, "spec.ports[0].port");
    }
}
