//! The `higress.io/destination` annotation: one destination per line,
//! `[<weight>%] <host>[:<port>] [<subset>]`.

use super::{Annotations, Prefixes};
use crate::error::FieldError;

/// The full key, as users write it.
pub const ANNOTATION: &str = "higress.io/destination";
pub(super) const PREFIXES: Prefixes = Prefixes::HigressOnly;
pub(super) const NAMES: &[&str] = &["destination"];

/// The route's destinations, when the annotation is there.
pub fn from_annotations(map: &Annotations) -> Result<Option<Vec<Destination>>, FieldError> {
    super::get(map, "destination", PREFIXES)
        .map(|found| {
            // Kept with the Ingress: without the spare capacity of its growth.
            parse(found.value).map(|mut list| {
                list.shrink_to_fit();
                list
            })
        })
        .transpose()
}

/// One line of the annotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// Percent of the route's traffic, 0..=100 (default 100).
    pub weight: u32,
    /// The registry host (`<name>.dns`, `<name>.static`, a Service host,
    /// `svc.DEFAULT-GROUP.public.nacos` ...), its case kept as written: registries
    /// (Nacos groups, Eureka applications) name services in upper case, and Higress
    /// matches them as written.
    pub host: String,
    /// `None`: the registry's port.
    pub port: Option<u16>,
    /// The cluster subset; empty for none.
    pub subset: String,
}

/// Parse the annotation value. Errors name the line (1-based) in the message.
pub fn parse(value: &str) -> Result<Vec<Destination>, FieldError> {
    let path = format!("metadata.annotations[\"{ANNOTATION}\"]");
    let mut out = Vec::new();
    for (n, line) in value.lines().enumerate() {
        let mut tokens = line.split_whitespace().peekable();
        let Some(first) = tokens.peek().copied() else {
            continue;
        };
        let err = |m: String| FieldError::new(path.clone(), format!("line {}: {m}", n + 1));
        let weight = if let Some(w) = first.strip_suffix('%') {
            tokens.next();
            let w: f64 = w
                .parse()
                .map_err(|_| err(format!("invalid weight {first:?}")))?;
            if !(0.0..=100.0).contains(&w) {
                return Err(err(format!("weight {first} is not within 0%..100%")));
            }
            // Higress keeps weights as integers out of 100; fractions are rounded.
            w.round() as u32
        } else {
            100
        };
        let Some(hostport) = tokens.next() else {
            return Err(err("missing host".into()));
        };
        let (host, port) = split_host_port(hostport).map_err(err)?;
        let subset = tokens.next().unwrap_or("").to_string();
        if let Some(extra) = tokens.next() {
            return Err(err(format!("unexpected {extra:?} after the subset")));
        }
        out.push(Destination {
            weight,
            host,
            port,
            subset,
        });
    }
    if out.is_empty() {
        return Err(FieldError::new(path, "no destination given"));
    }
    Ok(out)
}

/// `<host>[:<port>]`, split at the last colon as Higress splits it: a host that holds a
/// colon itself (a Dubbo service name in Nacos, `providers:com.example.Api:1.0.0:`)
/// must be followed by its port.
fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    match s.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !h.ends_with(']') || h.starts_with('[') => {
            let port = p.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| {
                if h.contains(':') || p.bytes().any(|b| !b.is_ascii_digit()) {
                    format!(
                        "invalid port in {s:?} (a host with a colon in it needs its port: <host>:<port>)"
                    )
                } else {
                    format!("invalid port in {s:?}")
                }
            })?;
            Ok((h.to_string(), Some(port)))
        }
        Some(_) => Err(format!("invalid destination {s:?}")),
        None if s.is_empty() => Err("missing host".into()),
        None => Ok((s.to_string(), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_destination_defaults_to_full_weight() {
        let d = parse("httpbin.dns").unwrap();
        assert_eq!(
            d,
            vec![Destination {
                weight: 100,
                host: "httpbin.dns".into(),
                port: None,
                subset: String::new()
            }]
        );
    }

    #[test]
    fn weighted_lines_with_ports_and_subsets() {
        let d = parse("30% a.static:8080\n 70% b.dns v1\n\n").unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].weight, d[0].port), (30, Some(8080)));
        assert_eq!((d[1].weight, d[1].subset.as_str()), (70, "v1"));
    }

    #[test]
    fn hosts_keep_their_case_and_split_at_the_last_colon() {
        let d = parse("svc.DEFAULT-GROUP.public.nacos:8080").unwrap();
        assert_eq!(
            (d[0].host.as_str(), d[0].port),
            ("svc.DEFAULT-GROUP.public.nacos", Some(8080))
        );
        let d = parse("50% ORDER-SERVICE.eureka\n50% providers:com.example.Api:1.0.0:.DEFAULT-GROUP.public.nacos:20880").unwrap();
        assert_eq!(d[0].host, "ORDER-SERVICE.eureka");
        assert_eq!(
            (d[1].host.as_str(), d[1].port),
            (
                "providers:com.example.Api:1.0.0:.DEFAULT-GROUP.public.nacos",
                Some(20880)
            )
        );
        let e = parse("providers:com.example.Api:1.0.0:.DEFAULT-GROUP.public.nacos").unwrap_err();
        assert!(e.message.contains("needs its port"), "{}", e.message);
    }

    #[test]
    fn bad_lines_are_reported() {
        assert!(parse("x% a.dns").unwrap_err().message.contains("line 1"));
        assert!(parse("a.dns\nb.dns:notaport")
            .unwrap_err()
            .message
            .contains("line 2"));
        assert!(parse("150% a.dns").is_err());
        assert!(parse("   ").is_err());
    }
}
