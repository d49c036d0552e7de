//! The data plane: records between workers, one QUIC stream per channel.
//!
//! The sending subtask writes each message on its own stream (opened on
//! first use, over one connection per peer worker); the receiving worker
//! reads it on a thread of its own and hands it to the subtask's bounded
//! input. When that input is full the reader stops reading, QUIC's
//! per-stream flow control runs out of credit and the sender's write waits:
//! backpressure from the slowest consumer back to the sources, with at most
//! one stream window buffered per channel.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use flinkw_host::runtime::{
    ChannelId, Disconnected, InputSender, Message, RemoteChannel, decode_message, encode_message,
};
use serde::{Deserialize, Serialize};

use crate::control::{read_frame, read_raw, write_frame};
use crate::tls::SERVER_NAME;

/// The largest message on a data stream (a batch is far smaller).
const MAX_MESSAGE: usize = 256 << 20;

/// The first frame of a data stream: which channel it carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StreamHeader {
    job: String,
    attempt: u32,
    /// from task, from subtask, output, to task, to subtask.
    channel: [u32; 5],
}

/// The inputs of one job attempt's subtasks on this worker.
pub type Inputs = Arc<dyn Fn(usize, u32) -> Option<InputSender> + Send + Sync>;

/// A worker's data plane: its QUIC endpoint, connections to peers, and
/// the inputs of the jobs it runs.
pub struct DataPlane {
    endpoint: quinn::Endpoint,
    runtime: tokio::runtime::Handle,
    peers: Mutex<HashMap<SocketAddr, quinn::Connection>>,
    jobs: Mutex<HashMap<(String, u32), Inputs>>,
}

impl DataPlane {
    /// A data plane on `endpoint`; call [`DataPlane::serve`] to accept.
    pub fn new(endpoint: quinn::Endpoint, runtime: tokio::runtime::Handle) -> Arc<DataPlane> {
        Arc::new(DataPlane {
            endpoint,
            runtime,
            peers: Mutex::new(HashMap::new()),
            jobs: Mutex::new(HashMap::new()),
        })
    }

    /// Makes the inputs of a job attempt reachable from other workers.
    pub fn register(&self, job: &str, attempt: u32, inputs: Inputs) {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((job.to_owned(), attempt), inputs);
    }

    /// Forgets a job attempt's inputs.
    pub fn unregister(&self, job: &str, attempt: u32) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).remove(&(job.to_owned(), attempt));
    }

    /// Accepts data connections from peers until the endpoint closes.
    pub async fn serve(self: Arc<Self>) {
        while let Some(incoming) = self.endpoint.accept().await {
            let plane = self.clone();
            tokio::spawn(async move {
                let connection = match incoming.await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "refused a data connection");
                        return;
                    }
                };
                while let Ok(recv) = connection.accept_uni().await {
                    let plane = plane.clone();
                    let spawned = std::thread::Builder::new()
                        .name("flinkw-data-in".into())
                        .spawn(move || plane.receive(recv));
                    if let Err(e) = spawned {
                        tracing::warn!(error = %e, "cannot start a data reader");
                    }
                }
            });
        }
    }

    /// Reads one channel's stream into its subtask's input.
    fn receive(&self, mut recv: quinn::RecvStream) {
        let header: StreamHeader = match self.runtime.block_on(read_frame(&mut recv)) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "a data stream without a valid header");
                return;
            }
        };
        let [_, _, _, task, subtask] = header.channel;
        let inputs = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(header.job.clone(), header.attempt))
            .cloned();
        let Some(input) = inputs.and_then(|f| f(task as usize, subtask)) else {
            tracing::debug!(job = %header.job, "data for a job attempt not running here");
            let _ = recv.stop(quinn::VarInt::from_u32(1));
            return;
        };
        loop {
            let frame = match self.runtime.block_on(read_raw(&mut recv, MAX_MESSAGE)) {
                Ok(f) => f,
                Err(crate::control::FrameError::Closed) => return,
                Err(e) => {
                    tracing::debug!(job = %header.job, error = %e, "a data stream broke");
                    return;
                }
            };
            let message = match decode_message(&frame) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(job = %header.job, error = %e, "dropping a data stream");
                    let _ = recv.stop(quinn::VarInt::from_u32(2));
                    return;
                }
            };
            if input.send(message).is_err() {
                // The subtask is gone (the attempt ended).
                let _ = recv.stop(quinn::VarInt::from_u32(0));
                return;
            }
        }
    }

    /// A channel to a subtask on the worker at `peer`.
    pub fn channel(
        self: &Arc<Self>,
        job: &str,
        attempt: u32,
        id: ChannelId,
        peer: SocketAddr,
    ) -> Box<dyn RemoteChannel> {
        Box::new(RemoteSender {
            plane: self.clone(),
            peer,
            header: StreamHeader {
                job: job.to_owned(),
                attempt,
                channel: [id.from_task, id.from_subtask, id.output, id.to_task, id.to_subtask],
            },
            stream: None,
            buf: Vec::new(),
        })
    }

    async fn connection(&self, peer: SocketAddr) -> Result<quinn::Connection, String> {
        let cached = self.peers.lock().unwrap_or_else(|p| p.into_inner()).get(&peer).cloned();
        if let Some(c) = cached.filter(|c| c.close_reason().is_none()) {
            return Ok(c);
        }
        let connecting = self
            .endpoint
            .connect(peer, SERVER_NAME)
            .map_err(|e| format!("cannot connect to worker {peer}: {e}"))?;
        let c = connecting.await.map_err(|e| format!("cannot connect to worker {peer}: {e}"))?;
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).insert(peer, c.clone());
        Ok(c)
    }
}

/// The sending end of one channel.
struct RemoteSender {
    plane: Arc<DataPlane>,
    peer: SocketAddr,
    header: StreamHeader,
    stream: Option<quinn::SendStream>,
    buf: Vec<u8>,
}

impl RemoteChannel for RemoteSender {
    fn send(&mut self, message: Message) -> Result<(), Disconnected> {
        self.buf.clear();
        self.buf.extend_from_slice(&[0; 4]);
        encode_message(&message, &mut self.buf);
        let len = (self.buf.len() - 4) as u32;
        self.buf[..4].copy_from_slice(&len.to_le_bytes());
        let plane = self.plane.clone();
        let result = plane.runtime.block_on(async {
            if self.stream.is_none() {
                let c = plane.connection(self.peer).await?;
                let mut s = c.open_uni().await.map_err(|e| e.to_string())?;
                write_frame(&mut s, &self.header).await.map_err(|e| e.to_string())?;
                self.stream = Some(s);
            }
            let Some(s) = self.stream.as_mut() else { return Err("no stream".to_owned()) };
            s.write_all(&self.buf).await.map_err(|e| e.to_string())
        });
        result.map_err(|e| {
            tracing::warn!(peer = %self.peer, error = %e, "a data channel broke");
            Disconnected
        })
    }
}

impl Drop for RemoteSender {
    fn drop(&mut self) {
        if let Some(s) = &mut self.stream {
            let _ = s.finish();
        }
    }
}
