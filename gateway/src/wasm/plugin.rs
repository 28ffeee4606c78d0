//! A loaded plugin: one `WasmPlugin` at one configuration, its compiled module, and its
//! VMs, one per worker thread (created on the thread's first request). A request keeps
//! the VM it started on even if the runtime moves it to another thread: the VM sits
//! behind a mutex that only that VM's callbacks take, for the length of one
//! synchronous call, so a moved request never runs on a VM another thread uses at the
//! same moment.
//!
//! A VM whose call failed (trap, deadline, memory, exit) is dropped and built again for
//! the next request; requests that had contexts in it skip the plugin from then on.
//!
//! A plugin may ask for a new VM itself, as Higress's Go SDK does after a number of
//! requests or when `plugin_vm_memory` passes a threshold (`wasm_need_rebuild` set to
//! `true`). Then new streams start on a new VM while the old one keeps serving the
//! streams it has, and is dropped with the last of them, as Envoy keeps a replaced VM
//! alive for the filters that hold it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use telemetry::stats::{Counter, Gauge, Histogram};
use thread_local::ThreadLocal;

use super::host::{PendingCall, PluginShared, Resolver};
use super::http_call::{self, InFlight};
use super::shared::QueueOwner;
use super::vm::{CompiledModule, Failure, PluginVm, Runtime};
use crate::model::plugin_chain::{Ordered, Phase};

/// The `gateway_wasm_*` series of one plugin.
#[derive(Clone)]
pub struct PluginStats {
    pub calls: Counter,
    /// By [`Failure::reason`]: trap, deadline, memory, exit.
    pub failures: [Counter; 4],
    /// VMs built again: after a failure, or because the plugin asked.
    pub rebuilds: Counter,
    /// Time per callback (ms).
    pub latency: Histogram,
    /// Linear memory of the plugin's live VMs (bytes), all threads.
    pub memory: Gauge,
}

impl PluginStats {
    pub fn failure(&self, f: &Failure) {
        let i = match f {
            Failure::Trap(_) => 0,
            Failure::Deadline => 1,
            Failure::Memory => 2,
            Failure::Exit(_) => 3,
        };
        self.failures[i].inc();
    }
}

