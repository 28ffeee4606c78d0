//! Process-wide families: Envoy's `server.*` gauges, the tracer stats and the
//! `gateway_*` families that exist from start-up (zero until used).

use std::sync::Arc;
use std::time::Instant;

use telemetry::export::{ExportErrors, Provider};
use telemetry::stats::{Counter, Family, Gauge, Kind, Registry};

use super::config::ConfigStats;
use super::hcm::HcmStats;

/// Why a span was dropped: its exporter's queue was full, or the export failed.
pub const DROP_REASONS: [&str; 2] = ["queue_full", "export_failed"];

/// Tracer stats: Envoy's names where Envoy has them, and ours per provider.
#[derive(Clone)]
pub struct TracerStats {
    pub zipkin_spans_sent: Counter,
    pub zipkin_reports_sent: Counter,
    pub zipkin_reports_dropped: Counter,
    pub zipkin_reports_failed: Counter,
    pub skywalking_segments_sent: Counter,
    pub skywalking_segments_dropped: Counter,
    pub opentelemetry_spans_sent: Counter,
    /// `gateway_tracing_queue_size{provider}`, at [`Provider::index`].
    pub queue_size: [Gauge; 3],
    /// `gateway_tracing_spans_dropped_total{provider,reason}`, by provider (at
    /// [`Provider::index`]) then reason.
    pub spans_dropped: [[Counter; 2]; 3],
    /// `gateway_tracing_export_errors_total{provider,reason}`, by provider (at
    /// [`Provider::index`]) then reason (`connect`, `timeout`, `status`, `reset`).
    pub export_errors: [ExportErrors; 3],
}

impl TracerStats {
    fn register(r: &Registry) -> Self {
        let counter = |name: &str, help: &str| r.family(name, help, Kind::Counter).counter(&[]);
        let queue = r.family(
            "gateway_tracing_queue_size",
            "Spans waiting in the exporter's queue.",
            Kind::Gauge,
        );
        let dropped = r.family(
            "gateway_tracing_spans_dropped_total",
            "Spans dropped before export: queue full, or export failed.",
            Kind::Counter,
        );
        let errors = r.family(
            "gateway_tracing_export_errors_total",
            "Failed exports to the trace collector, by reason: connect (refused or unresolved), timeout (connect or export), status (the collector answered with an error), reset (the connection broke).",
            Kind::Counter,
        );
        TracerStats {
            export_errors: Provider::ALL.map(|p| {
                let c = |reason: &str| errors.counter(&[("provider", p.as_str()), ("reason", reason)]);
                ExportErrors {
                    connect: c("connect"),
                    timeout: c("timeout"),
                    status: c("status"),
                    reset: c("reset"),
                }
            }),
            zipkin_spans_sent: counter(
                "envoy_tracing_zipkin_spans_sent",
                "Spans sent to the Zipkin collector.",
            ),
            zipkin_reports_sent: counter(
                "envoy_tracing_zipkin_reports_sent",
                "Zipkin reports (batches) sent.",
            ),
            zipkin_reports_dropped: counter(
                "envoy_tracing_zipkin_reports_dropped",
                "Zipkin reports not delivered: the collector unreachable, timed out, or answering other than 2xx.",
            ),
            zipkin_reports_failed: counter(
                "envoy_tracing_zipkin_reports_failed",
                "Zipkin reports whose connection broke before an answer.",
            ),
            skywalking_segments_sent: counter(
                "envoy_tracing_skywalking_segments_sent",
                "Segments sent to the SkyWalking collector.",
            ),
            skywalking_segments_dropped: counter(
                "envoy_tracing_skywalking_segments_dropped",
                "SkyWalking segments dropped.",
            ),
            opentelemetry_spans_sent: counter(
                "envoy_tracing_opentelemetry_spans_sent",
                "Spans sent to the OTLP collector.",
            ),
            queue_size: Provider::ALL.map(|p| queue.gauge(&[("provider", p.as_str())])),
            spans_dropped: Provider::ALL.map(|p| {
                DROP_REASONS
                    .map(|reason| dropped.counter(&[("provider", p.as_str()), ("reason", reason)]))
            }),
        }
    }
}

