//! Knative's `networking.internal.knative.dev/v1alpha1` `Ingress` (a "KIngress"), the
//! object Knative Serving writes for each Route when its `ingress-class` is `higress`.
//! Field names and validation follow Knative's `ingress_types.go` and
//! `ingress_validation.go`; what Higress makes of it is in `translate/kingress.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{from_yaml, FieldError, ObjectMeta};
use crate::annotations::IngressAnnotations;

/// The class annotation Knative writes on a KIngress (`ingress-class` of
/// `config-network`).
pub const CLASS_ANNOTATION: &str = "networking.knative.dev/ingress.class";

/// The class Higress reads, exactly: Higress consults neither the alternative key
/// (`networking.knative.dev/ingress-class`) nor another spelling.
pub const HIGRESS_CLASS: &str = "higress";

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct KIngress {
    pub metadata: ObjectMeta,
    pub spec: KIngressSpec,
    /// Higress's and nginx's annotations, parsed once as an Ingress's are (Higress
    /// applies them to a KIngress's routes too).
    #[serde(skip)]
    pub annotations: IngressAnnotations,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KIngressSpec {
    /// Certificates for hosts of the rules, served on the HTTPS listener.
    pub tls: Vec<KIngressTls>,
    pub rules: Vec<KIngressRule>,
    /// `Enabled` (default): plain HTTP is served; `Redirected`: plain HTTP on an
    /// `ExternalIP` host answers 301 to `https://`.
    pub http_option: HttpOption,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum HttpOption {
    #[default]
    Enabled,
    Redirected,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KIngressTls {
    pub hosts: Vec<String>,
    pub secret_name: String,
    /// Where the Secret lives; empty: the KIngress's namespace.
    pub secret_namespace: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum Visibility {
    /// Served on the gateway's listeners (`--http-addr`, `--https-addr`).
    #[default]
    ExternalIP,
    /// Served only on the cluster-local listener (`--local-http-addr`).
    ClusterLocal,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KIngressRule {
    pub hosts: Vec<String>,
    pub visibility: Visibility,
    pub http: Option<KHttpRule>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct KHttpRule {
    pub paths: Vec<KHttpPath>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KHttpPath {
    /// A literal prefix of the request path (not element-wise); empty: every path.
    pub path: String,
    /// The `Host` sent upstream instead of the request's.
    pub rewrite_host: String,
    /// Request headers that must match, by name.
    pub headers: BTreeMap<String, HeaderMatch>,
    pub splits: Vec<KSplit>,
    /// Set on the request going upstream, whichever split it takes.
    pub append_headers: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct HeaderMatch {
    pub exact: String,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KSplit {
    pub service_namespace: String,
    pub service_name: String,
    pub service_port: ServicePort,
    /// Share of the path's traffic, 0..=100; the splits of a path add up to 100 (a lone
    /// split may leave it out).
    pub percent: Option<i64>,
    /// Set on the request going upstream when this split is taken.
    pub append_headers: BTreeMap<String, String>,
}

/// Knative's `intstr.IntOrString` port.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ServicePort {
    Number(i64),
    Name(String),
}

impl Default for ServicePort {
    fn default() -> Self {
        ServicePort::Number(0)
    }
}

impl KIngress {
    /// Parse and validate. A KIngress of another class is kept with its metadata only:
    /// it is not ours, so its spec is neither read nor judged.
    pub fn parse(bytes: &[u8]) -> Result<KIngress, FieldError> {
        #[derive(Deserialize)]
        struct MetaOnly {
            #[serde(default)]
            metadata: ObjectMeta,
        }
        let meta: MetaOnly = from_yaml(bytes)?;
        if meta.metadata.annotation(CLASS_ANNOTATION) != Some(HIGRESS_CLASS) {
            return Ok(KIngress {
                metadata: meta.metadata,
                ..KIngress::default()
            });
        }
        let mut k: KIngress = from_yaml(bytes)?;
        k.annotations = IngressAnnotations::parse(&k.metadata.annotations)?;
        k.validate()?;
        Ok(k)
    }

    /// Whether the gateway serves it: class `higress`, exactly.
    pub fn is_ours(&self) -> bool {
        self.metadata.annotation(CLASS_ANNOTATION) == Some(HIGRESS_CLASS)
    }

    fn validate(&self) -> Result<(), FieldError> {
        let spec = &self.spec;
        if spec.rules.is_empty() {
            return Err(FieldError::new(
                "spec.rules",
                "at least one rule is required",
            ));
        }
        for (i, tls) in spec.tls.iter().enumerate() {
            let at = format!("spec.tls[{i}]");
            if tls.hosts.is_empty() {
                return Err(FieldError::new(format!("{at}.hosts"), "required"));
            }
            if tls.secret_name.is_empty() {
                return Err(FieldError::new(format!("{at}.secretName"), "required"));
            }
        }
        for (i, rule) in spec.rules.iter().enumerate() {
            let at = format!("spec.rules[{i}]");
            if rule.hosts.is_empty() {
                return Err(FieldError::new(format!("{at}.hosts"), "required"));
            }
            for (h, host) in rule.hosts.iter().enumerate() {
                if host.is_empty() || host.contains(['/', ' ', ':']) {
                    return Err(FieldError::new(
                        format!("{at}.hosts[{h}]"),
                        format!("{host:?} is not a host name"),
                    ));
                }
            }
            let Some(http) = &rule.http else {
                return Err(FieldError::new(format!("{at}.http"), "required"));
            };
            if http.paths.is_empty() {
                return Err(FieldError::new(format!("{at}.http.paths"), "required"));
            }
            for (p, path) in http.paths.iter().enumerate() {
                path.validate(&format!("{at}.http.paths[{p}]"))?;
            }
        }
        Ok(())
    }
}

fn check_headers(at: &str, headers: &BTreeMap<String, String>) -> Result<(), FieldError> {
    for (name, value) in headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(FieldError::new(
                format!("{at}.{name}"),
                "not a valid header name",
            ));
        }
        if http::HeaderValue::from_str(value).is_err() {
            return Err(FieldError::new(
                format!("{at}.{name}"),
                "not a valid header value",
            ));
        }
    }
    Ok(())
}

impl KHttpPath {
    fn validate(&self, at: &str) -> Result<(), FieldError> {
        if !self.path.is_empty() && !self.path.starts_with('/') {
            return Err(FieldError::new(
                format!("{at}.path"),
                format!("{:?} does not start with /", self.path),
            ));
        }
        if !self.rewrite_host.is_empty() && http::HeaderValue::from_str(&self.rewrite_host).is_err()
        {
            return Err(FieldError::new(
                format!("{at}.rewriteHost"),
                "not a valid host",
            ));
        }
        for (name, m) in &self.headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(FieldError::new(
                    format!("{at}.headers.{name}"),
                    "not a valid header name",
                ));
            }
            if m.exact.is_empty() {
                return Err(FieldError::new(
                    format!("{at}.headers.{name}.exact"),
                    "required",
                ));
            }
        }
        check_headers(&format!("{at}.appendHeaders"), &self.append_headers)?;
        if self.splits.is_empty() {
            return Err(FieldError::new(format!("{at}.splits"), "required"));
        }
        let mut total = 0;
        for (s, split) in self.splits.iter().enumerate() {
            let at = format!("{at}.splits[{s}]");
            if split.service_name.is_empty() {
                return Err(FieldError::new(format!("{at}.serviceName"), "required"));
            }
            if split.service_namespace.is_empty() {
                return Err(FieldError::new(
                    format!("{at}.serviceNamespace"),
                    "required",
                ));
            }
            match &split.service_port {
                ServicePort::Number(n) if !(1..=65535).contains(n) => {
                    return Err(FieldError::new(
                        format!("{at}.servicePort"),
                        format!("{n} is not a port (1..65535)"),
                    ))
                }
                ServicePort::Name(n) if n.is_empty() => {
                    return Err(FieldError::new(format!("{at}.servicePort"), "required"))
                }
                _ => {}
            }
            let percent = match split.percent {
                // Knative defaults a lone split's percent to 100.
                None if self.splits.len() == 1 => 100,
                None => 0,
                Some(p) if !(0..=100).contains(&p) => {
                    return Err(FieldError::new(
                        format!("{at}.percent"),
                        format!("{p} is not within 0..100"),
                    ))
                }
                Some(p) => p,
            };
            total += percent;
            check_headers(&format!("{at}.appendHeaders"), &split.append_headers)?;
        }
        if total != 100 {
            return Err(FieldError::new(
                format!("{at}.splits"),
                format!("the percents add up to {total}, not 100"),
            ));
        }
        Ok(())
    }
}

impl KSplit {
    /// Its percent, a lone split's defaulted to 100.
    pub fn share(&self) -> u32 {
        self.percent.unwrap_or(100).clamp(0, 100) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = r#"
apiVersion: networking.internal.knative.dev/v1alpha1
kind: Ingress
metadata:
  annotations:
    networking.knative.dev/ingress.class: higress
  name: hello
  namespace: default
spec:
  httpOption: Enabled
  rules:
  - hosts:
    - hello.default.example.com
    http:
      paths:
      - splits:
        - appendHeaders:
            Knative-Serving-Namespace: default
            Knative-Serving-Revision: hello-00001
          percent: 100
          serviceName: hello-00001
          serviceNamespace: default
          servicePort: 80
    visibility: ExternalIP
  tls:
  - hosts:
    - hello.default.example.com
    secretName: route-ecbe0df2
    secretNamespace: default
"#;

    #[test]
    fn the_articles_kingress_parses() {
        let k = KIngress::parse(HELLO.as_bytes()).unwrap();
        assert!(k.is_ours());
        let split = &k.spec.rules[0].http.as_ref().unwrap().paths[0].splits[0];
        assert_eq!(split.service_port, ServicePort::Number(80));
        assert_eq!(split.share(), 100);
        assert_eq!(k.spec.tls[0].secret_namespace, "default");
    }

    #[test]
    fn another_class_is_kept_unread() {
        let y = HELLO
            .replace(
                "ingress.class: higress",
                "ingress.class: istio.ingress.networking.knative.dev",
            )
            .replace("percent: 100", "percent: 7");
        let k = KIngress::parse(y.as_bytes()).unwrap();
        assert!(!k.is_ours());
        assert!(k.spec.rules.is_empty());
        // The alternative key names no class Higress reads.
        let y = HELLO.replace("ingress.class: higress", "ingress-class: higress");
        assert!(!KIngress::parse(y.as_bytes()).unwrap().is_ours());
    }

    #[test]
    fn bad_fields_are_named() {
        let err = |from: &str, to: &str| {
            KIngress::parse(HELLO.replace(from, to).as_bytes())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("percent: 100", "percent: 50"),
            "spec.rules[0].http.paths[0].splits: the percents add up to 50, not 100"
        );
        assert_eq!(
            err("servicePort: 80", "servicePort: 0"),
            "spec.rules[0].http.paths[0].splits[0].servicePort: 0 is not a port (1..65535)"
        );
        assert_eq!(
            err("serviceName: hello-00001", "serviceName: \"\""),
            "spec.rules[0].http.paths[0].splits[0].serviceName: required"
        );
        assert_eq!(
            err("secretName: route-ecbe0df2", "secretName: \"\""),
            "spec.tls[0].secretName: required"
        );
        assert!(err("visibility: ExternalIP", "visibility: Public")
            .starts_with("spec.rules[0].visibility: unknown variant `Public`"));
        assert_eq!(
            err("Knative-Serving-Revision: hello-00001", "\"bad header\": x"),
            "spec.rules[0].http.paths[0].splits[0].appendHeaders.bad header: not a valid header name"
        );
    }
}
