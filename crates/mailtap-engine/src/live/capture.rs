//! Setting up and tearing down what the workers read from: one worker
//! per (interface, queue), pinned to a core; the XDP steering program per
//! interface with one AF_XDP socket per queue, or AF_PACKET rings in one
//! fanout group per interface; the kernel bypass maps (XDP program or
//! AF_PACKET socket filter).

use crate::bypass::interface_has_addresses;
use crate::config::EngineConfig;
use crate::live::{CaptureKind, LiveBypass, LiveConfig, LiveSummary};
use crate::summary::EngineError;
use mailtap_capture::afpacket::{Fanout, PacketRing};
use mailtap_capture::afxdp::XdpQueue;
use mailtap_capture::bypass::{BypassAction, BypassMap, SocketBypass};
use mailtap_capture::steering::{SteeringConfig, SteeringProgram};
use mailtap_capture::{CaptureError, QueueCounters, RxPacket};
use std::time::Duration;

/// One receive queue, whichever the mechanism. One per worker, moved
/// once into its thread: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub(super) enum Source {
    Xdp(XdpQueue),
    Packet(PacketRing),
}

impl Source {
    #[inline]
    pub(super) fn poll_batch<F: FnMut(RxPacket<'_>)>(
        &mut self,
        max: usize,
        timeout: Duration,
        f: F,
    ) -> Result<usize, CaptureError> {
        match self {
            Source::Xdp(q) => q.poll_batch(max, timeout, f),
            Source::Packet(r) => r.poll_batch(max, timeout, f),
        }
    }
    pub(super) fn counters(&mut self) -> QueueCounters {
        match self {
            Source::Xdp(q) => q.counters(),
            Source::Packet(r) => r.counters(),
        }
    }
    pub(super) fn zero_copy(&self) -> bool {
        matches!(self, Source::Xdp(q) if q.zero_copy())
    }
}

/// Where a worker's packets come from and which core it runs on.
pub(super) struct WorkerPlan {
    pub(super) interface: String,
    pub(super) queue: u32,
    pub(super) core: Option<core_affinity::CoreId>,
}

/// Workers: one per (interface, queue), worker i on `live.cores[i % len]`
/// or else the i-th available core. An error when an interface does not
/// exist or there is no queue at all.
pub(super) fn plan_workers(live: &LiveConfig) -> Result<Vec<WorkerPlan>, EngineError> {
    let mut plans = Vec::new();
    for ifname in &live.interfaces {
        if let Err(e) = mailtap_capture::ifindex(ifname) {
            return Err(EngineError::Capture(e));
        }
        let queues: Vec<u32> = match &live.queues {
            Some(q) => q.clone(),
            None => (0..mailtap_capture::rx_queue_count(ifname) as u32).collect(),
        };
        for q in queues {
            plans.push(WorkerPlan {
                interface: ifname.clone(),
                queue: q,
                core: None,
            });
        }
    }
    let available = core_affinity::get_core_ids().unwrap_or_default();
    for (i, p) in plans.iter_mut().enumerate() {
        p.core = match &live.cores {
            Some(c) if !c.is_empty() => Some(core_affinity::CoreId { id: c[i % c.len()] }),
            _ if !available.is_empty() => Some(available[i % available.len()]),
            _ => None,
        };
    }
    if plans.is_empty() {
        return Err(EngineError::Capture(CaptureError::new(
            "live capture",
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "no queues to capture on"),
        )));
    }
    Ok(plans)
}

/// What stays with the run's thread while the workers read their
/// [`Source`]s: the steering programs (detached at the end) and the
/// kernel bypass maps and socket filter.
pub(super) struct Capture {
    pub(super) socket_bypass: Option<SocketBypass>,
    /// Every kernel bypass map, for each worker's flow table.
    pub(super) bypass_maps: Vec<BypassMap>,
    pub(super) steering: Vec<SteeringProgram>,
}

impl Capture {
    /// Attaches the steering programs (AF_XDP) or loads the socket filter
    /// (AF_PACKET), and opens one source per plan, in plan order.
    pub(super) fn open(
        cfg: &EngineConfig,
        live: &LiveConfig,
        plans: &[WorkerPlan],
    ) -> Result<(Capture, Vec<Source>), EngineError> {
        let mut capture = Capture {
            socket_bypass: None,
            bypass_maps: Vec::new(),
            steering: Vec::new(),
        };
        let mut sources = Vec::with_capacity(plans.len());
        let kernel_bypass = live.bypass != LiveBypass::Off && cfg.flow.bypass;
        match live.capture {
            CaptureKind::AfXdp => {
                capture.open_xdp(cfg, live, plans, kernel_bypass, &mut sources)?
            }
            CaptureKind::AfPacket => {
                capture.open_packet(live, plans, kernel_bypass, &mut sources)?
            }
        }
        Ok((capture, sources))
    }

