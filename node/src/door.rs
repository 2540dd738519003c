//! The gRPC port's connection caps: at most
//! [`limits::GRPC_MAX_CONNECTIONS`](crate::limits::GRPC_MAX_CONNECTIONS)
//! open connections, and at most
//! [`limits::GRPC_MAX_CONNECTIONS_PER_IP`](crate::limits::GRPC_MAX_CONNECTIONS_PER_IP)
//! from one address. A connection over a cap is closed as soon as it is
//! accepted, before a byte of it is read; an admitted one gives its slot
//! back when it closes.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tracing::debug;

/// How many connections the door lets in.
#[derive(Clone, Copy, Debug)]
pub struct Caps {
    pub total: usize,
    pub per_ip: usize,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_ip: BTreeMap<IpAddr, usize>,
}

/// The connections open through the door.
#[derive(Debug)]
pub struct Door {
    caps: Caps,
    open: Mutex<Open>,
}

impl Door {
    pub fn new(caps: Caps) -> Arc<Door> {
        Arc::new(Door {
            caps,
            open: Mutex::new(Open::default()),
        })
    }

    /// Lets `stream` in, or refuses it (`None`: dropping it closes it).
    pub fn admit(self: &Arc<Door>, stream: TcpStream) -> Option<Admitted> {
        let ip = stream.peer_addr().ok()?.ip();
        let mut open = self.open.lock().ok()?;
        let from_ip = open.by_ip.get(&ip).copied().unwrap_or(0);
        if open.total >= self.caps.total || from_ip >= self.caps.per_ip {
            debug!(%ip, open = open.total, from_ip, "gRPC connection refused: over the cap");
            return None;
        }
        open.total += 1;
        *open.by_ip.entry(ip).or_default() += 1;
        Some(Admitted {
            stream,
            ip,
            door: self.clone(),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().map(|o| o.total).unwrap_or(0)
    }
}

/// An admitted connection; its slot is given back when it is dropped.
#[derive(Debug)]
pub struct Admitted {
    stream: TcpStream,
    ip: IpAddr,
    door: Arc<Door>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut open) = self.door.open.lock() {
            open.total = open.total.saturating_sub(1);
            if let Some(n) = open.by_ip.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.by_ip.remove(&self.ip);
                }
            }
        }
    }
}

impl AsyncRead for Admitted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Admitted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl Connected for Admitted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connected pairs on loopback: (the server's side, the client's side).
    async fn pair(listener: &tokio::net::TcpListener) -> (TcpStream, TcpStream) {
        let addr = listener.local_addr().expect("addr");
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (server.expect("accept").0, client.expect("connect"))
    }

    #[tokio::test]
    async fn connections_over_a_cap_are_refused_and_slots_come_back() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let door = Door::new(Caps {
            total: 3,
            per_ip: 2,
        });
        let mut held = Vec::new();
        let mut clients = Vec::new();
        for k in 0..2 {
            let (server, client) = pair(&listener).await;
            held.push(door.admit(server).expect("under the cap"));
            clients.push(client);
            assert_eq!(door.open(), k + 1);
        }
        let (server, _client) = pair(&listener).await;
        assert!(door.admit(server).is_none(), "a third from one address");
        assert_eq!(door.open(), 2);
        held.pop();
        assert_eq!(door.open(), 1, "a closed connection gives its slot back");
        let (server, _client) = pair(&listener).await;
        assert!(
            door.admit(server).is_some(),
            "the freed slot is taken again"
        );
        assert_eq!(door.open(), 1, "and given back when dropped at once");
    }
}
