//! Istio's standard request metrics as the gateway (an outbound, `reporter="source"`
//! proxy) reports them: `istio_requests_total`, `istio_request_duration_milliseconds`,
//! `istio_request_bytes`, `istio_response_bytes`, with Istio's full label set in its
//! emission order so Istio's own dashboards and recording rules read them.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use telemetry::stats::{Counter, Family, Histogram, Kind, Registry, ENVOY_DEFAULT_BUCKETS};

use super::flag_counts::FlagCounts;
use crate::proxy::flags::ResponseFlags;

/// Name of the gateway workload, as Higress deploys it.
const WORKLOAD: &str = "higress-gateway";
/// Istio's value for what a proxy without peer metadata cannot know.
const UNKNOWN: &str = "unknown";

/// The four families, registered once per process.
pub struct IstioFamilies {
    requests: Arc<Family>,
    duration: Arc<Family>,
    request_bytes: Arc<Family>,
    response_bytes: Arc<Family>,
    namespace: String,
}

impl IstioFamilies {
    /// `namespace` is the gateway's own (its `source_workload_namespace`).
    pub fn register(r: &Registry, namespace: &str) -> Arc<Self> {
        Arc::new(IstioFamilies {
            requests: r.family(
                "istio_requests_total",
                "Requests, as Istio's stats filter counts them.",
                Kind::Counter,
            ),
            duration: r.histogram_family(
                "istio_request_duration_milliseconds",
                "Request duration, first byte in to last byte out (ms).",
                ENVOY_DEFAULT_BUCKETS,
            ),
            request_bytes: r.histogram_family(
                "istio_request_bytes",
                "Request size, headers and body (bytes).",
                ENVOY_DEFAULT_BUCKETS,
            ),
            response_bytes: r.histogram_family(
                "istio_response_bytes",
                "Response size, headers and body (bytes).",
                ENVOY_DEFAULT_BUCKETS,
            ),
            namespace: namespace.to_string(),
        })
    }
}

/// Where requests went, as the `destination_service*` labels name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The service host (`httpbin.dns`, `bff.app.svc.cluster.local`), or `unknown`.
    pub service: String,
    pub name: String,
    pub namespace: String,
}

impl Destination {
    /// A Kubernetes FQDN names its service and namespace; any other host (an McpBridge
    /// registry's) is its own name, in the gateway's namespace, as Istio reports a
    /// ServiceEntry host.
    pub fn of_host(host: &str, gateway_namespace: &str) -> Self {
        let (name, namespace) = match host.strip_suffix(".svc.cluster.local") {
            Some(rest) => match rest.split_once('.') {
                Some((n, ns)) => (n.to_string(), ns.to_string()),
                None => (rest.to_string(), gateway_namespace.to_string()),
            },
            None => (host.to_string(), gateway_namespace.to_string()),
        };
        Destination {
            service: host.to_string(),
            name,
            namespace,
        }
    }

    /// Requests that reached no service (no route, unknown host).
    pub fn unknown() -> Self {
        Destination {
            service: UNKNOWN.into(),
            name: UNKNOWN.into(),
            namespace: UNKNOWN.into(),
        }
    }
}

/// What a request was, for `request_protocol` and `grpc_response_status`: as Istio's
/// stats filter decides it per request from its content type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RequestProtocol {
    /// `http`, with an empty gRPC status.
    #[default]
    Http,
    /// `grpc`, with its status (`None`: none known, an empty label; `u8::MAX`: not a
    /// defined code, `-1` as Envoy shows it).
    Grpc(Option<u8>),
}

impl RequestProtocol {
    fn labels(self) -> (&'static str, String) {
        match self {
            RequestProtocol::Http => ("http", String::new()),
            RequestProtocol::Grpc(None) => ("grpc", String::new()),
            RequestProtocol::Grpc(Some(u8::MAX)) => ("grpc", "-1".into()),
            RequestProtocol::Grpc(Some(s)) => ("grpc", s.to_string()),
        }
    }
}

/// The series of one (destination, response code, response flags).
#[derive(Clone)]
pub struct IstioSeries {
    requests: Counter,
    duration: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
}

impl IstioSeries {
    fn record(&self, elapsed: Duration, request_bytes: u64, response_bytes: u64) {
        self.requests.inc();
        self.duration.record_ms(elapsed);
        self.request_bytes.record(request_bytes as f64);
        self.response_bytes.record(response_bytes as f64);
    }
}

/// Highest status code with its own slot; others share the slot of code 0.
const MAX_CODE: usize = 599;
/// Slots of successful gRPC requests (HTTP 200, no flags): a status 0..=16 each, one
/// for none known and one for an undefined code.
const GRPC_SLOTS: usize = 19;

