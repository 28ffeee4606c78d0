//! The `gateway` command line: `run`, `demo`, `validate`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use gateway::proxy::access_log::Target;
use gateway::server::{self, Options};

// `system-alloc` (profiling only) leaves the system allocator, which heaptrack sees.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc commits its arenas eagerly on Linux, and with transparent huge pages a
/// thread's first allocations then make memory resident 2 MiB at a time: about 14 MB of
/// an idle gateway's RSS (34 -> 28 MB for `gateway demo`). The gateway commits on
/// demand instead. The option must be set before the first allocation creates the
/// first arena, so it is set by an ELF constructor, which runs before Rust's runtime
/// (and any Rust allocation) starts. `MIMALLOC_ARENA_EAGER_COMMIT` in the environment
/// still decides when it is set.
#[cfg(all(target_os = "linux", not(feature = "system-alloc")))]
#[used]
#[link_section = ".init_array"]
static COMMIT_ON_DEMAND: extern "C" fn() = {
    extern "C" fn commit_on_demand() {
        // `mi_option_arena_eager_commit` in mimalloc 3's option enum.
        const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
        // SAFETY: getenv with a NUL-terminated literal reads the environment libc set
        // up before constructors run; mi_option_set only stores the value.
        unsafe {
            if libc::getenv(c"MIMALLOC_ARENA_EAGER_COMMIT".as_ptr()).is_null() {
                libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
            }
        }
    }
    commit_on_demand
};

#[derive(Parser)]
#[command(
    name = "gateway",
    version,
    about = "Observability-first API gateway with Higress-shaped config, on Pingora"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve traffic with config from a directory (Higress standalone layout), the
    /// Kubernetes API or Nacos, watched live.
    Run(Box<RunArgs>),
    /// Serve the built-in config for foo.bar.com with an in-process echo upstream.
    Demo(Box<Common>),
    /// Print the McpBridge and WasmPlugin CRDs (what manifests/base/crds.yaml holds).
    Crds,
    /// Check a config directory (or what Nacos holds, with --config); prints
    /// `<file>: <Kind> <ns>/<name>: <field path>: <message>` per problem.
    Validate {
        /// The config directory (configmaps/, ingresses/, mcpbridges/ ...).
        #[arg(required_unless_present = "config", conflicts_with = "config")]
        dir: Option<PathBuf>,
        /// The config store instead of a directory: `nacos://host[:port]`.
        #[arg(long, env = "GATEWAY_CONFIG")]
        config: Option<String>,
        #[command(flatten)]
        nacos: NacosArgs,
    },
}

/// Where Nacos keeps the config (`--config nacos://...`), as Higress standalone's
/// `get-higress.sh -c nacos://...` options say.
#[derive(Args, Clone)]
struct NacosArgs {
    /// Nacos: the user to log in as (`POST /nacos/v1/auth/login`); unset: no login
    /// (Nacos without authentication).
    #[arg(long, env = "GATEWAY_NACOS_USERNAME")]
    nacos_username: Option<String>,
    /// Nacos: the password of --nacos-username.
    #[arg(long, env = "GATEWAY_NACOS_PASSWORD", hide_env_values = true)]
    nacos_password: Option<String>,
    /// Nacos: the namespace id (tenant) holding the config.
    #[arg(
        long,
        env = "GATEWAY_NACOS_NAMESPACE",
        default_value = "higress-system"
    )]
    nacos_namespace: String,
    /// Nacos: a file holding the AES key (exactly 16, 24 or 32 bytes, read as is) that
    /// Secrets are encrypted with (`enc|...`); unset: Secrets are stored in plain text
    /// and an encrypted one is rejected.
    #[arg(long, env = "GATEWAY_NACOS_ENCRYPTION_KEY_FILE")]
    nacos_encryption_key_file: Option<PathBuf>,
    /// Nacos: how often every kind is listed again, to find objects added or removed
    /// without their name index changing (Higress's NACOS_LIST_REFRESH_INTERVAL_SECS).
    #[arg(long, env = "GATEWAY_NACOS_LIST_REFRESH_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    nacos_list_refresh_interval: Duration,
}

