//! The relays a session asks for, started and stopped by its actor: their events (idle, a side
//! never heard from) come back through the session's own queue.

use super::{Actor, Command};
use crate::server::session::effects::RelayOp;

impl Actor {
    pub(super) async fn relay(&mut self, op: RelayOp) {
        match op {
            RelayOp::Stop { stream } => {
                self.relays.remove(&stream);
            }
            RelayOp::SetPeer {
                stream,
                side,
                admission,
            } => {
                if let Some(relay) = self.relays.get(&stream) {
                    relay.set_peer(side, admission);
                }
            }
            RelayOp::Start {
                stream,
                generation,
                device,
                spec,
            } => {
                // The relay's task tells this session when it frees itself.
                let me = self.me.clone();
                let on_event = move |event| {
                    if let Some(tx) = me.upgrade() {
                        // Waits for room: a lost notice would leave the stream on dead ports.
                        tokio::spawn(async move {
                            let _ = tx
                                .send(Command::Relay {
                                    stream,
                                    generation,
                                    event,
                                })
                                .await;
                        });
                    }
                };
                // (a caller device's relay first lets go of the port it takes again)
                if device {
                    self.relays.remove(&stream);
                }
                let fx = match self.env.relay.allocate(spec, on_event).await {
                    Ok(relay) => {
                        let (current, fx) = if device {
                            self.core.device_relay_ready(stream, relay.ports)
                        } else {
                            self.core.relay_ready(stream, generation, relay.ports)
                        };
                        if current {
                            self.relays.insert(stream, relay);
                        }
                        fx
                    }
                    Err(e) if device => self.core.device_relay_failed(stream, &e),
                    Err(e) => self.core.relay_failed(stream, generation, &e),
                };
                let _ = Box::pin(self.apply(fx)).await;
            }
        }
    }
}