/// `gateway_wasm_*`: series per plugin, created as plugins load.
#[derive(Clone)]
pub struct WasmStats {
    pub calls: Arc<Family>,
    pub failures: Arc<Family>,
    pub rebuilds: Arc<Family>,
    pub latency: Arc<Family>,
    pub memory: Arc<Family>,
}

/// Buckets of `gateway_wasm_callback_duration_milliseconds`: callbacks take
/// microseconds, so finer than Envoy's request buckets.
pub const WASM_CALLBACK_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0,
];

/// Stats of the process, registered at start-up.
pub struct ServerStats {
    pub registry: Arc<Registry>,
    pub config: ConfigStats,
    /// Access log lines dropped because the writer could not keep up.
    pub access_log_dropped: Counter,
    pub tracing: TracerStats,
    pub wasm: WasmStats,
    total_connections: Gauge,
    /// `envoy_server_state`: 0 live, 1 draining (after SIGTERM or `/quitquitquit`).
    pub state: Gauge,
    /// `envoy_overload_envoy_overload_actions_stop_accepting_requests_active`: 1 while
    /// `--overload-max-heap` is exceeded and new requests are refused.
    pub overload_active: Gauge,
    _fixed: Vec<Gauge>,
}

impl ServerStats {
    /// `concurrency` is the number of worker threads.
    pub fn new(concurrency: usize) -> Self {
        let registry = Arc::new(Registry::new());
        let r = &registry;
        let gauge = |name: &str, help: &str| r.family(name, help, Kind::Gauge).gauge(&[]);
        // Set once; held here so the registry never retires them as unused.
        let fixed = vec![
            (gauge("envoy_server_live", "1 when the server is live."), 1),
            (
                gauge(
                    "envoy_server_hot_restart_epoch",
                    "Hot restart epoch (always 0: changes apply live, without restarts).",
                ),
                0,
            ),
            (
                gauge("envoy_server_concurrency", "Worker threads."),
                concurrency as i64,
            ),
        ];
        let fixed: Vec<Gauge> = fixed
            .into_iter()
            .map(|(g, v)| {
                g.set(v);
                g
            })
            .collect();
        let state = gauge("envoy_server_state", "0: live, 1: draining.");
        let overload_active = gauge(
            "envoy_overload_envoy_overload_actions_stop_accepting_requests_active",
            "1 while the heap is over --overload-max-heap and new requests get 503.",
        );
        let uptime = gauge("envoy_server_uptime", "Seconds since the server started.");
        let allocated = gauge(
            "envoy_server_memory_allocated",
            "Bytes the allocator holds for the process (mimalloc's committed memory).",
        );
        let heap = gauge(
            "envoy_server_memory_heap_size",
            "Bytes the allocator has reserved (mimalloc's peak committed memory).",
        );
        let physical = gauge(
            "envoy_server_memory_physical_size",
            "Resident memory of the process (bytes).",
        );
        let total_connections = gauge(
            "envoy_server_total_connections",
            "Downstream connections open, all listeners.",
        );
        let started = Instant::now();
        r.on_scrape(move || {
            uptime.set(started.elapsed().as_secs() as i64);
            let m = memory();
            allocated.set(m.commit as i64);
            heap.set(m.peak_commit as i64);
            physical.set(m.rss as i64);
        });
        let config = ConfigStats::register(r);
        let access_log_dropped = r
            .family(
                "gateway_access_log_dropped_total",
                "Access log lines dropped because the log writer could not keep up.",
                Kind::Counter,
            )
            .counter(&[]);
        let tracing = TracerStats::register(r);
        // Envoy's `segments_dropped` is every SkyWalking drop, whatever the reason.
        let (sw_dropped, sw_reasons) = (
            tracing.skywalking_segments_dropped.clone(),
            tracing.spans_dropped[0].clone(),
        );
        let counted = std::sync::atomic::AtomicU64::new(0);
        r.on_scrape(move || {
            let total: u64 = sw_reasons.iter().map(Counter::get).sum();
            let before = counted.swap(total, std::sync::atomic::Ordering::Relaxed);
            sw_dropped.add(total.saturating_sub(before));
        });
        let wasm = WasmStats {
            calls: r.family(
                "gateway_wasm_calls_total",
                "Wasm plugin callbacks run, per plugin.",
                Kind::Counter,
            ),
            failures: r.family(
                "gateway_wasm_failures_total",
                "Wasm plugin failures (trap, deadline, memory limit, exit), per plugin and reason.",
                Kind::Counter,
            ),
            rebuilds: r.family(
                "gateway_wasm_vm_rebuilds_total",
                "Wasm VMs built again, after a failure or because the plugin asked (wasm_need_rebuild), per plugin.",
                Kind::Counter,
            ),
            latency: r.histogram_family(
                "gateway_wasm_callback_duration_milliseconds",
                "Time of one Wasm plugin callback (ms), per plugin.",
                WASM_CALLBACK_BUCKETS,
            ),
            memory: r.family(
                "gateway_wasm_vm_memory_bytes",
                "Linear memory of a Wasm plugin's VMs (bytes), all worker threads, per plugin.",
                Kind::Gauge,
            ),
        };
        ServerStats {
            registry,
            config,
            access_log_dropped,
            tracing,
            wasm,
            total_connections,
            state,
            overload_active,
            _fixed: fixed,
        }
    }

