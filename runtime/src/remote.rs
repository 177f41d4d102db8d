//! The two ends of an edge that crosses hosts (see [`crate::net`]).
//!
//! * [`NetSend`], on the producer's rank, is an ordinary consumer of the
//!   producer: it takes each micro-batch's buffer, copies it to the host
//!   (on the producer device's copy thread, beside its compute) and hands
//!   it to the hub, which queues it on the link without waiting. It does
//!   *not* credit the producer then: the credit comes back from the other
//!   rank once the consumers there have used the data, so the producer's
//!   `credits` buffers bound the micro-batches in flight end to end
//!   (device, host copy, wire, remote upload, remote consumer).
//! * [`NetRecv`], on the consumer's rank, is an ordinary producer for its
//!   consumers: it uploads each arriving tensor to the consumers' device
//!   (or hands the host tensor to the root's sink) and, when every
//!   consumer has credited a micro-batch, sends one credit back.
//! * Wire edges ([`crate::net`], "Wires"): the sender queues the device
//!   tensor itself on the edge's [`Wire`] and sends only a header; the
//!   receiving rank posts the receive on its link thread and hands the
//!   [`NetRecv`] a tensor already on the consumers' device.

use crate::actors::{Credit, Data, Event, HostData, Route};
use crate::error::RuntimeError;
use crate::net::{Hub, Msg};
use crate::trace::Recorder;
use actix::prelude::*;
use crossbeam::channel::Sender;
use hetflow_devices::wire::Wire;
use hetflow_devices::{Device, DeviceTensor};
use hetflow_ops::Tensor;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Data that arrived from another rank for a [`NetRecv`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct Arrived {
    /// Micro-batch.
    pub mb: u64,
    /// The value.
    pub tensor: Arc<Tensor>,
}

/// Data that arrived over a wire, already on the receiving device.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ArrivedOnDevice {
    /// Micro-batch.
    pub mb: u64,
    /// The value.
    pub tensor: DeviceTensor,
}

/// The sending end of a wire, shared by every edge between one pair of
/// devices: the lock keeps each tensor's place on the wire and its header's
/// place on the link in the same order.
pub struct WireSend {
    /// The wire.
    pub wire: Arc<dyn Wire>,
    /// Held from queueing a tensor until its header is queued.
    pub order: Mutex<()>,
}

/// A credit that arrived from another rank for a [`NetSend`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoteCredit;

/// What a cross-host edge is called in errors and traces.
#[derive(Clone)]
pub struct EdgeName {
    /// The value it carries.
    pub value: String,
    /// Session id.
    pub session: u32,
    /// Edge id within the session.
    pub edge: u32,
    /// The other rank.
    pub peer: usize,
}

/// The producer side of a cross-host edge (module docs).
pub struct NetSend {
    /// Which edge.
    pub name: EdgeName,
    /// The hub.
    pub hub: Arc<Hub>,
    /// The producer's device, to download its buffers (none when fed host
    /// tensors by the source).
    pub device: Option<Arc<dyn Device>>,
    /// Who to credit when the other rank hands a buffer back.
    pub upstream: Option<crate::actors::Upstream>,
    /// Failures go here.
    pub events: Sender<Event>,
    /// Timeline.
    pub recorder: Arc<Recorder>,
    /// This rank's label for the trace.
    pub lane: String,
    /// The wire, for an edge between two devices that have one.
    pub wire: Option<Arc<WireSend>>,
    failed: bool,
}

impl NetSend {
    /// A sender for `name`.
    pub fn new(
        name: EdgeName,
        hub: Arc<Hub>,
        device: Option<Arc<dyn Device>>,
        events: Sender<Event>,
        recorder: Arc<Recorder>,
        lane: String,
    ) -> NetSend {
        NetSend {
            name,
            hub,
            device,
            upstream: None,
            events,
            recorder,
            lane,
            wire: None,
            failed: false,
        }
    }

