//! A fault-injecting TCP proxy for end-to-end tests: it forwards every
//! connection made to its port to one target address, until the test cuts
//! the link.
//!
//! - **Cut**: from that moment nothing crosses in either direction. Bytes
//!   read from either side are dropped; connections stay open (silent, as
//!   behind a firewall that drops packets) and new ones are accepted but
//!   never reach the target.
//! - **Heal**: new connections are forwarded again. A connection that lost
//!   bytes during the cut cannot continue (its stream has a hole), so the
//!   proxy resets it, as a stateful firewall that lost the connection's state
//!   would; the nodes must notice and reconnect by themselves.
//!
//! Several proxies can share one [`Link`], so that a test cuts all traffic
//! of one validator at once.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The switch of one or more proxies.
#[derive(Clone)]
pub struct Link {
    cut: watch::Sender<bool>,
}

impl Default for Link {
    fn default() -> Self {
        Link::new()
    }
}

impl Link {
    pub fn new() -> Link {
        Link {
            cut: watch::Sender::new(false),
        }
    }

    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn heal(&self) {
        self.cut.send_replace(false);
    }

    fn watch(&self) -> watch::Receiver<bool> {
        self.cut.subscribe()
    }
}

/// Starts a proxy on a free loopback port forwarding to `target`; returns
/// its address. It runs until the runtime stops.
pub async fn start(target: SocketAddr, link: &Link) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let link = link.clone();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            let ctl = link.watch();
            tokio::spawn(serve(client, target, ctl));
        }
    });
    addr
}

async fn serve(client: TcpStream, target: SocketAddr, ctl: watch::Receiver<bool>) {
    let _ = client.set_nodelay(true);
    if *ctl.borrow() {
        // Accepted during the cut: swallow everything until the heal.
        let (read, _write) = client.into_split();
        sink_until_heal(read, ctl).await;
        return;
    }
    let Ok(upstream) = TcpStream::connect(target).await else {
        return; // the target is down: the client sees the connection close
    };
    let _ = upstream.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let mut a = tokio::spawn(pump(client_read, upstream_write, ctl.clone()));
    let mut b = tokio::spawn(pump(upstream_read, client_write, ctl));
    // When one direction ends, end the other: both sockets close.
    tokio::select! {
        _ = &mut a => b.abort(),
        _ = &mut b => a.abort(),
    }
}

/// Copies `from` to `to` while the link is up; drops bytes while it is cut;
/// ends (closing `to`) at the heal after a cut, or when `from` ends.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut ctl: watch::Receiver<bool>) {
    let mut tainted = *ctl.borrow();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            read = from.read(&mut buf) => {
                let n = match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if *ctl.borrow() {
                    tainted = true;
                    continue;
                }
                if tainted || to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            changed = ctl.changed() => {
                if changed.is_err() {
                    break;
                }
                if *ctl.borrow() {
                    tainted = true;
                } else if tainted {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

async fn sink_until_heal(mut from: OwnedReadHalf, mut ctl: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = from.read(&mut buf) => {
                if matches!(read, Ok(0) | Err(_)) {
                    return;
                }
            }
            changed = ctl.changed() => {
                if changed.is_err() || !*ctl.borrow() {
                    return;
                }
            }
        }
    }
}
