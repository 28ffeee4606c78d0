//! Putting the process together: the control plane (sources, config loop, DNS) on its
//! own thread, and the Pingora server with the HTTP, HTTPS (bound once TLS is
//! configured), stats and admin listeners.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arc_swap::ArcSwap;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{ExecutionPhase, Server};
use pingora_core::services::listening::Service;
use tokio::sync::mpsc;

use crate::admin::listener::{self as admin_listener, Peers};
use crate::admin::{AdminApp, Lifecycle, StatsApp};
use crate::config_loop::{self, ConfigLoop, ConfigStatus, LoopOptions, StatusCell};
use crate::dns;
use crate::proxy::access_log::{AccessLog, Target};
use crate::proxy::app::GatewayListener;
use crate::proxy::https::HttpsService;
use crate::proxy::overload::{self, Overload};
use crate::proxy::redirect::Ports;
use crate::proxy::{Gateway, ListenerInfo};
use crate::snapshot::{self, SnapshotCell};
use crate::sources::file::{self, Scan};
use crate::sources::kube::{self as kube_source, KubeOptions};
use crate::sources::nacos::{self as nacos_source, NacosOptions};
use crate::sources::Change;
use crate::stats::{ClusterStatsCache, HcmStats, ListenerTlsStats, RouteStatsCache, ServerStats};
use crate::translate::wasm_plugins::WasmDeps;
use telemetry::export::RecentTraces;

/// Sampled requests kept for `/debug/traces`.
const RECENT_TRACES: usize = 300;

/// How long start-up waits for the first answer of each `dns` registry name.
const INITIAL_DNS_WAIT: Duration = Duration::from_secs(5);

/// What protects the process from its clients and itself (see docs/reliability.md).
#[derive(Clone, Debug)]
pub struct ServingLimits {
    /// After SIGTERM: how long in-flight requests (and open WebSockets) get.
    pub drain_timeout: Duration,
    /// HTTP/1: longest a request head may take from its first byte (0: none).
    pub request_headers_timeout: Duration,
    /// Connections each proxy listener keeps open at most (0: none).
    pub max_connections: usize,
    /// Requests in progress past which new ones get 503 (0: none).
    pub max_active_requests: usize,
    /// Heap bytes past which new requests get 503 (0: none).
    pub overload_max_heap: usize,
    /// Admin writes on a non-loopback admin address.
    pub admin_allow_writes: bool,
    /// Serve every TLS domain's routes whatever the SNI (Higress's behaviour) instead of
    /// answering 421.
    pub allow_misdirected_hosts: bool,
}

