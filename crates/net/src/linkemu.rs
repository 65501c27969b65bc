//! A userspace link emulator for tests and the devnet: one TCP relay on loopback in front of a
//! node, delaying every chunk it forwards by a latency with jitter, and a chunk by a
//! retransmission timeout with the loss probability (TCP does not lose bytes; a lost segment
//! costs a resend). The node advertises the relay's address (`NetConfig::external_addrs`), so
//! every connection to it, discovery's included, crosses the relay.
//!
//! A [`Partition`] shared by the relays cuts the network in two sides for a while: the
//! connections between the sides are closed and new ones refused until it heals (a new
//! connection whose dialer cannot be told is refused too while it lasts). The side of
//! a connection's dialer is found from the process that owns the dialing socket (Linux
//! `/proc`), so it needs the nodes to be separate processes registered with
//! [`Partition::register`].
//!
//! Everything is bounded: a relay stops accepting when dropped, and closes the connections it
//! relays; the relay threads end with their connections.

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

/// One link's behaviour.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Link {
    /// One-way delay of every chunk.
    pub latency: Duration,
    /// The delay varies uniformly within plus or minus this.
    pub jitter: Duration,
    /// Probability that a chunk is lost once (and resent), 0 to 1.
    pub loss: f64,
}

impl Link {
    /// A lost segment is resent after the minimum retransmission timeout plus a round trip.
    pub fn resend(&self) -> Duration {
        Duration::from_millis(200) + self.latency * 2
    }

    /// The delay of one chunk, from two uniform draws in [0, 1).
    fn delay(&self, jitter_draw: f64, loss_draw: f64) -> Duration {
        let jitter = self.jitter.as_secs_f64() * (2.0 * jitter_draw - 1.0);
        let mut delay = (self.latency.as_secs_f64() + jitter).max(0.0);
        if loss_draw < self.loss {
            delay += self.resend().as_secs_f64();
        }
        Duration::from_secs_f64(delay)
    }
}

/// xorshift64*: enough randomness for jitter and loss.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One relayed connection: the dialer's side (if known), the listener's side, both sockets, and
/// how many of its two directions ended (2: closed, forgotten).
#[derive(Debug)]
struct Conn {
    from: Option<u8>,
    to: u8,
    inbound: TcpStream,
    outbound: TcpStream,
    ended: AtomicU8,
}

impl Conn {
    fn close(&self) {
        let _ = (self.inbound.shutdown(Shutdown::Both), self.outbound.shutdown(Shutdown::Both));
    }

    fn is_open(&self) -> bool {
        self.ended.load(Ordering::Relaxed) < 2
    }
}

/// Cuts the relayed network in two sides while active.
#[derive(Debug, Default)]
pub struct Partition {
    active: AtomicBool,
    /// Side of each node process, by pid.
    sides: Mutex<HashMap<u32, u8>>,
    /// Relayed connections not known to be closed.
    conns: Mutex<Vec<Arc<Conn>>>,
    /// Connections closed when the partition began.
    cut: AtomicU64,
    /// Connections refused while it was active.
    refused: AtomicU64,
    /// Connections whose dialer could not be told (not a registered process).
    unknown: AtomicU64,
}

impl Partition {
    /// A partition, not active.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The node process `pid` is on `side`.
    pub fn register(&self, pid: u32, side: u8) {
        if let Ok(mut s) = self.sides.lock() {
            s.insert(pid, side);
        }
    }

    /// Cuts the sides apart: closes every relayed connection between them.
    pub fn begin(&self) {
        self.active.store(true, Ordering::SeqCst);
        let Ok(mut conns) = self.conns.lock() else { return };
        conns.retain(|c| {
            if c.is_open() && c.from.is_some_and(|f| f != c.to) {
                c.close();
                self.cut.fetch_add(1, Ordering::Relaxed);
            }
            c.is_open()
        });
    }

    /// Heals the partition: new connections between the sides are relayed again.
    pub fn end(&self) {
        self.active.store(false, Ordering::SeqCst);
    }

    /// Whether the sides are cut apart now.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    /// Connections closed when it began, refused while active, and relayed with a dialer not
    /// told apart.
    pub fn counts(&self) -> (u64, u64, u64) {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (r(&self.cut), r(&self.refused), r(&self.unknown))
    }

    /// The side of the process that dialled `dialer` (a loopback socket address) to `relay`.
    fn side_of(&self, dialer: SocketAddr, relay: SocketAddr) -> Option<u8> {
        let sides = self.sides.lock().ok()?.clone();
        if sides.is_empty() {
            return None;
        }
        let inode = socket_inode(dialer, relay)?;
        let link = format!("socket:[{inode}]");
        sides.into_iter().find_map(|(pid, side)| {
            let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
            fds.flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == &*link))
                .then_some(side)
        })
    }
}

/// The inode of the IPv4 TCP socket bound to `local` and connected to `remote` (`/proc/net/tcp`).
fn socket_inode(local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => {
            Some(format!("{:08X}:{:04X}", u32::from_le_bytes(v4.ip().octets()), v4.port()))
        }
        SocketAddr::V6(_) => None,
    };
    let (l, r) = (hex(local)?, hex(remote)?);
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(1) == Some(&l.as_str()) && f.get(2) == Some(&r.as_str()))
            .then(|| f.get(9)?.parse().ok())
            .flatten()
            .filter(|inode| *inode != 0)
    })
}