fn grpc_slot(status: Option<u8>) -> usize {
    match status {
        Some(s) if s <= 16 => s as usize,
        None => 17,
        Some(_) => 18,
    }
}

/// Istio metrics of one destination. Series are created on first use of a code (and
/// flags) and found again by index, so a request formats no label after that.
pub struct IstioStats {
    families: Arc<IstioFamilies>,
    dest: Destination,
    /// By response code, for HTTP requests without response flags (the common case).
    plain: Box<[OnceLock<IstioSeries>]>,
    /// By gRPC status, for gRPC requests answered 200 without response flags.
    grpc: Box<[OnceLock<IstioSeries>]>,
    /// Other requests (failures): few, short lock, never across I/O.
    flagged: Mutex<Vec<(u16, RequestProtocol, ResponseFlags, IstioSeries)>>,
    /// The `response_flags` of those requests flag by flag, for the console's sampler,
    /// which must not take `flagged`'s lock or the families'.
    flag_counts: FlagCounts,
}

impl IstioStats {
    pub fn new(families: Arc<IstioFamilies>, dest: Destination) -> Self {
        IstioStats {
            families,
            dest,
            plain: (0..=MAX_CODE).map(|_| OnceLock::new()).collect(),
            grpc: (0..GRPC_SLOTS).map(|_| OnceLock::new()).collect(),
            flagged: Mutex::new(Vec::new()),
            flag_counts: FlagCounts::default(),
        }
    }

    pub fn destination(&self) -> &Destination {
        &self.dest
    }

    /// Requests recorded here per response flag, by bit position
    /// ([`ResponseFlags::short_name`]).
    pub fn flag_counts(&self) -> [u64; ResponseFlags::COUNT] {
        self.flag_counts.get()
    }

    /// Count one finished request.
    pub fn record(
        &self,
        code: u16,
        protocol: RequestProtocol,
        flags: ResponseFlags,
        elapsed: Duration,
        request_bytes: u64,
        response_bytes: u64,
    ) {
        let code = if code as usize > MAX_CODE { 0 } else { code };
        if flags != ResponseFlags::default() {
            self.flag_counts.add(flags);
        }
        if flags == ResponseFlags::default() {
            let slot = match protocol {
                RequestProtocol::Http => Some(&self.plain[code as usize]),
                RequestProtocol::Grpc(s) if code == 200 => Some(&self.grpc[grpc_slot(s)]),
                RequestProtocol::Grpc(_) => None,
            };
            if let Some(slot) = slot {
                slot.get_or_init(|| self.make(code, protocol, flags))
                    .record(elapsed, request_bytes, response_bytes);
                return;
            }
        }
        let series = {
            let mut v = self.flagged.lock().unwrap_or_else(|e| e.into_inner());
            match v
                .iter()
                .find(|(c, p, f, _)| *c == code && *p == protocol && *f == flags)
            {
                Some((_, _, _, s)) => s.clone(),
                None => {
                    let s = self.make(code, protocol, flags);
                    v.push((code, protocol, flags, s.clone()));
                    s
                }
            }
        };
        series.record(elapsed, request_bytes, response_bytes);
    }