impl Default for ServingLimits {
    fn default() -> Self {
        ServingLimits {
            drain_timeout: Duration::from_secs(20),
            request_headers_timeout: Duration::from_secs(60),
            max_connections: 0,
            max_active_requests: 0,
            overload_max_heap: 0,
            admin_allow_writes: false,
            allow_misdirected_hosts: false,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    /// The config directory; in Kubernetes mode only where relative `file://` Wasm
    /// module paths start.
    pub config_dir: PathBuf,
    /// `Some`: read config from the Kubernetes API instead of the directory.
    pub kube: Option<KubeOptions>,
    /// `Some`: read config from Nacos instead of the directory.
    pub nacos: Option<NacosOptions>,
    pub http_addr: String,
    /// `None`: no HTTPS listener (`--https-addr off`).
    pub https_addr: Option<String>,
    /// The cluster-local listener; `None`: none (`--local-http-addr off`).
    pub local_http_addr: Option<String>,
    /// `--gateway-selector`: `key=value,...` an Istio Gateway's selector must match.
    pub gateway_selector: String,
    pub stats_addr: String,
    pub admin_addr: String,
    /// `--console-addr`: the console on a listener of its own, every endpoint behind the
    /// login; `None`: on the admin listener.
    pub console_addr: Option<String>,
    /// `--trace-ui-url`: a trace's page in SkyWalking / Jaeger / Zipkin / Tempo,
    /// `{trace_id}` replaced.
    pub trace_ui_url: Option<String>,
    pub limits: ServingLimits,
    pub threads: usize,
    pub access_log: Target,
    pub dns_resolver: Option<SocketAddr>,
    pub dns_refresh: Duration,
    /// How often registry watchers poll.
    pub registry_timing: crate::registry::Timing,
    pub ingress_class: String,
    /// How long a removed cluster's series stay exported.
    pub stats_retention: Duration,
    /// Whether requests record stats (off only for the benchmark's comparison).
    pub stats_recording: bool,
    /// `gateway demo`: trace to `/debug/traces` while `higress-config` enables none.
    pub demo_tracing: bool,
    /// Deadline per plugin callback and memory per VM.
    pub wasm_limits: crate::wasm::Limits,
    /// Compiled modules kept across restarts.
    pub wasm_cache_dir: Option<PathBuf>,
    /// Tell `perf` the names of compiled plugin functions.
    pub wasm_perf_map: bool,
    /// Run Higress's core plugins natively when an `oci://` image names one.
    pub wasm_native_plugins: bool,
    /// OCI registries pulled from over plain HTTP (`*`: all).
    pub wasm_insecure_registries: Vec<String>,
}

/// Where the first config comes from.
enum Initial {
    Files(Scan),
    /// The watchers started, and where each reports its first complete list.
    Kube(Box<kube_source::Spawned>, mpsc::UnboundedReceiver<String>),
    /// Everything Nacos held at start-up.
    Nacos(
        Arc<nacos_source::NacosClient>,
        nacos_source::State,
        Vec<Change>,
    ),
}

/// Take the watchers' changes until each has listed once, so the first snapshot (and
/// readiness) has the whole cluster state, not part of it.
async fn initial_sync(
    cl: &mut ConfigLoop,
    watchers: usize,
    changes: &mut mpsc::Receiver<Vec<Change>>,
    synced: &mut mpsc::UnboundedReceiver<String>,
) {
    let mut pending = watchers;
    let mut waiting = tokio::time::interval(Duration::from_secs(10));
    waiting.tick().await;
    while pending > 0 {
        tokio::select! {
            Some(batch) = changes.recv() => {
                cl.apply_changes(batch);
            }
            Some(_) = synced.recv() => pending -= 1,
            _ = waiting.tick() => {
                tracing::info!(pending, "waiting for the initial list of every watched kind; not ready yet");
            }
        }
    }
    // A watcher reports its list after sending it: what it sent is queued by now.
    while let Ok(batch) = changes.try_recv() {
        cl.apply_changes(batch);
    }
}

/// Start the control plane; returns once the first snapshot is published.
fn start_control_plane(
    opts: &Options,
    snapshot: SnapshotCell,
    status: StatusCell,
    stats: &ServerStats,
    stat_caches: (ClusterStatsCache, RouteStatsCache),
    tracing_deps: config_loop::TracingDeps,
    listening: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::sync::watch::Receiver<u64>> {
    let dir = opts.config_dir.clone();
    let kube = opts.kube.clone();
    let nacos = opts.nacos.clone();
    let loop_opts = LoopOptions {
        ingress_class: opts.ingress_class.clone(),
        // A directory's Ingresses are all ours; in Kubernetes mode only with the flag.
        accept_unclassed: kube.as_ref().is_none_or(|k| k.watch_without_class),
        namespace: kube.as_ref().map_or_else(
            || crate::resources::SYSTEM_NAMESPACE.to_string(),
            |k| k.namespace.clone(),
        ),
        demo_tracing: opts.demo_tracing,
        gateway_selector: crate::config_loop::parse_selector(&opts.gateway_selector),
        local_port: opts.local_http_addr.as_deref().and_then(port_of),
        // Nacos keys an object in its group, as Kubernetes in its namespace.
        directory: kube.is_none() && nacos.is_none(),
        registry_timing: opts.registry_timing,
    };
    let config_stats = stats.config.clone();
    let wasm = WasmDeps {
        limits: opts.wasm_limits.clone(),
        cache_dir: opts.wasm_cache_dir.clone(),
        perf_map: opts.wasm_perf_map,
        native_plugins: opts.wasm_native_plugins,
        stats: stats.wasm.clone(),
        registry: stats.registry.clone(),
        config_dir: opts.config_dir.clone(),
        oci: crate::wasm::oci::OciOptions {
            insecure: opts.wasm_insecure_registries.clone(),
            cache_dir: crate::wasm::oci::default_dir(opts.wasm_cache_dir.as_deref()),
        },
    };
    let resolver_addr = opts.dns_resolver;
    let refresh = opts.dns_refresh;
    let (ready_tx, ready_rx) =
        std::sync::mpsc::channel::<anyhow::Result<tokio::sync::watch::Receiver<u64>>>();
    std::thread::Builder::new()
        .name("control-plane".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into()));
                    return;
                }
            };
            rt.block_on(async move {
                let (changes_tx, mut changes_rx) = mpsc::channel::<Vec<Change>>(64);
                let source = match (&kube, &nacos) {
                    (None, Some(n)) => {
                        let client = Arc::new(n.client());
                        let (state, changes) =
                            nacos_source::load_retrying(&client, n.crypt.as_ref()).await;
                        tracing::info!(source = %n.describe(), objects = changes.len(), "config read from Nacos");
                        Initial::Nacos(client, state, changes)
                    }
                    (None, None) => match Scan::read(&dir) {
                        Ok(s) => Initial::Files(s),
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.into()));
                            return;
                        }
                    },
                    (Some(k), _) => match ::kube::Client::try_default().await {
                        Ok(client) => {
                            let (synced_tx, synced_rx) = mpsc::unbounded_channel();
                            let spawned =
                                kube_source::spawn(client, k, changes_tx.clone(), synced_tx)
                                    .await;
                            Initial::Kube(Box::new(spawned), synced_rx)
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(anyhow::anyhow!(
                                "no Kubernetes client (in-cluster config or KUBECONFIG): {e}"
                            )));
                            return;
                        }
                    },
                };
                let resolver = match dns::resolver(resolver_addr, Duration::from_secs(2)) {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.context("setting up the DNS resolver")));
                        return;
                    }
                };
                let (mut cl, names_rx) = ConfigLoop::new(
                    loop_opts,
                    snapshot,
                    status,
                    config_stats,
                    stat_caches,
                    tracing_deps,
                    wasm,
                );
                let mut nacos_watch = None;
                let scan = match source {
                    Initial::Files(mut scan) => {
                        cl.apply_changes(scan.all());
                        Some(scan)
                    }
                    Initial::Nacos(client, state, changes) => {
                        cl.apply_changes(changes);
                        nacos_watch = Some((client, state));
                        None
                    }
                    Initial::Kube(spawned, mut synced) => {
                        initial_sync(&mut cl, spawned.watchers, &mut changes_rx, &mut synced)
                            .await;
                        // Follows what each live snapshot serves, so it subscribes before
                        // the first one is published.
                        if let Some(st) = spawned.kingress_status {
                            st.start(cl.subscribe_kingresses(), listening);
                        }
                        None
                    }
                };
                for name in cl.dns_names() {
                    let result =
                        tokio::time::timeout(INITIAL_DNS_WAIT, dns::resolve(&resolver, &name))
                            .await
                            .unwrap_or_else(|_| Err("timed out".into()));
                    cl.apply_dns(dns::DnsAnswer { name, result });
                }
                let published = cl.subscribe();
                cl.publish();
                config_loop::release_memory();
                let _ = ready_tx.send(Ok(published));
                let (dns_tx, dns_rx) = mpsc::channel(64);
                if let (Some((client, state)), Some(n)) = (nacos_watch, nacos) {
                    tokio::spawn(nacos_source::watch(client, n, state, changes_tx.clone()));
                }
                if let Some(scan) = scan {
                    tokio::spawn(async move {
                        if let Err(e) = file::watch(dir, scan, changes_tx).await {
                            tracing::error!(error = %e, "config watcher stopped; live updates are off");
                        }
                    });
                }
                tokio::spawn(dns::run(resolver, refresh, names_rx, dns_tx));
                let (registry_tx, registry_rx) = mpsc::channel(64);
                tokio::spawn(crate::registry::supervise(cl.registry_configs(), registry_tx));
                config_loop::run(cl, changes_rx, dns_rx, registry_rx).await;
            });
        })?;
    ready_rx
        .recv()
        .context("control plane ended before the first config")?
}