/// A relay in front of one node: every connection accepted on its loopback port is forwarded
/// to the node's port through the link. Dropping it stops it and closes its connections.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<Arc<Conn>>>>,
}

impl Relay {
    /// A relay on a free loopback port to `127.0.0.1:target`; the node behind it is on
    /// `side` of `partition`.
    pub fn start(
        target: u16,
        link: Link,
        seed: u64,
        side: u8,
        partition: Arc<Partition>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (flag, open) = (stop.clone(), conns.clone());
        std::thread::Builder::new().name(format!("relay-{}", addr.port())).spawn(move || {
            let mut i = 0u64;
            while !flag.load(Ordering::SeqCst) {
                let (inbound, from) = match listener.accept() {
                    Ok(c) => c,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    Err(_) => continue,
                };
                i = i.wrapping_add(1);
                let dialer = partition.side_of(from, addr);
                if dialer.is_none() {
                    partition.unknown.fetch_add(1, Ordering::Relaxed);
                }
                // While cut, only a dialer known to be on this side gets through.
                if partition.is_active() && dialer != Some(side) {
                    partition.refused.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let _ = inbound.set_nonblocking(false);
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
                let clones = (
                    inbound.try_clone(),
                    outbound.try_clone(),
                    inbound.try_clone(),
                    outbound.try_clone(),
                );
                let (Ok(a), Ok(b), Ok(ka), Ok(kb)) = clones else { continue };
                let conn = Arc::new(Conn {
                    from: dialer,
                    to: side,
                    inbound: ka,
                    outbound: kb,
                    ended: AtomicU8::new(0),
                });
                for list in [&partition.conns, &*open] {
                    if let Ok(mut l) = list.lock() {
                        l.retain(|c| c.is_open());
                        l.push(conn.clone());
                    }
                }
                let s = seed.wrapping_mul(31).wrapping_add(i);
                let c = conn.clone();
                std::thread::spawn(move || {
                    pump(inbound, outbound, link, s);
                    c.ended.fetch_add(1, Ordering::Relaxed);
                });
                std::thread::spawn(move || {
                    pump(b, a, link, s ^ 0x5555);
                    conn.ended.fetch_add(1, Ordering::Relaxed);
                });
            }
        })?;
        Ok(Self { addr, stop, conns })
    }

    /// The relay's address (what the node behind it advertises).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Ok(conns) = self.conns.lock() {
            conns.iter().for_each(|c| c.close());
        }
    }
}

/// Copies `from` to `to`, each chunk delivered after the link's delay, in order.
fn pump(mut from: TcpStream, mut to: TcpStream, link: Link, seed: u64) {
    let (tx, rx) = flume::unbounded::<(Instant, Vec<u8>)>();
    let writer = std::thread::spawn(move || {
        for (at, chunk) in rx.iter() {
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    let mut rng = Rng(seed | 1);
    let mut last = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = link.delay(rng.next(), rng.next());
        // In order, as TCP delivers.
        last = last.max(Instant::now() + delay);
        if tx.send((last, buf.get(..n).unwrap_or_default().to_vec())).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.join();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_is_delayed_by_the_latency_within_the_jitter_and_a_loss_costs_a_resend() {
        let link = Link {
            latency: Duration::from_millis(50),
            jitter: Duration::from_millis(20),
            loss: 0.01,
        };
        assert_eq!(link.delay(0.5, 0.5), Duration::from_millis(50));
        assert_eq!(link.delay(0.0, 0.5), Duration::from_millis(30));
        assert_eq!(link.delay(1.0, 0.5), Duration::from_millis(70));
        assert_eq!(link.delay(0.5, 0.001), Duration::from_millis(50 + 300));
    }

    #[test]
    fn a_relay_forwards_both_ways_with_the_latency_and_stops_when_dropped() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let echo = std::thread::spawn(move || {
            let (mut s, _) = server.accept().unwrap();
            let mut b = [0u8; 5];
            s.read_exact(&mut b).unwrap();
            s.write_all(&b).unwrap();
        });
        let link = Link { latency: Duration::from_millis(40), jitter: Duration::ZERO, loss: 0.0 };
        let relay = Relay::start(port, link, 7, 0, Partition::new()).unwrap();
        let t0 = Instant::now();
        let mut c = TcpStream::connect(relay.addr()).unwrap();
        c.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        c.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello");
        assert!(t0.elapsed() >= Duration::from_millis(80), "{:?}", t0.elapsed());
        echo.join().unwrap();
        let addr = relay.addr();
        drop(relay);
        std::thread::sleep(Duration::from_millis(100));
        // The relay's listener is gone with its thread.
        let deadline = Instant::now() + Duration::from_secs(2);
        while TcpStream::connect(addr).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(TcpStream::connect(addr).is_err(), "the relay still accepts");
    }

    #[test]
    fn the_dialing_process_is_found_from_its_socket() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(server.local_addr().unwrap()).unwrap();
        let (_accepted, from) = server.accept().unwrap();
        assert_eq!(from, client.local_addr().unwrap());
        let p = Partition::new();
        assert_eq!(p.side_of(from, server.local_addr().unwrap()), None, "nobody registered");
        p.register(std::process::id(), 1);
        assert_eq!(p.side_of(from, server.local_addr().unwrap()), Some(1));
        p.begin();
        assert!(p.is_active());
        p.end();
        assert!(!p.is_active());
    }
}