    fn open_xdp(
        &mut self,
        cfg: &EngineConfig,
        live: &LiveConfig,
        plans: &[WorkerPlan],
        kernel_bypass: bool,
        sources: &mut Vec<Source>,
    ) -> Result<(), EngineError> {
        let a = &cfg.analyzers;
        let mut ports: Vec<u16> = a
            .smtp
            .ports
            .iter()
            .chain(&a.pop3.ports)
            .chain(&a.imap.ports)
            .copied()
            .collect();
        if let Some(ace) = &cfg.ace {
            ports.extend(&ace.ports);
        }
        ports.sort_unstable();
        ports.dedup();
        let max_queue = plans.iter().map(|p| p.queue).max().unwrap_or(0);
        let scfg = SteeringConfig {
            ports,
            all_tcp: live.xdp_all_tcp,
            max_queues: live
                .interfaces
                .iter()
                .map(|i| mailtap_capture::rx_queue_count(i) as u32)
                .fold(max_queue + 1, u32::max),
            bypass_action: BypassAction::Pass,
            bypass_entries: if kernel_bypass {
                live.bypass_connections
            } else {
                0
            },
        };
        for ifname in &live.interfaces {
            let scfg = SteeringConfig {
                bypass_action: bypass_action(live.bypass, ifname),
                ..scfg.clone()
            };
            let s = SteeringProgram::attach(ifname, live.xdp_mode, &scfg)
                .map_err(EngineError::Capture)?;
            tracing::info!(
                %ifname,
                mode = ?s.mode(),
                bypass = if kernel_bypass { scfg.bypass_action.to_string() } else { "off".into() },
                "XDP steering program attached"
            );
            self.bypass_maps.extend(s.bypass_map());
            self.steering.push(s);
        }
        for p in plans {
            let prog = self
                .steering
                .iter()
                .find(|s| s.ifname() == p.interface)
                .expect("one program per interface");
            let q = XdpQueue::open(&p.interface, p.queue, &live.xdp, Some(prog), prog.mode())
                .map_err(EngineError::Capture)?;
            sources.push(Source::Xdp(q));
        }
        Ok(())
    }

    fn open_packet(
        &mut self,
        live: &LiveConfig,
        plans: &[WorkerPlan],
        kernel_bypass: bool,
        sources: &mut Vec<Source>,
    ) -> Result<(), EngineError> {
        // The socket filter that skips bypassed packets; without it
        // (no CAP_BPF) the shard skips their payload itself.
        if kernel_bypass {
            match SocketBypass::load(live.ring.effective_snaplen(), live.bypass_connections) {
                Ok(b) => {
                    self.bypass_maps.push(b.map());
                    self.socket_bypass = Some(b);
                }
                Err(e) => tracing::warn!(
                    "kernel bypass off (the shards skip bypassed payload themselves): {e}"
                ),
            }
        }
        // One fanout group per interface; the id mixes in the pid so
        // two sensors on one host do not join each other's group.
        let pid = std::process::id() as u16;
        for p in plans {
            let group = pid
                ^ (live
                    .interfaces
                    .iter()
                    .position(|i| *i == p.interface)
                    .unwrap_or(0) as u16)
                    .wrapping_mul(0x9e37);
            let mut rc = live.ring.clone();
            rc.fanout = Some(Fanout {
                group_id: group,
                mode: live.fanout_mode,
                defrag: true,
            });
            let r = PacketRing::open(&p.interface, &rc).map_err(EngineError::Capture)?;
            if let Some(b) = &self.socket_bypass {
                if let Err(e) = r.attach_bypass(b) {
                    // Its packets still come; the shard skips
                    // their payload.
                    tracing::warn!(interface = %p.interface, queue = p.queue, "kernel bypass off on this ring: {e}");
                }
            }
            sources.push(Source::Packet(r))
        }
        Ok(())
    }

    /// After the workers are done: the socket filter's and the steering
    /// programs' counters into `summary`; unloads the filter and detaches
    /// the programs.
    pub(super) fn close(mut self, summary: &mut LiveSummary) {
        summary.socket_bypass = self.socket_bypass.as_ref().map(|b| b.counters());
        drop(self.socket_bypass.take());
        for s in self.steering.drain(..) {
            summary
                .steering
                .push((s.ifname().to_string(), s.mode(), s.counters()));
            if let Err(e) = s.detach() {
                tracing::error!("detaching the XDP program: {e}");
            }
        }
    }
}

/// The XDP action for bypassed packets on `ifname`.
fn bypass_action(mode: LiveBypass, ifname: &str) -> BypassAction {
    match mode {
        LiveBypass::Drop => BypassAction::Drop,
        LiveBypass::Pass | LiveBypass::Off => BypassAction::Pass,
        LiveBypass::Auto if interface_has_addresses(ifname) => BypassAction::Pass,
        LiveBypass::Auto => BypassAction::Drop,
    }
}
