//! The cross-host side of a session: which edges of a plan copy cross
//! hosts (numbered alike on every rank), the wires between devices of
//! different ranks, and the inbox that hands the hub's messages to this
//! rank's edge actors.

use crate::actors::Event;
use crate::error::{Result, RuntimeError};
use crate::net::{Hub, Msg};
use crate::remote::{Arrived, ArrivedOnDevice, NetRecv, NetSend, RemoteCredit, WireSend};
use actix::prelude::*;
use hetflow_devices::wire::{Wire, WireEnd};
use hetflow_devices::Device;
use hetflow_ops::{Graph, ValueId};
use hetflow_scheduler::Plan;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// What the inbox needs to receive over wires.
#[derive(Default)]
pub(super) struct WiresIn {
    /// The receiving device of each wire, by number.
    pub(super) devices: HashMap<u32, Arc<dyn Device>>,
    /// The wire of each edge received over one.
    pub(super) edges: HashMap<u32, u32>,
}

/// What `build` needs to know about a session across hosts.
pub(super) struct NetCtx {
    pub(super) hub: Arc<Hub>,
    pub(super) session: u32,
    /// Per copy of the plan, the rank of each of its devices.
    pub(super) ranks: Vec<Vec<usize>>,
    /// Edge ids are numbered across the copies in build order.
    pub(super) next_edge: u32,
    /// Device kinds that use wires (`SessionOptions::wires`).
    pub(super) wire_kinds: Vec<hetflow_devices::DeviceKind>,
    /// Wire number of each directed pair of plan devices (full names).
    pub(super) wire_pairs: HashMap<(String, String), u32>,
    /// Wires this rank sends on, by number.
    pub(super) wire_send: HashMap<u32, Arc<WireSend>>,
    /// Wires this rank receives on: the receiving device, by number.
    pub(super) wire_recv: HashMap<u32, Arc<dyn Device>>,
    /// The wire of each edge this rank receives over one.
    pub(super) wire_edges: HashMap<u32, u32>,
}

/// The sending end of wire `pair` from `dev` to rank `to`: opened (and
/// announced to `to` with `WireOpen`) by the first edge that uses it.
pub(super) fn open_send_wire(
    n: &mut NetCtx,
    pair: u32,
    dev: &Arc<dyn Device>,
    to: usize,
) -> Result<Arc<WireSend>> {
    if let Some(w) = n.wire_send.get(&pair) {
        return Ok(w.clone());
    }
    let setup =
        |e: String| RuntimeError::Setup(format!("wire from {} to rank {to}: {e}", dev.id()));
    let none = || setup("this device kind has no direct transport".into());
    let id = dev
        .wire_id()
        .ok_or_else(none)?
        .map_err(|e| setup(e.to_string()))?;
    let wire = dev
        .open_wire(WireEnd::Send, &id)
        .ok_or_else(none)?
        .map_err(|e| setup(e.to_string()))?;
    n.hub.send(to, n.session, &Msg::WireOpen { pair, id })?;
    let w = Arc::new(WireSend {
        wire,
        order: Mutex::new(()),
    });
    n.wire_send.insert(pair, w.clone());
    Ok(w)
}

