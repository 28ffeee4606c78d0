//! `networking.k8s.io/v1` Ingress, the parts the gateway routes on.

use serde::{Deserialize, Serialize};

use super::{from_yaml, FieldError, ObjectMeta};
use crate::annotations::IngressAnnotations;

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Ingress {
    pub metadata: ObjectMeta,
    pub spec: IngressSpec,
    /// `metadata.annotations` as the gateway acts on them, parsed once by
    /// [`Ingress::parse`].
    #[serde(skip)]
    pub annotations: IngressAnnotations,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IngressSpec {
    pub ingress_class_name: Option<String>,
    pub default_backend: Option<IngressBackend>,
    pub rules: Vec<IngressRule>,
    pub tls: Vec<IngressTls>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct IngressRule {
    pub host: Option<String>,
    pub http: Option<HttpIngressRuleValue>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct HttpIngressRuleValue {
    pub paths: Vec<HttpIngressPath>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpIngressPath {
    #[serde(default)]
    pub path: Option<String>,
    pub path_type: PathType,
    pub backend: IngressBackend,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub enum PathType {
    Exact,
    Prefix,
    ImplementationSpecific,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct IngressBackend {
    pub service: Option<ServiceBackend>,
    pub resource: Option<TypedLocalObjectReference>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ServiceBackend {
    pub name: String,
    pub port: ServiceBackendPort,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ServiceBackendPort {
    pub name: Option<String>,
    pub number: Option<u16>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TypedLocalObjectReference {
    pub api_group: Option<String>,
    pub kind: String,
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IngressTls {
    pub hosts: Vec<String>,
    pub secret_name: Option<String>,
}

/// Annotation that selects the class when `spec.ingressClassName` is absent.
pub const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

impl Ingress {
    /// `higress.io/*` and `nginx.ingress.kubernetes.io/*` annotations present but not
    /// acted on (accepted for compatibility; reported, never silently ignored).
    pub fn unsupported_annotations(&self) -> Vec<&str> {
        crate::annotations::not_enforced(&self.metadata.annotations)
    }

    /// Parse and check an Ingress, its annotations included.
    pub fn parse(bytes: &[u8]) -> Result<Ingress, FieldError> {
        let mut ing: Ingress = from_yaml(bytes)?;
        ing.annotations = IngressAnnotations::parse(&ing.metadata.annotations)?;
        ing.validate()?;
        ing.shrink();
        Ok(ing)
    }

    /// Drop the spare capacity of the lists: deserializing grows a list of unknown
    /// length to room for four, and the Ingress stays in force until replaced (with
    /// 10,000 one-path Ingresses, over 600 bytes each).
    fn shrink(&mut self) {
        let spec = &mut self.spec;
        spec.rules.shrink_to_fit();
        for rule in &mut spec.rules {
            if let Some(http) = &mut rule.http {
                http.paths.shrink_to_fit();
            }
        }
        spec.tls.shrink_to_fit();
        for tls in &mut spec.tls {
            tls.hosts.shrink_to_fit();
        }
    }

    /// The class this Ingress asks for, by field or by the legacy annotation.
    pub fn class(&self) -> Option<&str> {
        self.spec
            .ingress_class_name
            .as_deref()
            .or_else(|| self.metadata.annotation(CLASS_ANNOTATION))
    }

    fn validate(&self) -> Result<(), FieldError> {
        for (i, tls) in self.spec.tls.iter().enumerate() {
            for (j, host) in tls.hosts.iter().enumerate() {
                validate_host(host)
                    .map_err(|m| FieldError::new(format!("spec.tls[{i}].hosts[{j}]"), m))?;
            }
        }
        // With `use-regex` / `full-path-regex` every path is a regex, whatever its type
        // (Higress's NeedRegexMatch).
        let regex = self.annotations.path.regex();
        for (i, rule) in self.spec.rules.iter().enumerate() {
            if let Some(host) = &rule.host {
                validate_host(host)
                    .map_err(|m| FieldError::new(format!("spec.rules[{i}].host"), m))?;
            }
            let Some(http) = &rule.http else { continue };
            for (j, p) in http.paths.iter().enumerate() {
                let at = format!("spec.rules[{i}].http.paths[{j}]");
                let path = p.path.as_deref().unwrap_or("/");
                // `rewrite-target` makes any path a regex, as Higress's NeedRegexMatch.
                let as_regex = self.annotations.rewrite.forces_regex(path) || regex;
                self.annotations.rewrite.check_path(path, as_regex)?;
                match p.path_type {
                    _ if as_regex => {
                        regex::Regex::new(path).map_err(|e| {
                            FieldError::new(
                                format!("{at}.path"),
                                format!("invalid regex: {}", crate::annotations::regex_error(e)),
                            )
                        })?;
                    }
                    _ if !path.starts_with('/') => {
                        return Err(FieldError::new(
                            format!("{at}.path"),
                            format!("must be an absolute path starting with '/', got {path:?}"),
                        ));
                    }
                    _ => {}
                }
                validate_backend(&p.backend).map_err(|e| e.under(&format!("{at}.backend")))?;
            }
        }
        if let Some(b) = &self.spec.default_backend {
            validate_backend(b).map_err(|e| e.under("spec.defaultBackend"))?;
        }
        Ok(())
    }
}

fn validate_backend(b: &IngressBackend) -> Result<(), FieldError> {
    match (&b.service, &b.resource) {
        (Some(_), Some(_)) => Err(FieldError::new(
            "",
            "only one of service or resource may be set",
        )),
        (None, None) => Err(FieldError::new(
            "",
            "one of service or resource must be set",
        )),
        (Some(s), None) if s.name.is_empty() => {
            Err(FieldError::new("service.name", "must not be empty"))
        }
        _ => Ok(()),
    }
}

/// A DNS-1123 host, optionally with a leading `*.` wildcard label (Kubernetes' rule).
pub(crate) fn validate_host(host: &str) -> Result<(), String> {
    let rest = host.strip_prefix("*.").unwrap_or(host);
    if rest.is_empty() || rest.len() > 253 {
        return Err(format!("invalid host {host:?}"));
    }
    for label in rest.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "invalid host {host:?}: a lowercase DNS name, optionally starting with '*.'"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: x
  annotations:
    higress.io/destination: httpbin.dns
spec:
  ingressClassName: higress
  rules:
  - host: foo.bar.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          resource: {apiGroup: networking.higress.io, kind: McpBridge, name: default}
"#;

    #[test]
    fn parses_the_seed_shape() {
        let i = Ingress::parse(OK.as_bytes()).unwrap();
        assert_eq!(i.class(), Some("higress"));
        assert_eq!(i.spec.rules[0].host.as_deref(), Some("foo.bar.com"));
    }

    #[test]
    fn bad_path_type_names_the_field() {
        let y = OK.replace("pathType: Prefix", "pathType: Prefixx");
        let e = Ingress::parse(y.as_bytes()).unwrap_err();
        assert_eq!(e.path, "spec.rules[0].http.paths[0].pathType");
    }

    #[test]
    fn relative_path_is_rejected() {
        let y = OK.replace("- path: /", "- path: foo");
        let e = Ingress::parse(y.as_bytes()).unwrap_err();
        assert_eq!(e.path, "spec.rules[0].http.paths[0].path");
    }

    #[test]
    fn bad_regex_is_rejected_only_with_use_regex() {
        let y = OK
            .replace("- path: /", "- path: /a(")
            .replace("pathType: Prefix", "pathType: ImplementationSpecific");
        assert!(Ingress::parse(y.as_bytes()).is_ok());
        let y = y.replace(
            "higress.io/destination: httpbin.dns",
            "higress.io/destination: httpbin.dns\n    higress.io/use-regex: \"true\"",
        );
        let e = Ingress::parse(y.as_bytes()).unwrap_err();
        assert_eq!(e.path, "spec.rules[0].http.paths[0].path");
        assert!(e.message.contains("invalid regex"), "{e}");
    }

    #[test]
    fn ssl_redirect_reads_both_keys_and_prefixes() {
        let with = |k: &str, v: &str| {
            OK.replace(
                "higress.io/destination: httpbin.dns",
                &format!("higress.io/destination: httpbin.dns\n    {k}: \"{v}\""),
            )
        };
        let i = Ingress::parse(OK.as_bytes()).unwrap();
        assert!(!i.annotations.ssl_redirect);
        for k in [
            "higress.io/ssl-redirect",
            "nginx.ingress.kubernetes.io/ssl-redirect",
            "higress.io/force-ssl-redirect",
        ] {
            let i = Ingress::parse(with(k, "true").as_bytes()).unwrap();
            assert!(i.annotations.ssl_redirect, "{k}");
            let i = Ingress::parse(with(k, "False").as_bytes()).unwrap();
            assert!(!i.annotations.ssl_redirect, "{k}");
        }
        let e = Ingress::parse(with("higress.io/ssl-redirect", "yes").as_bytes()).unwrap_err();
        assert_eq!(e.path, "metadata.annotations[\"higress.io/ssl-redirect\"]");
        let y = OK.replace(
            "  rules:",
            "  tls:\n  - hosts: [\"bad_host\"]\n    secretName: s\n  rules:",
        );
        assert_eq!(
            Ingress::parse(y.as_bytes()).unwrap_err().path,
            "spec.tls[0].hosts[0]"
        );
    }

    #[test]
    fn hosts_are_checked() {
        assert!(validate_host("*.a.com").is_ok());
        assert!(validate_host("a.*.com").is_err());
        assert!(validate_host("-a.com").is_err());
        let y = OK.replace("host: foo.bar.com", "host: \"foo_bar.com\"");
        assert_eq!(
            Ingress::parse(y.as_bytes()).unwrap_err().path,
            "spec.rules[0].host"
        );
    }
}