    /// Queues `t` on the wire and sends its header.
    fn ship_on_wire(&mut self, w: Arc<WireSend>, mb: u64, t: DeviceTensor, start: Instant) {
        let header = Msg::WireData {
            edge: self.name.edge,
            mb,
            dtype: t.dtype,
            shape: t.shape.clone(),
        };
        let events = self.events.clone();
        let recorder = self.recorder.clone();
        let (lane, what, peer) = (
            self.lane.clone(),
            format!("send {}", self.name.value),
            self.name.peer,
        );
        let kind = w.wire.kind();
        let done = Box::new(move |r: hetflow_devices::Result<()>| match r {
            Err(e) => {
                let _ = events.send(Event::Failed(RuntimeError::Op {
                    node: what,
                    op: format!("send ({kind})"),
                    device: format!("rank{peer}"),
                    msg: e.to_string(),
                }));
            }
            Ok(()) if recorder.enabled() => recorder.record_span(
                &what,
                "send",
                "copy",
                &lane,
                "net",
                mb,
                (start, Instant::now()),
                None,
            ),
            Ok(()) => {}
        });
        let sent = {
            let _order = w.order.lock().unwrap_or_else(|e| e.into_inner());
            w.wire.send(t, done);
            self.hub.send(self.name.peer, self.name.session, &header)
        };
        if let Err(e) = sent {
            self.fail(e.to_string());
        }
    }

    fn ship(&mut self, mb: u64, tensor: Arc<Tensor>, start: Instant) {
        let msg = Msg::Data {
            edge: self.name.edge,
            mb,
            tensor,
        };
        if let Err(e) = self.hub.send(self.name.peer, self.name.session, &msg) {
            return self.fail(e.to_string());
        }
        if !self.recorder.enabled() {
            return;
        }
        self.recorder.record_span(
            &format!("send {}", self.name.value),
            "send",
            "copy",
            &self.lane,
            "net",
            mb,
            (start, Instant::now()),
            None,
        );
    }

    fn fail(&mut self, msg: String) {
        self.failed = true;
        let _ = self.events.send(Event::Failed(RuntimeError::Op {
            node: format!("send {}", self.name.value),
            op: "send".into(),
            device: format!("rank{}", self.name.peer),
            msg,
        }));
    }
}

impl Actor for NetSend {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(usize::MAX);
    }
}

impl Handler<Data> for NetSend {
    type Result = ();
    fn handle(&mut self, d: Data, _: &mut Self::Context) {
        if self.failed {
            return;
        }
        let start = Instant::now();
        if let Some(w) = self.wire.clone() {
            return self.ship_on_wire(w, d.mb, d.tensor, start);
        }
        let host = match &self.device {
            Some(dev) => dev.download(&d.tensor),
            None => Err(hetflow_devices::DeviceError::Other(
                "sender without a device got a device buffer".into(),
            )),
        };
        match host {
            Ok(t) => self.ship(d.mb, t, start),
            Err(e) => self.fail(e.to_string()),
        }
    }
}

impl Handler<HostData> for NetSend {
    type Result = ();
    fn handle(&mut self, d: HostData, _: &mut Self::Context) {
        if !self.failed {
            self.ship(d.mb, d.tensor, Instant::now());
        }
    }
}

impl Handler<RemoteCredit> for NetSend {
    type Result = ();
    fn handle(&mut self, _: RemoteCredit, _: &mut Self::Context) {
        if let Some(up) = &self.upstream {
            up.producer.do_send(Credit { route: up.route });
        }
    }
}

/// Where a [`NetRecv`] delivers.
pub enum RecvRoute {
    /// A consumer on this rank's device (the tensor is uploaded first).
    Device(Route),
    /// The root's sink (host tensors).
    Host(Recipient<HostData>, usize),
}