impl NacosArgs {
    /// The Nacos options of `--config URL`; errors name the flag at fault.
    fn options(&self, url: &str) -> Result<gateway::sources::nacos::NacosOptions, String> {
        use gateway::sources::nacos::{crypt::Crypt, NacosOptions, ServerAddr};
        let server = ServerAddr::parse(url).map_err(|e| format!("--config {e}"))?;
        let crypt = match &self.nacos_encryption_key_file {
            None => None,
            Some(path) => {
                let key = std::fs::read(path)
                    .map_err(|e| format!("--nacos-encryption-key-file {}: {e}", path.display()))?;
                Some(
                    Crypt::new(key).map_err(|e| {
                        format!("--nacos-encryption-key-file {}: {e}", path.display())
                    })?,
                )
            }
        };
        if self.nacos_list_refresh_interval.is_zero() {
            return Err("--nacos-list-refresh-interval must be above 0".into());
        }
        Ok(NacosOptions {
            server,
            username: self.nacos_username.clone(),
            password: self.nacos_password.clone(),
            namespace: self.nacos_namespace.clone(),
            crypt,
            list_refresh: self.nacos_list_refresh_interval,
        })
    }
}

#[derive(Args)]
struct RunArgs {
    /// Config directory in the Higress standalone layout.
    #[arg(long, env = "GATEWAY_CONFIG_DIR", required_unless_present_any = ["kube", "config"])]
    config_dir: Option<PathBuf>,
    /// Read config from the Kubernetes API (in-cluster or KUBECONFIG).
    #[arg(long, env = "GATEWAY_KUBE", conflicts_with_all = ["config_dir", "config"])]
    kube: bool,
    /// Read config from a config store instead of a directory: `nacos://host[:port]`
    /// (port 8848 by default), as Higress standalone's `-c nacos://...`.
    #[arg(long, env = "GATEWAY_CONFIG", conflicts_with = "config_dir")]
    config: Option<String>,
    #[command(flatten)]
    nacos: NacosArgs,
    /// Kubernetes mode: the gateway's namespace.
    #[arg(long, env = "GATEWAY_NAMESPACE", default_value = "higress-system")]
    namespace: String,
    /// Kubernetes mode: namespaces whose Ingresses are watched (repeatable; default all).
    #[arg(long, env = "GATEWAY_WATCH_NAMESPACE")]
    watch_namespace: Vec<String>,
    /// Kubernetes mode: also take Ingresses without a class.
    #[arg(long, env = "GATEWAY_WATCH_INGRESS_WITHOUT_CLASS")]
    watch_ingress_without_class: bool,
    /// Kubernetes mode: the address (IP or host name) written into the status of the
    /// Ingresses served; unset: status is left alone. The manifests pass the pod's IP.
    #[arg(long, env = "GATEWAY_STATUS_ADDRESS")]
    status_address: Option<String>,
    /// Kubernetes mode: the in-cluster name written as `domainInternal` into the status
    /// of the KIngresses served.
    #[arg(
        long,
        env = "GATEWAY_DOMAIN_INTERNAL",
        default_value = "higress-gateway.higress-system.svc.cluster.local"
    )]
    domain_internal: String,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Clone)]