/// Hands the hub's messages for session `id` to this rank's edge actors
/// and its event channel.
pub(super) fn open_inbox(
    hub: &Arc<Hub>,
    id: u32,
    receivers: HashMap<u32, Addr<NetRecv>>,
    senders: HashMap<u32, Addr<NetSend>>,
    wires_in: WiresIn,
    events: crossbeam::channel::Sender<Event>,
) {
    let hosts: Vec<String> = (0..hub.size()).map(|r| hub.host(r).to_string()).collect();
    // The receiving ends, opened as each WireOpen arrives.
    let open_wires: Mutex<HashMap<u32, Arc<dyn Wire>>> = Mutex::new(HashMap::new());
    let fail = {
        let events = events.clone();
        move |what: String| {
            let _ = events.send(Event::Failed(RuntimeError::Network(what)));
        }
    };
    hub.open(
        id,
        Arc::new(move |from: usize, m: Msg| match m {
            Msg::WireOpen { pair, id } => {
                let Some(dev) = wires_in.devices.get(&pair) else {
                    return fail(format!("rank {from} opened wire {pair}, which this rank does not receive on"));
                };
                match dev.open_wire(WireEnd::Recv, &id) {
                    Some(Ok(w)) => {
                        open_wires
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(pair, w);
                    }
                    Some(Err(e)) => fail(format!("opening the wire from rank {from} on {}: {e}", dev.id())),
                    None => fail(format!(
                        "{} has no wire to receive from rank {from} on (its kind has no direct transport)",
                        dev.id()
                    )),
                }
            }
            Msg::WireData {
                edge,
                mb,
                dtype,
                shape,
            } => {
                let wire = wires_in.edges.get(&edge).and_then(|p| {
                    open_wires
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(p)
                        .cloned()
                });
                let (Some(wire), Some(to)) = (wire, receivers.get(&edge)) else {
                    return fail(format!(
                        "rank {from} sent micro-batch {mb} of edge {edge} on a wire this rank has not opened"
                    ));
                };
                let to = to.clone();
                let events = events.clone();
                let kind = wire.kind();
                wire.recv(
                    dtype,
                    shape,
                    Box::new(move |r| match r {
                        Ok(tensor) => to.do_send(ArrivedOnDevice { mb, tensor }),
                        Err(e) => {
                            let _ = events.send(Event::Failed(RuntimeError::Network(format!(
                                "receiving micro-batch {mb} of edge {edge} from rank {from} ({kind}): {e}"
                            ))));
                        }
                    }),
                );
            }
            Msg::Data { edge, mb, tensor } => {
                if let Some(a) = receivers.get(&edge) {
                    a.do_send(Arrived { mb, tensor });
                }
            }
            Msg::Credit { edge } => {
                if let Some(a) = senders.get(&edge) {
                    a.do_send(RemoteCredit);
                }
            }
            Msg::Failed { text } => {
                let host = hosts.get(from).map(String::as_str).unwrap_or("?");
                let _ = events.send(Event::Failed(RuntimeError::Network(format!(
                    "rank {from} (host {host}): {text}"
                ))));
            }
            Msg::Stop => {
                let _ = events.send(Event::Stopped);
            }
            Msg::Control { .. } => {}
        }),
    );
}

/// What a cross-host edge carries.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum EdgeKey {
    /// Plan transfer of value `.0` to device `.1`.
    Transfer(usize, usize),
    /// Graph input `.0` read on device `.1` (sent by the root's source).
    Input(usize, usize),
    /// Graph output slot `.0` (received by the root's sink).
    Output(usize),
}

/// A cross-host edge of one copy of the plan.
pub(super) struct NetEdge {
    pub(super) id: u32,
    pub(super) key: EdgeKey,
    pub(super) value: ValueId,
    pub(super) from_rank: usize,
    pub(super) to_rank: usize,
}

/// The cross-host edges of one copy, in an order every rank computes
/// alike: plan transfers, then graph inputs by (input, device), then
/// outputs by slot.
pub(super) fn net_edges(
    g: &Graph,
    producers: &[Option<hetflow_ops::NodeId>],
    plan: &Plan,
    ranks: &[usize],
    first: u32,
) -> Vec<NetEdge> {
    let mut out = Vec::new();
    let mut push = |key, value, from_rank, to_rank| {
        if from_rank != to_rank {
            out.push(NetEdge {
                id: first + out.len() as u32,
                key,
                value,
                from_rank,
                to_rank,
            });
        }
    };
    for t in &plan.transfers {
        push(
            EdgeKey::Transfer(t.value, t.to),
            ValueId(t.value),
            ranks[t.from],
            ranks[t.to],
        );
    }
    let input_index: HashMap<usize, usize> =
        g.inputs.iter().enumerate().map(|(i, v)| (v.0, i)).collect();
    let mut reads: BTreeSet<(usize, usize)> = BTreeSet::new();
    for (n, node) in g.nodes.iter().enumerate() {
        for v in node.inputs.iter().flatten() {
            if let Some(&i) = input_index.get(&v.0) {
                reads.insert((i, plan.placement[n]));
            }
        }
    }
    for (i, d) in reads {
        push(EdgeKey::Input(i, d), g.inputs[i], 0, ranks[d]);
    }
    for (slot, o) in g.outputs.iter().enumerate() {
        if g.constants.contains_key(o) {
            continue;
        }
        if let Some(p) = producers[o.0] {
            push(EdgeKey::Output(slot), *o, ranks[plan.placement[p.0]], 0);
        }
    }
    out
}