/// The consumer side of a cross-host edge (module docs).
pub struct NetRecv {
    /// Which edge.
    pub name: EdgeName,
    /// The hub.
    pub hub: Arc<Hub>,
    /// The consumers' device (None when every route is the sink).
    pub device: Option<Arc<dyn Device>>,
    /// Consumers; a route's index is what its consumer credits.
    pub routes: Vec<RecvRoute>,
    /// Failures go here.
    pub events: Sender<Event>,
    /// Timeline.
    pub recorder: Arc<Recorder>,
    /// This rank's label for the trace.
    pub lane: String,
    consumed: Vec<u64>,
    returned: u64,
    failed: bool,
}

impl NetRecv {
    /// A receiver for `name` delivering to `routes`.
    pub fn new(
        name: EdgeName,
        hub: Arc<Hub>,
        device: Option<Arc<dyn Device>>,
        routes: Vec<RecvRoute>,
        events: Sender<Event>,
        recorder: Arc<Recorder>,
        lane: String,
    ) -> NetRecv {
        let n = routes.len();
        NetRecv {
            name,
            hub,
            device,
            routes,
            events,
            recorder,
            lane,
            consumed: vec![0; n],
            returned: 0,
            failed: false,
        }
    }

    fn fail(&mut self, msg: String) {
        self.failed = true;
        let _ = self.events.send(Event::Failed(RuntimeError::Op {
            node: format!("receive {}", self.name.value),
            op: "receive".into(),
            device: self
                .device
                .as_ref()
                .map(|d| d.id().to_string())
                .unwrap_or_else(|| "host".into()),
            msg,
        }));
    }
}

impl Actor for NetRecv {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(usize::MAX);
    }
}

impl Handler<Arrived> for NetRecv {
    type Result = ();
    fn handle(&mut self, a: Arrived, _: &mut Self::Context) {
        if self.failed {
            return;
        }
        let start = Instant::now();
        let mut uploaded = None;
        for r in &self.routes {
            match r {
                RecvRoute::Host(to, slot) => to.do_send(HostData {
                    mb: a.mb,
                    slot: *slot,
                    tensor: a.tensor.clone(),
                }),
                RecvRoute::Device(route) => {
                    if uploaded.is_none() {
                        let res = match &self.device {
                            Some(d) => d.upload(a.tensor.clone()).map_err(|e| e.to_string()),
                            None => Err("no device to upload to".into()),
                        };
                        match res {
                            Ok(t) => uploaded = Some(t),
                            Err(e) => return self.fail(e),
                        }
                    }
                    if let Some(t) = &uploaded {
                        route.target.do_send(Data {
                            mb: a.mb,
                            slot: route.slot,
                            tensor: t.clone(),
                        });
                    }
                }
            }
        }
        if !self.recorder.enabled() {
            return;
        }
        self.recorder.record_span(
            &format!("receive {}", self.name.value),
            "receive",
            "copy",
            &self.lane,
            "net",
            a.mb,
            (start, Instant::now()),
            None,
        );
    }
}

impl Handler<ArrivedOnDevice> for NetRecv {
    type Result = ();
    fn handle(&mut self, a: ArrivedOnDevice, _: &mut Self::Context) {
        if self.failed {
            return;
        }
        for r in &self.routes {
            match r {
                RecvRoute::Device(route) => route.target.do_send(Data {
                    mb: a.mb,
                    slot: route.slot,
                    tensor: a.tensor.clone(),
                }),
                RecvRoute::Host(..) => {
                    return self.fail("a wire delivered a device tensor to the host".into())
                }
            }
        }
    }
}

impl Handler<Credit> for NetRecv {
    type Result = ();
    fn handle(&mut self, c: Credit, _: &mut Self::Context) {
        if let Some(n) = self.consumed.get_mut(c.route) {
            *n += 1;
        }
        let all = self.consumed.iter().copied().min().unwrap_or(0);
        while self.returned < all {
            self.returned += 1;
            let msg = Msg::Credit {
                edge: self.name.edge,
            };
            if let Err(e) = self.hub.send(self.name.peer, self.name.session, &msg) {
                return self.fail(e.to_string());
            }
        }
    }
}