struct Common {
    /// HTTP listener address.
    #[arg(long, env = "GATEWAY_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: String,
    /// HTTPS listener address, or `off`; bound only once TLS is configured.
    #[arg(long, env = "GATEWAY_HTTPS_ADDR", default_value = "0.0.0.0:8443")]
    https_addr: String,
    /// Cluster-local HTTP listener (KIngress `ClusterLocal` hosts, Istio Gateway servers
    /// on this port), or `off`; Higress's port 8081.
    #[arg(long, env = "GATEWAY_LOCAL_HTTP_ADDR", default_value = "0.0.0.0:8081")]
    local_http_addr: String,
    /// The labels (`key=value`, comma-separated) an Istio Gateway's `selector` must
    /// match for its servers to be ours; Higress's gateway pod labels.
    #[arg(
        long,
        env = "GATEWAY_GATEWAY_SELECTOR",
        default_value = "higress=higress-system-higress-gateway"
    )]
    gateway_selector: String,
    /// Stats listener: /stats/prometheus and /healthz/ready.
    #[arg(long, env = "GATEWAY_STATS_ADDR", default_value = "0.0.0.0:15020")]
    stats_addr: String,
    /// Admin listener: /debug/configz, /config_dump, /clusters. On loopback (the
    /// default) it refuses other peers; bound elsewhere it is read-only unless
    /// --admin-allow-writes.
    #[arg(long, env = "GATEWAY_ADMIN_ADDR", default_value = "127.0.0.1:15000")]
    admin_addr: String,
    /// The console (/ui and /api/console/...) on a listener of its own instead of the
    /// admin listener; every page but the login then needs the console password.
    /// Default: none (the console is on the admin listener).
    #[arg(long, env = "GATEWAY_CONSOLE_ADDR")]
    console_addr: Option<String>,
    /// A trace's page in your tracing UI, `{trace_id}` replaced, linked from the
    /// console's trace view (e.g. `http://localhost:16686/trace/{trace_id}` for Jaeger).
    /// Default: none.
    #[arg(long, env = "GATEWAY_TRACE_UI_URL")]
    trace_ui_url: Option<String>,
    /// Serve the admin writes (POST /healthcheck/fail, /healthcheck/ok, /quitquitquit)
    /// on a non-loopback --admin-addr too.
    #[arg(long, env = "GATEWAY_ADMIN_ALLOW_WRITES")]
    admin_allow_writes: bool,
    /// HTTPS: serve a request whose Host is another TLS domain than the one its SNI
    /// selected (Higress's behaviour) instead of answering 421 Misdirected Request.
    #[arg(long, env = "GATEWAY_ALLOW_MISDIRECTED_HOSTS")]
    allow_misdirected_hosts: bool,
    /// After SIGTERM: how long in-flight requests get before the process exits anyway
    /// (keep it under the pod's termination grace period, 30 s in the manifests).
    #[arg(long, env = "GATEWAY_DRAIN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// HTTP/1: longest a request head may take to arrive from its first byte; a slower
    /// client is disconnected (slowloris). `0s`: no limit (Envoy's default).
    #[arg(long, env = "GATEWAY_REQUEST_HEADERS_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    request_headers_timeout: Duration,
    /// Connections each proxy listener keeps open at most; more are closed at accept
    /// (`envoy_listener_downstream_cx_overflow`). 0: no limit.
    #[arg(long, env = "GATEWAY_MAX_CONNECTIONS", default_value = "0")]
    max_connections: usize,
    /// Requests in progress (all listeners) past which new ones get 503 `envoy
    /// overloaded`. 0: no limit.
    #[arg(long, env = "GATEWAY_MAX_ACTIVE_REQUESTS", default_value = "0")]
    max_active_requests: usize,
    /// Heap size (bytes, or with KiB / MiB / GiB) past which new requests get 503
    /// `envoy overloaded` until it falls back. 0: no limit.
    #[arg(long, env = "GATEWAY_OVERLOAD_MAX_HEAP", default_value = "0", value_parser = parse_size)]
    overload_max_heap: usize,
    /// Worker threads for the HTTP listener (default: one per core).
    #[arg(long, env = "GATEWAY_THREADS")]
    threads: Option<usize>,
    /// Access log: stdout, off, or a file path.
    #[arg(long, env = "GATEWAY_ACCESS_LOG", default_value = "stdout")]
    access_log: String,
    /// Format of the gateway's own log (on stderr).
    #[arg(long, env = "GATEWAY_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// DNS server for `dns` registries, ip:port (default: the system's resolver).
    #[arg(long, env = "GATEWAY_DNS_RESOLVER")]
    dns_resolver: Option<SocketAddr>,
    /// How often `dns` registry names are resolved again.
    #[arg(long, env = "GATEWAY_DNS_REFRESH", default_value = "200s", value_parser = humantime::parse_duration)]
    dns_refresh: Duration,
    /// The floor of McpBridge's `nacosRefreshInterval` / `consulRefreshInterval`
    /// (Higress raises anything below 10 s to 10 s). Shorter values are for tests.
    #[arg(long, env = "GATEWAY_REGISTRY_MIN_REFRESH", default_value = "10s", value_parser = humantime::parse_duration)]
    registry_min_refresh: Duration,
    /// How often Eureka is polled (its full list and each application) and ZooKeeper
    /// rescanned, as Higress does every 30 s.
    #[arg(long, env = "GATEWAY_EUREKA_POLL", default_value = "30s", value_parser = humantime::parse_duration)]
    eureka_poll: Duration,
    /// The Ingress class that is ours.
    #[arg(long, env = "GATEWAY_INGRESS_CLASS", default_value = "higress")]
    ingress_class: String,
    /// How long a removed cluster's series stay in /stats/prometheus.
    #[arg(long, env = "GATEWAY_STATS_RETENTION", default_value = "5m", value_parser = humantime::parse_duration)]
    stats_retention: Duration,
    /// Record per-request stats (`off` only to measure what recording costs).
    #[arg(
        long,
        env = "GATEWAY_STATS_RECORDING",
        value_enum,
        default_value = "on"
    )]
    stats_recording: Switch,
    /// Longest a single Wasm plugin callback may run before it is stopped (the VM is
    /// rebuilt and the plugin's fail strategy applies).
    #[arg(long, env = "GATEWAY_WASM_CALLBACK_DEADLINE", default_value = "1s", value_parser = humantime::parse_duration)]
    wasm_callback_deadline: Duration,
    /// Most linear memory one Wasm VM may have: bytes, or with KiB / MiB / GiB.
    #[arg(long, env = "GATEWAY_WASM_MEMORY_LIMIT", default_value = "1GiB", value_parser = parse_bytes)]
    wasm_memory_limit: usize,
    /// Keep compiled Wasm modules in this directory across restarts.
    #[arg(long, env = "GATEWAY_WASM_CACHE_DIR")]
    wasm_cache_dir: Option<PathBuf>,
    /// Write /tmp/perf-<pid>.map so `perf` names the plugins' compiled functions.
    #[arg(long, env = "GATEWAY_WASM_PERF_MAP")]
    wasm_perf_map: bool,
    /// `on`: a WasmPlugin whose `oci://` image names a plugin the gateway implements
    /// natively (key-auth, key-rate-limit, cluster-key-rate-limit, request-block,
    /// chatgpt-proxy) runs the native filter; `off`: the image is pulled and run.
    #[arg(
        long,
        env = "GATEWAY_WASM_NATIVE_PLUGINS",
        value_enum,
        default_value = "on"
    )]
    wasm_native_plugins: Switch,
    /// OCI registries (`host[:port]`, or a host for all its ports; `*` for all) to pull
    /// Wasm plugin images from over plain HTTP instead of HTTPS; Higress's
    /// `WASM_INSECURE_REGISTRIES`.
    #[arg(long, env = "WASM_INSECURE_REGISTRIES", value_delimiter = ',')]
    wasm_insecure_registries: Vec<String>,
}

