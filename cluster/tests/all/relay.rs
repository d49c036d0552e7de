//! A UDP relay network for partition tests, no root needed: every node is
//! reached only through relays (a relay listens on a loopback port and
//! forwards each client's datagrams to one target from a socket of that
//! client's own, and the answers back), and a node can be *cut*: every
//! relay then drops every datagram from it or to it, in both directions,
//! until it is healed. QUIC between the nodes sees exactly what a
//! partition looks like: silence.
//!
//! For a cluster: the coordinator is joined through a relay, and each
//! worker advertises a relay in front of its data address (`--advertise`)
//! while binding a known address (`--bind`); all of a worker's traffic
//! leaves from that bound address, so cutting it cuts the worker off from
//! the coordinator and from every other worker.

use std::collections::{HashMap, HashSet};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a relay thread blocks on a read before it looks at the stop flag.
const POLL: Duration = Duration::from_millis(50);

#[derive(Default)]
struct Shared {
    cut: Mutex<HashSet<SocketAddr>>,
    stop: AtomicBool,
    forwarded: AtomicU64,
    dropped: AtomicU64,
}

impl Shared {
    fn blocked(&self, a: SocketAddr, b: SocketAddr) -> bool {
        let cut = self.cut.lock().unwrap();
        cut.contains(&a) || cut.contains(&b)
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// Relays that can cut nodes off; every thread stops on drop.
#[derive(Default)]
pub(crate) struct Net {
    shared: Arc<Shared>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Net {
    pub(crate) fn new() -> Net {
        Net::default()
    }

    /// Starts a relay on a free loopback port that forwards to `target`;
    /// returns the relay's address.
    pub(crate) fn relay(&self, target: SocketAddr) -> SocketAddr {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        front.set_read_timeout(Some(POLL)).unwrap();
        let addr = front.local_addr().unwrap();
        let (shared, threads) = (self.shared.clone(), self.threads.clone());
        let handle = std::thread::Builder::new()
            .name(format!("relay-{addr}"))
            .spawn(move || forward(front, target, shared, threads))
            .unwrap();
        self.threads.lock().unwrap().push(handle);
        addr
    }

    /// Cuts the node whose datagrams leave from `node` off: nothing from
    /// it or to it passes any relay.
    pub(crate) fn cut(&self, node: SocketAddr) {
        self.shared.cut.lock().unwrap().insert(node);
    }

    /// Lets the node's traffic pass again.
    pub(crate) fn heal(&self, node: SocketAddr) {
        self.shared.cut.lock().unwrap().remove(&node);
    }

    /// Datagrams forwarded and dropped so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.shared.forwarded.load(Ordering::SeqCst), self.shared.dropped.load(Ordering::SeqCst))
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Threads end within one poll; those started meanwhile are joined too.
        for _ in 0..10 {
            let batch: Vec<_> = self.threads.lock().unwrap().drain(..).collect();
            if batch.is_empty() {
                break;
            }
            for t in batch {
                let _ = t.join();
            }
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Client to target: one upstream socket per client, whose answers go
/// back to that client from the relay's own address.
fn forward(
    front: UdpSocket,
    target: SocketAddr,
    shared: Arc<Shared>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
) {
    let mut upstreams: HashMap<SocketAddr, UdpSocket> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    while !shared.stopped() {
        let (n, client) = match front.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) if is_timeout(&e) => continue,
            // An ICMP error for an earlier answer (a client went away).
            Err(_) => continue,
        };
        if shared.blocked(client, target) {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let up = upstreams.entry(client).or_insert_with(|| {
            let up = UdpSocket::bind("127.0.0.1:0").unwrap();
            up.connect(target).unwrap();
            up.set_read_timeout(Some(POLL)).unwrap();
            let (back, reader, shared) =
                (front.try_clone().unwrap(), up.try_clone().unwrap(), shared.clone());
            let handle = std::thread::Builder::new()
                .name(format!("relay-back-{client}"))
                .spawn(move || answer(reader, back, client, target, shared))
                .unwrap();
            threads.lock().unwrap().push(handle);
            up
        });
        // A send to a target that is not listening (yet) is lost, as on a network.
        if up.send(&buf[..n]).is_ok() {
            shared.forwarded.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Target to client, for one client.
fn answer(
    up: UdpSocket,
    front: UdpSocket,
    client: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
) {
    let mut buf = vec![0u8; 65_536];
    while !shared.stopped() {
        let n = match up.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if is_timeout(&e) => continue,
            Err(_) => continue,
        };
        if shared.blocked(client, target) {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if front.send_to(&buf[..n], client).is_ok() {
            shared.forwarded.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[test]
fn a_relay_forwards_both_ways_and_a_cut_node_hears_nothing() {
    let net = Net::new();
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    server.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let relay = net.relay(server.local_addr().unwrap());
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut buf = [0u8; 16];
    let round_trip = |buf: &mut [u8; 16]| -> bool {
        client.send_to(b"ping", relay).unwrap();
        let Ok((n, from)) = server.recv_from(buf) else { return false };
        assert_eq!(&buf[..n], b"ping");
        server.send_to(b"pong", from).unwrap();
        client.recv_from(buf).is_ok_and(|(n, from)| from == relay && n == 4)
    };
    assert!(round_trip(&mut buf), "the relay does not forward");
    net.cut(client.local_addr().unwrap());
    assert!(!round_trip(&mut buf), "a cut node still gets through");
    // Answers to a cut node are dropped too.
    net.heal(client.local_addr().unwrap());
    client.send_to(b"ping", relay).unwrap();
    let (_, from) = server.recv_from(&mut buf).unwrap();
    net.cut(client.local_addr().unwrap());
    server.send_to(b"pong", from).unwrap();
    assert!(client.recv_from(&mut buf).is_err(), "an answer reached a cut node");
    net.heal(client.local_addr().unwrap());
    assert!(round_trip(&mut buf), "healing does not let it through again");
    let (forwarded, dropped) = net.counts();
    // (The last answer may be counted just after it arrived.)
    assert!(forwarded >= 4 && dropped >= 2, "{forwarded} forwarded, {dropped} dropped");
}