pub struct LoadedPlugin {
    pub shared: Arc<PluginShared>,
    pub module: Arc<CompiledModule>,
    pub runtime: Arc<Runtime>,
    pub phase: Phase,
    pub priority: i32,
    pub fail_open: bool,
    pub stats: PluginStats,
    vms: ThreadLocal<Arc<VmSlot>>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

/// A thread's VM of a plugin, and the generation it is at (a rebuild is a new one).
pub struct VmSlot {
    vms: Mutex<Vms>,
    generation: AtomicU64,
    plugin: Weak<LoadedPlugin>,
    /// The tick period the running ticker serves (0: none).
    ticking: AtomicU64,
}

impl LoadedPlugin {
    pub fn new(
        shared: Arc<PluginShared>,
        module: Arc<CompiledModule>,
        runtime: Arc<Runtime>,
        phase: Phase,
        priority: i32,
        fail_open: bool,
        stats: PluginStats,
    ) -> Arc<LoadedPlugin> {
        Arc::new(LoadedPlugin {
            shared,
            module,
            runtime,
            phase,
            priority,
            fail_open,
            stats,
            vms: ThreadLocal::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// This thread's VM slot.
    pub fn slot(self: &Arc<Self>) -> Arc<VmSlot> {
        self.vms
            .get_or(|| {
                Arc::new(VmSlot {
                    vms: Mutex::new(Vms {
                        current: None,
                        retired: Vec::new(),
                        memory: self.stats.memory.clone(),
                    }),
                    generation: AtomicU64::new(0),
                    plugin: Arc::downgrade(self),
                    ticking: AtomicU64::new(0),
                })
            })
            .clone()
    }

    /// Start a VM now (the config loop's check that the module and config work).
    pub fn check(&self) -> Result<(), String> {
        // Its queues notify no one: the data plane's VMs register them again.
        let nobody: Weak<dyn QueueOwner> = Weak::<VmSlot>::new();
        PluginVm::start(&self.runtime, &self.module, self.shared.clone(), nobody).map(drop)
    }
}

/// A slot's VMs: the one new streams start on, and those the plugin asked to replace
/// that still serve the streams they started.
struct Vms {
    current: Option<PluginVm>,
    /// By generation; each is dropped with its last stream.
    retired: Vec<(u64, PluginVm)>,
    /// The plugin's `gateway_wasm_vm_memory_bytes`: what these VMs added is taken
    /// back when they go.
    memory: Gauge,
}

impl Vms {
    /// New streams go to a new VM; the current one keeps its streams (if any).
    fn retire(&mut self, generation: u64) {
        let Some(vm) = self.current.take() else {
            return;
        };
        if vm.live_streams() == 0 {
            self.memory.add(-(vm.reported_memory() as i64));
        } else {
            self.retired.push((generation, vm));
        }
    }

    /// Drop a retired VM (`Some(index)`) or the current one.
    fn drop_vm(&mut self, retired: Option<usize>) {
        let vm = match retired {
            Some(i) => Some(self.retired.swap_remove(i).1),
            None => self.current.take(),
        };
        if let Some(vm) = vm {
            self.memory.add(-(vm.reported_memory() as i64));
        }
    }
}

impl Drop for Vms {
    fn drop(&mut self) {
        let held: u64 = self
            .current
            .iter()
            .chain(self.retired.iter().map(|(_, vm)| vm))
            .map(PluginVm::reported_memory)
            .sum();
        self.memory.add(-(held as i64));
    }
}

/// The monotonic clock in nanoseconds, for callback times: `Instant::now` and
/// `elapsed` check and normalise a `timespec` on each read and on the subtraction, a
/// hundred-odd instructions per callback this plain arithmetic does without.
fn monotonic_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux (were
    // the call to fail, `t` stays zero and the sample is 0).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    (t.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(t.tv_nsec as u64)
}

/// What running a callback on a slot gave.
pub enum Ran<R> {
    Done(R),
    /// The VM was rebuilt since this stream's context was made: the plugin is skipped.
    Stale,
    Failed(Failure),
}

impl VmSlot {
    /// The plugin's cluster resolver, while the plugin lives.
    pub fn resolver(&self) -> Option<Resolver> {
        self.plugin.upgrade().map(|p| p.shared.resolve.clone())
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Run `f` on the VM, building it first if there is none. `generation`: the stream's
    /// context belongs to that generation (`None`: any, the call makes its own context).
    pub fn run<R>(
        self: &Arc<Self>,
        generation: Option<u64>,
        f: impl FnOnce(&mut PluginVm) -> Result<R, Failure>,
    ) -> Ran<R> {
        let Some(plugin) = self.plugin.upgrade() else {
            return Ran::Stale;
        };
        let mut guard = self.vms.lock().unwrap_or_else(|e| e.into_inner());
        let vms = &mut *guard;
        let current = self.generation();
        // A stream of a VM the plugin asked to replace stays on that VM (whose generation
        // is still the slot's until the new VM is built).
        let retired = match generation {
            Some(g) => match vms.retired.iter().position(|(r, _)| *r == g) {
                Some(i) => Some(i),
                None if g != current => return Ran::Stale,
                None => None,
            },
            None => None,
        };
        if retired.is_none() && vms.current.is_none() {
            if generation.is_some() {
                return Ran::Stale;
            }
            let owner: Arc<dyn QueueOwner> = self.clone();
            match PluginVm::start(
                &plugin.runtime,
                &plugin.module,
                plugin.shared.clone(),
                Arc::downgrade(&owner),
            ) {
                Ok(vm) => {
                    // A slot's first VM is a build; any later one is a rebuild.
                    if current > 0 {
                        plugin.stats.rebuilds.inc();
                    }
                    self.generation.fetch_add(1, Ordering::Relaxed);
                    vms.current = Some(vm);
                }
                Err(e) => {
                    tracing::error!(plugin = %plugin.name(), error = %e, "Wasm VM could not start");
                    plugin.stats.failures[0].inc();
                    return Ran::Failed(Failure::Trap(e));
                }
            }
        }
        let vm = match retired {
            Some(i) => &mut vms.retired[i].1,
            None => match vms.current.as_mut() {
                Some(vm) => vm,
                None => return Ran::Stale,
            },
        };
        let started = monotonic_ns();
        plugin.stats.calls.inc();
        let r = f(vm);
        let took = monotonic_ns().saturating_sub(started);
        plugin.stats.latency.record_ms(Duration::from_nanos(took));
        vm.report_memory(&vms.memory);
        let tick = vm.tick_ms();
        match r {
            Ok(v) => {
                let ticking = match retired {
                    Some(i) => {
                        if vms.retired[i].1.live_streams() == 0 {
                            vms.drop_vm(Some(i));
                        }
                        false
                    }
                    None => {
                        if vm.wants_rebuild() {
                            vms.retire(self.generation());
                            tracing::debug!(plugin = %plugin.name(), "the plugin asked for a new VM (wasm_need_rebuild): new streams get one");
                        }
                        true
                    }
                };
                drop(guard);
                if ticking {
                    self.keep_ticking(tick);
                }
                Ran::Done(v)
            }
            Err(failure) => {
                plugin.stats.failure(&failure);
                tracing::warn!(plugin = %plugin.name(), error = %failure, "Wasm plugin failed; its VM is rebuilt for the next request");
                vms.drop_vm(retired);
                Ran::Failed(failure)
            }
        }
    }

    /// Calls made outside a stream (ticks, queues): their responses go to the root
    /// context when they come.
    pub fn dispatch_detached(self: &Arc<Self>, calls: Vec<PendingCall>) {
        if calls.is_empty() {
            return;
        }
        let Some(resolve) = self.resolver() else {
            return;
        };
        self.detach(
            http_call::dispatch(calls, resolve.as_ref()),
            self.generation(),
        );
    }

    /// Calls on their way whose stream no longer waits: each answer goes to the root
    /// context, without a stream, when it comes. `generation`: the VM that made them
    /// (only it may get their answers; a VM the plugin asked to replace included).
    #[inline]
    pub fn detach(self: &Arc<Self>, calls: Vec<InFlight>, generation: u64) {
        // Most callbacks make none: decided where it is called, without a call.
        if !calls.is_empty() {
            self.detach_all(calls, generation);
        }
    }

    fn detach_all(self: &Arc<Self>, calls: Vec<InFlight>, generation: u64) {
        for call in calls {
            let slot = self.clone();
            tokio::spawn(async move {
                let lost = call.lost();
                let resp = call.response.await.unwrap_or(lost);
                let r = slot.run(Some(generation), |vm| {
                    vm.on_call_response(call.token, resp, call.context, None)?;
                    Ok(vm.take_effects())
                });
                if let Ran::Done(effects) = r {
                    slot.dispatch_detached(effects.calls);
                }
            });
        }
    }

    /// Make sure a ticker serves the period the VM asked for.
    fn keep_ticking(self: &Arc<Self>, tick_ms: u32) {
        let tick = u64::from(tick_ms);
        if tick == 0 || self.ticking.swap(tick, Ordering::Relaxed) == tick {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.ticking.store(0, Ordering::Relaxed);
            return;
        };
        let weak = Arc::downgrade(self);
        handle.spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(tick));
            every.tick().await;
            loop {
                every.tick().await;
                let Some(slot) = weak.upgrade() else { return };
                if slot.ticking.load(Ordering::Relaxed) != tick {
                    return;
                }
                let r = slot.run(None, |vm| {
                    vm.on_tick()?;
                    Ok(vm.take_effects())
                });
                if let Ran::Done(effects) = r {
                    slot.dispatch_detached(effects.calls);
                }
            }
        });
    }
}

impl QueueOwner for VmSlot {
    fn queue_ready(&self, _root: u32, queue: u32) {
        // Called from inside a guest call (the enqueue): the callback runs later.
        let Some(plugin) = self.plugin.upgrade() else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let slot = plugin.slot_of(self);
        handle.spawn(async move {
            if let Some(slot) = slot {
                let _ = slot.run(None, |vm| vm.on_queue_ready(queue));
            }
        });
    }
}

/// Plugins run in the chain's phase / priority order.
impl Ordered for LoadedPlugin {
    fn phase(&self) -> Phase {
        self.phase
    }
    fn priority(&self) -> i32 {
        self.priority
    }
    fn name(&self) -> &str {
        LoadedPlugin::name(self)
    }
}

impl LoadedPlugin {
    /// The `Arc` of a slot of this plugin, found from a reference to it.
    fn slot_of(&self, slot: &VmSlot) -> Option<Arc<VmSlot>> {
        self.vms
            .iter()
            .find(|s| std::ptr::eq(s.as_ref(), slot))
            .cloned()
    }
}