/// `1048576`, `512KiB`, `64MiB`, `1GiB`.
fn parse_bytes(s: &str) -> Result<usize, String> {
    Some(parse_size(s)?)
        .filter(|&b| b >= 1 << 16)
        .ok_or_else(|| format!("{:?}: must be at least 64KiB (one Wasm page)", s.trim()))
}

/// `0`, `1048576`, `512KiB`, `64MiB`, `1GiB`.
fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, ""), |i| s.split_at(i));
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number of bytes, e.g. 64MiB"))?;
    let scale = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        u => return Err(format!("{s:?}: unknown unit {u:?} (use KiB, MiB or GiB)")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{s:?}: too large"))
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Switch {
    On,
    Off,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logs(format: LogFormat) {
    // Pingora's debug lines dump request and response headers (credentials in them), so
    // a blanket `RUST_LOG=debug` keeps Pingora at info; naming `pingora` opts in.
    let directives = match std::env::var("RUST_LOG") {
        Ok(v) if v.contains("pingora") => v,
        Ok(v) => format!("{v},pingora_core=info,pingora_proxy=info"),
        // The Nacos SDK logs every push it receives at info.
        Err(_) => "info,pingora_core=warn,pingora_proxy=warn,nacos_sdk=warn".to_string(),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|e| {
        eprintln!("gateway: RUST_LOG {directives:?}: {e}; logging at info");
        tracing_subscriber::EnvFilter::new("info,pingora_core=warn,pingora_proxy=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn options(common: &Common, config_dir: PathBuf) -> Options {
    Options {
        config_dir,
        kube: None,
        nacos: None,
        http_addr: common.http_addr.clone(),
        https_addr: (!common.https_addr.eq_ignore_ascii_case("off"))
            .then(|| common.https_addr.clone()),
        local_http_addr: (!common.local_http_addr.eq_ignore_ascii_case("off"))
            .then(|| common.local_http_addr.clone()),
        gateway_selector: common.gateway_selector.clone(),
        stats_addr: common.stats_addr.clone(),
        admin_addr: common.admin_addr.clone(),
        console_addr: common.console_addr.clone(),
        trace_ui_url: common.trace_ui_url.clone(),
        limits: gateway::server::ServingLimits {
            drain_timeout: common.drain_timeout,
            request_headers_timeout: common.request_headers_timeout,
            max_connections: common.max_connections,
            max_active_requests: common.max_active_requests,
            overload_max_heap: common.overload_max_heap,
            admin_allow_writes: common.admin_allow_writes,
            allow_misdirected_hosts: common.allow_misdirected_hosts,
        },
        threads: common
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        access_log: common
            .access_log
            .parse::<Target>()
            .unwrap_or(Target::Stdout),
        dns_resolver: common.dns_resolver,
        dns_refresh: common.dns_refresh,
        registry_timing: gateway::registry::Timing {
            min_refresh: common.registry_min_refresh,
            poll: common.eureka_poll,
        },
        ingress_class: common.ingress_class.clone(),
        stats_retention: common.stats_retention,
        stats_recording: common.stats_recording == Switch::On,
        demo_tracing: false,
        wasm_limits: gateway::wasm::Limits {
            deadline: common.wasm_callback_deadline,
            memory: common.wasm_memory_limit,
        },
        wasm_cache_dir: common.wasm_cache_dir.clone(),
        wasm_perf_map: common.wasm_perf_map,
        wasm_native_plugins: common.wasm_native_plugins == Switch::On,
        wasm_insecure_registries: common
            .wasm_insecure_registries
            .iter()
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .collect(),
    }
}

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("gateway: {msg}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Crds => {
            print!("{}", gateway::resources::crds::yaml());
            ExitCode::SUCCESS
        }
        Cmd::Validate { dir, config, nacos } => {
            let (checked, what) = match (dir, config) {
                (Some(dir), _) => (
                    gateway::validate::check_dir(&dir).map_err(|e| e.to_string()),
                    dir.display().to_string(),
                ),
                (None, Some(url)) => match nacos.options(&url) {
                    Err(e) => return fail(2, e),
                    Ok(o) => (validate_nacos(&o), o.describe()),
                },
                (None, None) => return fail(2, "a directory or --config is needed"),
            };
            match checked {
                Err(e) => fail(2, e),
                Ok(problems) if problems.is_empty() => {
                    println!("{what}: valid");
                    ExitCode::SUCCESS
                }
                Ok(problems) => {
                    for p in problems {
                        println!("{p}");
                    }
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Run(args) => {
            init_logs(args.common.log_format);
            let opts = if let Some(url) = &args.config {
                let mut o = options(&args.common, PathBuf::from("."));
                match args.nacos.options(url) {
                    Ok(n) => o.nacos = Some(n),
                    Err(e) => return fail(2, e),
                }
                o
            } else if args.kube {
                let mut o = options(&args.common, PathBuf::from("."));
                o.kube = Some(gateway::sources::kube::KubeOptions {
                    namespace: args.namespace.clone(),
                    watch_namespaces: args.watch_namespace.clone(),
                    ingress_class: args.common.ingress_class.clone(),
                    watch_without_class: args.watch_ingress_without_class,
                    status_address: args.status_address.clone().filter(|a| !a.is_empty()),
                    domain_internal: args.domain_internal.clone(),
                });
                o
            } else {
                let dir = args.config_dir.clone().unwrap_or_default();
                if let Err(e) = std::fs::read_dir(&dir) {
                    return fail(
                        2,
                        format!("{}: not a readable directory: {e}", dir.display()),
                    );
                }
                options(&args.common, dir)
            };
            match server::run(opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(2, format!("{e:#}")),
            }
        }
        Cmd::Demo(common) => {
            init_logs(common.log_format);
            match demo(&common) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(2, format!("{e:#}")),
            }
        }
    }
}

/// `gateway validate --config nacos://...`: one read of everything Nacos holds.
fn validate_nacos(o: &gateway::sources::nacos::NacosOptions) -> Result<Vec<String>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(gateway::validate::check_nacos(o))
        .map_err(|e| e.to_string())
}

fn demo(common: &Common) -> anyhow::Result<()> {
    let echo = std::net::TcpListener::bind("127.0.0.1:0")?;
    echo.set_nonblocking(true)?;
    let echo_addr = echo.local_addr()?;
    std::thread::Builder::new()
        .name("demo-echo".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async move {
                    if let Ok(l) = tokio::net::TcpListener::from_std(echo) {
                        gateway::demo::serve_echo(l).await;
                    }
                });
            }
        })?;
    let dir = std::env::temp_dir().join(format!("gateway-demo-{}", std::process::id()));
    gateway::demo::write_config(&dir, echo_addr)?;
    let port = common.http_addr.rsplit(':').next().unwrap_or("8080");
    let https_port = common.https_addr.rsplit(':').next().unwrap_or("8443");
    let https_line = if common.https_addr.eq_ignore_ascii_case("off") {
        String::new()
    } else {
        format!(
            "  curl -sk --resolve {host}:{https_port}:127.0.0.1 'https://{host}:{https_port}/get?foo=bar'   (self-signed)\n",
            host = gateway::demo::DEMO_HOST
        )
    };
    let admin = &common.admin_addr;
    let console = common.console_addr.as_deref().unwrap_or(admin);
    let stats_port = common.stats_addr.rsplit(':').next().unwrap_or("15020");
    eprintln!(
        "\ngateway demo: echo upstream on {echo_addr}, config in {dir}/ (edit it: changes apply live)\n\
         console: http://{console}/ui   (live traffic, latency, traces and the config)\n\
         try:\n  curl -s 'http://localhost:{port}/get?foo=bar' -H 'Host: {host}'\n{https_line}  \
         curl -s http://localhost:{stats_port}/stats/prometheus\n  \
         curl -s http://{admin}/debug/configz\n  \
         curl -s http://{admin}/debug/traces      (every request is traced; set tracing in\n  \
         \x20                                      configmaps/higress-config.yaml to export)\n",
        dir = dir.display(),
        host = gateway::demo::DEMO_HOST,
    );
    let mut opts = options(common, dir);
    opts.demo_tracing = true;
    server::run(opts)
}