    /// Keep `envoy_server_total_connections` as the sum of these listeners' open
    /// connections, read at each scrape.
    pub fn count_connections_of(&self, listeners: Vec<HcmStats>) {
        let total = self.total_connections.clone();
        self.registry.on_scrape(move || {
            total.set(listeners.iter().map(|l| l.cx_active.get()).sum());
        });
    }
}

/// Bytes the allocator has committed for the heap (what `envoy_server_memory_allocated`
/// shows), the measure `--overload-max-heap` compares with.
pub fn heap_bytes() -> usize {
    memory().commit
}

struct Memory {
    commit: usize,
    peak_commit: usize,
    rss: usize,
}

fn memory() -> Memory {
    let (mut elapsed, mut user, mut system, mut rss, mut peak_rss) = (0, 0, 0, 0, 0);
    let (mut commit, mut peak_commit, mut faults) = (0, 0, 0);
    // SAFETY: every pointer is to a live local `usize`, as the function expects.
    unsafe {
        libmimalloc_sys::mi_process_info(
            &mut elapsed,
            &mut user,
            &mut system,
            &mut rss,
            &mut peak_rss,
            &mut commit,
            &mut peak_commit,
            &mut faults,
        );
    }
    Memory {
        commit,
        peak_commit,
        rss: resident_bytes().unwrap_or(rss),
    }
}

/// Resident set size from `/proc/self/statm` (mimalloc only estimates it on Linux).
fn resident_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * usize::try_from(page).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_and_gateway_families_exist_from_start() {
        let s = ServerStats::new(4);
        let m = s.registry.render();
        for line in [
            "envoy_server_live 1",
            "envoy_server_concurrency 4",
            "envoy_server_hot_restart_epoch 0",
            "envoy_tracing_zipkin_spans_sent 0",
            "envoy_tracing_skywalking_segments_dropped 0",
            "gateway_tracing_queue_size{provider=\"opentelemetry\"} 0",
            "gateway_tracing_spans_dropped_total{provider=\"zipkin\",reason=\"queue_full\"} 0",
            "gateway_config_reloads_total{result=\"rejected\"} 0",
            "# TYPE gateway_wasm_calls_total counter",
        ] {
            assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
        }
        let value = |name: &str| -> i64 {
            m.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in\n{m}"))
        };
        assert!(value("envoy_server_memory_physical_size") > 0);
        assert!(value("envoy_server_uptime") >= 0);
    }

    #[test]
    fn server_gauges_outlive_the_retention_period() {
        let s = ServerStats::new(1);
        s.registry
            .family("unheld", "dropped at once", Kind::Gauge)
            .gauge(&[])
            .set(7);
        s.registry.set_retention(std::time::Duration::ZERO);
        s.registry.prune();
        s.registry.prune();
        let m = s.registry.render();
        assert!(m.lines().any(|l| l == "envoy_server_live 1"), "{m}");
        assert!(m.lines().any(|l| l == "envoy_server_concurrency 1"), "{m}");
        assert!(!m.contains("unheld 7"), "an unheld series is retired: {m}");
    }
}
