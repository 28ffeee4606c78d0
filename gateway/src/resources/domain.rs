//! The Higress console's domain ConfigMaps: `domain-<host>` (a leading `*` written as
//! `wildcard`) with `data.domain`, `data.enableHttps` (`on|off|force`) and `data.cert`,
//! the name of a `kubernetes.io/tls` Secret. The console turns them into Ingress
//! `spec.tls` entries (and `ssl-redirect` for `force`); the gateway reads them directly,
//! so a domain's certificate and redirect apply to every route of that host.

use std::collections::BTreeMap;

use serde::Serialize;

use super::FieldError;

/// Name prefix of a domain ConfigMap.
pub const DOMAIN_PREFIX: &str = "domain-";
/// The console's catch-all domain: its certificate serves every SNI no other matches.
pub const DEFAULT_DOMAIN: &str = "higress-default-domain";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EnableHttps {
    Off,
    On,
    /// HTTPS, and plain-HTTP requests for the domain are redirected to it (308).
    Force,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainConfig {
    /// Lowercase host, `*.suffix`, or [`DEFAULT_DOMAIN`].
    pub domain: String,
    pub enable_https: EnableHttps,
    /// Secret name (in the gateway's namespace); required unless `enableHttps` is off.
    pub cert: Option<String>,
}

impl DomainConfig {
    /// Whether this domain asks for no particular host (the console's default domain).
    pub fn is_default(&self) -> bool {
        self.domain == DEFAULT_DOMAIN
    }

    /// Read a domain ConfigMap's data.
    pub fn from_data(data: &BTreeMap<String, String>) -> Result<DomainConfig, FieldError> {
        let domain = data
            .get("domain")
            .map(|d| d.trim().to_ascii_lowercase())
            .filter(|d| !d.is_empty())
            .ok_or_else(|| FieldError::new("data.domain", "is required"))?;
        if domain != DEFAULT_DOMAIN {
            super::ingress::validate_host(&domain)
                .map_err(|m| FieldError::new("data.domain", m))?;
        }
        let enable_https = match data.get("enableHttps").map(|v| v.trim()) {
            None | Some("") | Some("off") => EnableHttps::Off,
            Some("on") => EnableHttps::On,
            Some("force") => EnableHttps::Force,
            Some(other) => {
                return Err(FieldError::new(
                    "data.enableHttps",
                    format!("expected on, off or force, got {other:?}"),
                ))
            }
        };
        let cert = data
            .get("cert")
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty());
        if cert.is_none() && enable_https != EnableHttps::Off {
            return Err(FieldError::new(
                "data.cert",
                "is required when enableHttps is on or force (the name of a kubernetes.io/tls secret)",
            ));
        }
        Ok(DomainConfig {
            domain,
            enable_https,
            cert,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn console_shapes_parse() {
        let d = DomainConfig::from_data(&data(&[
            ("domain", "Foo.Bar.com"),
            ("enableHttps", "force"),
            ("cert", "foo-cert"),
        ]))
        .unwrap();
        assert_eq!(d.domain, "foo.bar.com");
        assert_eq!(d.enable_https, EnableHttps::Force);
        assert_eq!(d.cert.as_deref(), Some("foo-cert"));
        let d = DomainConfig::from_data(&data(&[("domain", "*.bar.com"), ("enableHttps", "off")]))
            .unwrap();
        assert_eq!(d.enable_https, EnableHttps::Off);
        let d = DomainConfig::from_data(&data(&[
            ("domain", DEFAULT_DOMAIN),
            ("enableHttps", "on"),
            ("cert", "c"),
        ]))
        .unwrap();
        assert!(d.is_default());
    }

    #[test]
    fn errors_name_the_key() {
        let e = DomainConfig::from_data(&data(&[("enableHttps", "on")])).unwrap_err();
        assert_eq!(e.path, "data.domain");
        let e = DomainConfig::from_data(&data(&[("domain", "a.com"), ("enableHttps", "yes")]))
            .unwrap_err();
        assert_eq!(e.path, "data.enableHttps");
        let e = DomainConfig::from_data(&data(&[("domain", "a.com"), ("enableHttps", "on")]))
            .unwrap_err();
        assert_eq!(e.path, "data.cert");
        let e = DomainConfig::from_data(&data(&[("domain", "a_b.com")])).unwrap_err();
        assert_eq!(e.path, "data.domain");
    }
}