    fn make(&self, code: u16, protocol: RequestProtocol, flags: ResponseFlags) -> IstioSeries {
        let f = &self.families;
        let d = &self.dest;
        let code = code.to_string();
        let (protocol, grpc_status) = protocol.labels();
        let flags = flags.render();
        let labels: [(&str, &str); 25] = [
            ("reporter", "source"),
            ("source_workload", WORKLOAD),
            ("source_canonical_service", WORKLOAD),
            ("source_canonical_revision", "latest"),
            ("source_workload_namespace", &f.namespace),
            ("source_principal", UNKNOWN),
            ("source_app", WORKLOAD),
            ("source_version", UNKNOWN),
            ("source_cluster", UNKNOWN),
            ("destination_workload", UNKNOWN),
            ("destination_workload_namespace", UNKNOWN),
            ("destination_principal", UNKNOWN),
            ("destination_app", UNKNOWN),
            ("destination_version", UNKNOWN),
            ("destination_service", &d.service),
            ("destination_canonical_service", UNKNOWN),
            ("destination_canonical_revision", "latest"),
            ("destination_service_name", &d.name),
            ("destination_service_namespace", &d.namespace),
            ("destination_cluster", UNKNOWN),
            ("request_protocol", protocol),
            ("response_code", &code),
            ("grpc_response_status", &grpc_status),
            ("response_flags", &flags),
            ("connection_security_policy", UNKNOWN),
        ];
        IstioSeries {
            requests: f.requests.counter(&labels),
            duration: f.duration.histogram(&labels),
            request_bytes: f.request_bytes.histogram(&labels),
            response_bytes: f.response_bytes.histogram(&labels),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_from_hosts() {
        let d = Destination::of_host("bff.app-system.svc.cluster.local", "higress-system");
        assert_eq!(
            (d.name.as_str(), d.namespace.as_str()),
            ("bff", "app-system")
        );
        let d = Destination::of_host("httpbin.dns", "higress-system");
        assert_eq!(
            (d.service.as_str(), d.name.as_str(), d.namespace.as_str()),
            ("httpbin.dns", "httpbin.dns", "higress-system")
        );
    }

    const HTTP: RequestProtocol = RequestProtocol::Http;

    #[test]
    fn one_series_per_code_and_flags_with_istio_labels() {
        let r = Registry::new();
        let fams = IstioFamilies::register(&r, "higress-system");
        let s = IstioStats::new(fams, Destination::of_host("httpbin.dns", "higress-system"));
        let ms = Duration::from_millis(2);
        s.record(200, HTTP, ResponseFlags::default(), ms, 100, 300);
        s.record(200, HTTP, ResponseFlags::default(), ms, 100, 300);
        let mut uf = ResponseFlags::default();
        uf.set(ResponseFlags::CONNECT_FAILURE);
        s.record(503, HTTP, uf, ms, 100, 91);
        s.record(503, HTTP, uf, ms, 100, 91);
        let m = r.render();
        let ok = m
            .lines()
            .find(|l| l.starts_with("istio_requests_total{") && l.contains("response_code=\"200\""))
            .unwrap_or_else(|| panic!("no 200 series in\n{m}"));
        assert!(ok.starts_with(
            "istio_requests_total{reporter=\"source\",source_workload=\"higress-gateway\","
        ));
        assert!(ok.contains(",destination_service=\"httpbin.dns\","), "{ok}");
        assert!(ok.contains(",request_protocol=\"http\",response_code=\"200\",grpc_response_status=\"\",response_flags=\"-\",connection_security_policy=\"unknown\"}"), "{ok}");
        assert!(ok.ends_with("} 2"), "{ok}");
        let uf_line = m
            .lines()
            .find(|l| l.starts_with("istio_requests_total{") && l.contains("response_flags=\"UF\""))
            .unwrap_or_else(|| panic!("no UF series in\n{m}"));
        assert!(uf_line.contains("response_code=\"503\""));
        assert!(uf_line.ends_with("} 2"), "{uf_line}");
        assert_eq!(s.flag_counts()[3], 2, "UF, flag by flag for the console");
        assert_eq!(s.flag_counts().iter().sum::<u64>(), 2);
        assert_eq!(
            m.lines()
                .filter(|l| l.starts_with("istio_requests_total{"))
                .count(),
            2
        );
        assert!(m
            .lines()
            .any(|l| l.starts_with("istio_response_bytes_bucket{")
                && l.contains("response_code=\"200\"")
                && l.contains("le=\"500\"}")
                && l.ends_with(" 2")));
    }

    #[test]
    fn grpc_requests_carry_protocol_and_status() {
        let r = Registry::new();
        let fams = IstioFamilies::register(&r, "higress-system");
        let s = IstioStats::new(fams, Destination::of_host("g.dns", "higress-system"));
        let ms = Duration::from_millis(1);
        let ok = ResponseFlags::default();
        s.record(200, RequestProtocol::Grpc(Some(0)), ok, ms, 1, 1);
        s.record(200, RequestProtocol::Grpc(Some(0)), ok, ms, 1, 1);
        s.record(200, RequestProtocol::Grpc(Some(8)), ok, ms, 1, 1);
        s.record(200, HTTP, ok, ms, 1, 1);
        let mut uc = ResponseFlags::default();
        uc.set(ResponseFlags::CONNECTION_TERMINATION);
        s.record(200, RequestProtocol::Grpc(Some(14)), uc, ms, 1, 1);
        s.record(0, RequestProtocol::Grpc(None), uc, ms, 1, 0);
        let m = r.render();
        let line = |needle: &str| {
            m.lines()
                .find(|l| l.starts_with("istio_requests_total{") && l.contains(needle))
                .unwrap_or_else(|| panic!("no {needle} in\n{m}"))
                .to_string()
        };
        let grpc_ok = line("request_protocol=\"grpc\",response_code=\"200\",grpc_response_status=\"0\",response_flags=\"-\"");
        assert!(grpc_ok.ends_with("} 2"), "{grpc_ok}");
        line("request_protocol=\"grpc\",response_code=\"200\",grpc_response_status=\"8\",response_flags=\"-\"");
        line("request_protocol=\"http\",response_code=\"200\",grpc_response_status=\"\"");
        line("request_protocol=\"grpc\",response_code=\"200\",grpc_response_status=\"14\",response_flags=\"UC\"");
        line("request_protocol=\"grpc\",response_code=\"0\",grpc_response_status=\"\",response_flags=\"UC\"");
    }
}