/// Run the gateway until SIGTERM (graceful) or SIGINT. Does not return on success.
pub fn run(opts: Options) -> anyhow::Result<()> {
    let threads = opts.threads.max(1);
    let stats = ServerStats::new(threads);
    stats.registry.set_retention(opts.stats_retention);
    crate::stats::set_recording(opts.stats_recording);
    let cluster_stats =
        ClusterStatsCache::new(stats.registry.clone(), crate::resources::SYSTEM_NAMESPACE);
    let istio = cluster_stats.istio_families().clone();
    let route_stats = RouteStatsCache::new(stats.registry.clone());
    // The console's last 15 minutes per route and cluster, sampled every second; held
    // for the process's life (the admin listener's console endpoints read it).
    let console_series = Arc::new(crate::console::series::Series::new(
        route_stats.roster(),
        cluster_stats.roster(),
    ));
    console_series
        .start_sampler()
        .context("starting the console's metric sampler")?;
    // Higress's gateway always has the local rate limit filter in its chain, so its
    // counters exist (at 0) from start-up; held here for the process's life.
    let _local_rate_limit =
        crate::filters::local_rate_limit::LocalRateLimitStats::register(&stats.registry);
    let recent = Arc::new(RecentTraces::new(RECENT_TRACES));
    let snapshot = snapshot::new_cell();
    let status: StatusCell = Arc::new(ArcSwap::from_pointee(ConfigStatus::default()));
    // True once Pingora runs its listeners: KIngress statuses say `Ready` only then.
    let (listening_tx, listening_rx) = tokio::sync::watch::channel(false);
    let published = start_control_plane(
        &opts,
        snapshot.clone(),
        status.clone(),
        &stats,
        (cluster_stats, route_stats),
        config_loop::TracingDeps {
            stats: stats.tracing.clone(),
            recent: recent.clone(),
        },
        listening_rx,
    )
    .with_context(|| match (&opts.kube, &opts.nacos) {
        (Some(k), _) => format!(
            "loading config from the Kubernetes API (namespace {})",
            k.namespace
        ),
        (None, Some(n)) => format!("loading config from {}", n.describe()),
        (None, None) => format!("loading config from {}", opts.config_dir.display()),
    })?;

    let access_log = Arc::new(
        AccessLog::open(&opts.access_log, stats.access_log_dropped.clone())
            .context("opening the access log")?,
    );

    let conf = ServerConf {
        threads,
        // SIGTERM: Pingora stops accepting at once; `drain_on_sigterm` exits as soon as
        // in-flight requests are done, before this bound.
        grace_period_seconds: Some(opts.limits.drain_timeout.as_secs() + 1),
        graceful_shutdown_timeout_seconds: Some(1),
        // Pingora's fast timers live in a per-thread tree until their deadline, even when
        // cancelled: one per 10 ms tick per duration, thousands at load for a 180 s
        // keep-alive or a 10 s upstream idle timeout, and every request walks the tree.
        // Tokio's wheel drops a cancelled timer at once: it takes every timeout >= 1 s.
        fast_timeout_to_tokio_threshold_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let conf = server.configuration.clone();

    let limits = &opts.limits;
    let lifecycle = Lifecycle::new(stats.state.clone());
    let in_flight = Arc::new(AtomicUsize::new(0));
    drain_on_sigterm(
        &server,
        in_flight.clone(),
        access_log.clone(),
        (lifecycle.clone(), limits.drain_timeout),
    );
    let overload = Arc::new(Overload::new(limits.max_active_requests));
    if limits.overload_max_heap > 0 {
        overload::watch_heap(
            overload.clone(),
            limits.overload_max_heap,
            stats.overload_active.clone(),
            crate::stats::heap_bytes,
        )
        .context("starting the heap watch of --overload-max-heap")?;
    }
    if opts.kube.is_some() {
        signal_running(&server, &opts.http_addr, listening_tx);
    }
    let hcm = HcmStats::register(&stats.registry, &opts.http_addr, &istio);
    let ports = Ports {
        http: port_of(&opts.http_addr).unwrap_or(80),
        https: opts.https_addr.as_deref().and_then(port_of),
    };
    // The proxy of one listener, with its own stats prefix.
    let listener_app = |hcm: &HcmStats, tls: bool, local: bool| {
        let gateway = Gateway::new(
            snapshot.clone(),
            access_log.clone(),
            (in_flight.clone(), overload.clone()),
            hcm.clone(),
            ListenerInfo {
                tls,
                ports,
                local,
                check_sni: tls && !limits.allow_misdirected_hosts,
            },
        );
        let proxy = pingora_proxy::http_proxy(&conf, gateway);
        GatewayListener::new(
            proxy,
            snapshot.clone(),
            hcm.clone(),
            limits.max_connections,
            limits.request_headers_timeout,
        )
    };
    let mut http = Service::new("gateway http".to_string(), listener_app(&hcm, false, false));
    http.add_tcp(&opts.http_addr);
    let mut listeners = vec![hcm];

    // Its stats are registered from start-up like the HTTP listener's; the socket is
    // bound once a certificate is configured.
    let https = opts.https_addr.as_ref().map(|addr| {
        let hcm = HcmStats::register(&stats.registry, addr, &istio);
        listeners.push(hcm.clone());
        HttpsService::new(
            addr.clone(),
            listener_app(&hcm, true, false),
            snapshot.clone(),
            published,
            ListenerTlsStats::register(&stats.registry, addr),
            threads,
        )
    });
    // The cluster-local listener (KIngress `ClusterLocal` hosts), plain HTTP with its
    // own stats prefix, as Higress's port 8081.
    let local = opts.local_http_addr.as_ref().map(|addr| {
        let hcm = HcmStats::register(&stats.registry, addr, &istio);
        listeners.push(hcm.clone());
        let mut svc = Service::new(
            "gateway local http".to_string(),
            listener_app(&hcm, false, true),
        );
        svc.add_tcp(addr);
        svc
    });
    stats.count_connections_of(listeners);

    // Bound before the proxy listeners, served on their own thread (`admin/listener.rs`).
    let admin_bound = opts
        .admin_addr
        .parse::<SocketAddr>()
        .with_context(|| format!("--admin-addr {}: expected ip:port", opts.admin_addr))?;
    let store = Arc::new(match (&opts.kube, &opts.nacos) {
        (Some(k), _) => crate::console::manage::Store::Kube {
            namespace: k.namespace.clone(),
        },
        (None, Some(n)) => crate::console::manage::Store::Nacos(n.clone()),
        (None, None) => crate::console::manage::Store::Files(opts.config_dir.clone()),
    });
    let console = |login_for_reads| {
        Arc::new(crate::console::Console {
            status: status.clone(),
            snapshot: snapshot.clone(),
            recent: recent.clone(),
            series: console_series.clone(),
            trace_ui_url: opts.trace_ui_url.clone(),
            login_for_reads,
            auth: Arc::new(crate::console::auth::Auth::new(store.clone())),
            manage: Arc::new(crate::console::manage::Manager::new(store.clone())),
        })
    };
    let mut endpoints = Vec::new();
    let admin_console = match &opts.console_addr {
        Some(addr) => {
            endpoints.push(admin_listener::Endpoint {
                name: "console",
                listener: admin_listener::bind(addr)?,
                handler: console(true),
                peers: Peers::Any,
            });
            None
        }
        // On a loopback admin listener, reads are open (its peers are loopback).
        None => Some(console(!admin_bound.ip().is_loopback())),
    };
    endpoints.extend([
        admin_listener::Endpoint {
            name: "stats",
            listener: admin_listener::bind(&opts.stats_addr)?,
            handler: Arc::new(StatsApp {
                registry: stats.registry.clone(),
                snapshot: snapshot.clone(),
                lifecycle: lifecycle.clone(),
            }),
            peers: Peers::Any,
        },
        admin_listener::Endpoint {
            name: "admin",
            listener: admin_listener::bind(&opts.admin_addr)?,
            handler: Arc::new(AdminApp {
                status,
                snapshot,
                recent,
                lifecycle,
                writes: admin_bound.ip().is_loopback() || limits.admin_allow_writes,
                console: admin_console,
            }),
            peers: Peers::for_address(&admin_bound),
        },
    ]);
    admin_listener::spawn(endpoints)?;

    server.add_service(http);
    if let Some(https) = https {
        server.add_service(https);
    }
    if let Some(local) = local {
        server.add_service(local);
    }
    tracing::info!(http = %opts.http_addr, https = opts.https_addr.as_deref().unwrap_or("off"), local_http = opts.local_http_addr.as_deref().unwrap_or("off"), stats = %opts.stats_addr, admin = %opts.admin_addr, "gateway listening (HTTPS once TLS is configured)");
    server.run_forever();
}

/// The port of a listen address (`0.0.0.0:8080`, `[::]:8443`).
fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

/// Send `true` once Pingora's services run and the HTTP listener takes connections
/// (one probe connection; given up after 5 s, when it is taken as up).
fn signal_running(server: &Server, http_addr: &str, listening: tokio::sync::watch::Sender<bool>) {
    let mut phases = server.watch_execution_phase();
    let probe = http_addr.parse::<std::net::SocketAddr>().ok().map(|mut a| {
        if a.ip().is_unspecified() {
            a.set_ip(match a {
                std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        a
    });
    let spawned = std::thread::Builder::new()
        .name("running".into())
        .spawn(move || {
            while let Ok(phase) = phases.blocking_recv() {
                if matches!(phase, ExecutionPhase::Running) {
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while let Some(addr) = probe {
                        let up =
                            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                                .is_ok();
                        if up || Instant::now() > deadline {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    let _ = listening.send(true);
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no thread to follow the server's start; KIngress statuses stay unwritten");
    }
}

/// On SIGTERM Pingora stops accepting and stops reusing idle connections; this sets
/// `envoy_server_state` to draining, waits for in-flight requests to finish (at most
/// `--drain-timeout`), flushes the access log and exits 0.
fn drain_on_sigterm(
    server: &Server,
    in_flight: Arc<AtomicUsize>,
    access_log: Arc<AccessLog>,
    (lifecycle, drain): (Arc<Lifecycle>, Duration),
) {
    let mut phases = server.watch_execution_phase();
    let spawned = std::thread::Builder::new()
        .name("drain".into())
        .spawn(move || {
            while let Ok(phase) = phases.blocking_recv() {
                if matches!(phase, ExecutionPhase::GracefulTerminate) {
                    lifecycle.start_draining();
                    let deadline = Instant::now() + drain;
                    tracing::info!(in_flight = in_flight.load(Ordering::Relaxed), drain_timeout = ?drain, "SIGTERM: draining in-flight requests");
                    while in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    let left = in_flight.load(Ordering::Relaxed);
                    tracing::info!(left, "drain done; exiting");
                    access_log.flush(Duration::from_secs(1));
                    std::process::exit(0);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no drain thread; SIGTERM will wait the whole grace period");
    }
}
