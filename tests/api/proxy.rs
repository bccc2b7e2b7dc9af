//! A TCP proxy between the app and a server (Redis, PostgreSQL, MySQL) that a test can break
//! in the ways networks and servers break:
//!
//! - [`Proxy::cut`]: every connection dropped and new ones refused, as a server that goes away
//!   or restarts ([`Proxy::restore`] ends it);
//! - [`Proxy::stall`]: a black hole: connections are accepted, nothing is forwarded either way,
//!   nothing is refused ([`Proxy::resume`] forwards what was held);
//! - [`Proxy::delay_next`]: the next chunk sent to the server waits, as one slow call;
//! - [`Proxy::lose_reply`]: a statement reaches the server, its reply never comes back (the
//!   connection breaks right after it was sent), as a `COMMIT` applied whose reply was lost.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<State>,
}

struct State {
    target: String,
    cut: AtomicBool,
    /// Bumped by every cut: connections open at that moment are dropped.
    cuts: watch::Sender<u64>,
    /// While true, nothing is forwarded (and new connections wait before reaching the server).
    stalled: watch::Sender<bool>,
    /// How long the next chunk towards the server waits.
    delay_next: Mutex<Option<Duration>>,
    /// Armed by [`Proxy::lose_reply`]: what marks a connection, and what is lost after.
    lose_reply: Mutex<Option<LoseReply>>,
}

/// On the first connection that sends a chunk containing all of `marks`, the next chunk
/// containing `then` is sent and the connection is dropped before any reply.
#[derive(Clone)]
struct LoseReply {
    marks: Vec<&'static str>,
    then: &'static str,
}

impl Proxy {
    /// Forwards to `target` (`host:port`).
    pub async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let state = Arc::new(State {
            target,
            cut: AtomicBool::new(false),
            cuts: watch::channel(0u64).0,
            stalled: watch::channel(false).0,
            delay_next: Mutex::new(None),
            lose_reply: Mutex::new(None),
        });
        let accepting = state.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if accepting.cut.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                tokio::spawn(forward(inbound, accepting.clone()));
            }
        });
        Self { addr, state }
    }

    /// A Redis URL that goes through the proxy.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        self.state.cuts.send_modify(|n| *n += 1);
    }

    pub fn restore(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }

    /// Forwards nothing from now on, either way, and refuses nothing.
    pub fn stall(&self) {
        self.state.stalled.send_replace(true);
    }

    /// Forwards again, what was held first.
    pub fn resume(&self) {
        self.state.stalled.send_replace(false);
    }

    /// The next chunk sent towards the server waits `delay` first.
    pub fn delay_next(&self, delay: Duration) {
        *self.state.delay_next.lock().expect("lock") = Some(delay);
    }

    /// Once: on a connection that sent a chunk containing all of `marks`, the next chunk
    /// containing `then` reaches the server, and the connection breaks before its reply.
    pub fn lose_reply(&self, marks: &[&'static str], then: &'static str) {
        *self.state.lose_reply.lock().expect("lock") = Some(LoseReply {
            marks: marks.to_vec(),
            then,
        });
    }
}

fn contains(chunk: &[u8], text: &str) -> bool {
    chunk
        .windows(text.len())
        .any(|window| window == text.as_bytes())
}

/// Per connection: whether it carries a marked statement, and whether its replies are lost.
#[derive(Default)]
struct Losing {
    marked: AtomicBool,
    lost: AtomicBool,
}

impl Losing {
    /// Whether `chunk` (towards the server) is the one whose reply must be lost.
    fn is_last(&self, chunk: &[u8], state: &State) -> bool {
        let mut armed = state.lose_reply.lock().expect("lock");
        let Some(rule) = armed.clone() else {
            return false;
        };
        if !self.marked.load(Ordering::SeqCst) {
            let marked = rule.marks.iter().all(|m| contains(chunk, m));
            self.marked.store(marked, Ordering::SeqCst);
            return false;
        }
        if !contains(chunk, rule.then) {
            return false;
        }
        *armed = None;
        self.lost.store(true, Ordering::SeqCst);
        true
    }
}

async fn forward(inbound: TcpStream, state: Arc<State>) {
    let mut cut_signal = state.cuts.subscribe();
    let connect = async {
        let _ = state.stalled.subscribe().wait_for(|s| !s).await;
        TcpStream::connect(&state.target).await
    };
    let outbound = tokio::select! {
        outbound = connect => outbound,
        _ = cut_signal.changed() => return,
    };
    let Ok(outbound) = outbound else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (client_read, client_write) = inbound.into_split();
    let (server_read, server_write) = outbound.into_split();
    let losing = Losing::default();
    tokio::select! {
        () = pump(client_read, server_write, &state, &losing, true) => {}
        () = pump(server_read, client_write, &state, &losing, false) => {}
        _ = cut_signal.changed() => {}
    }
}

/// Copies `from` to `to`, holding each chunk while the proxy is stalled.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    state: &State,
    losing: &Losing,
    upstream: bool,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let _ = state.stalled.subscribe().wait_for(|s| !s).await;
        if upstream {
            let delay = state.delay_next.lock().expect("lock").take();
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
        }
        let last = upstream && losing.is_last(&buffer[..n], state);
        if !upstream && losing.lost.load(Ordering::SeqCst) {
            return; // the reply is lost
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
        if last {
            // Give the server time to act on it, then break the connection.
            tokio::time::sleep(Duration::from_millis(200)).await;
            return;
        }
    }
}
