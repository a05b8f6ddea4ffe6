//! A TCP relay in front of a service that the soak can close: while closed, every
//! connection through it is cut and new ones are refused. Put in front of the
//! embedded MQTT broker it is, seen from the bridge, a broker restart (rumqttd cannot
//! be restarted inside the demo's process): the connection drops, reconnecting fails
//! until it is back.

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The handle of a running gate.
#[derive(Clone)]
pub struct TcpGate {
    addr: SocketAddr,
    /// `true` while open; every relay watches it.
    open: Arc<watch::Sender<bool>>,
}

impl TcpGate {
    /// Listens on a free loopback port and relays every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<TcpGate> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (open, _) = watch::channel(true);
        let open = Arc::new(open);
        let gate = TcpGate { addr, open };
        let accepting = gate.open.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !*accepting.borrow() {
                    drop(client); // refused while closed
                    continue;
                }
                tokio::spawn(relay(client, upstream, accepting.subscribe()));
            }
        });
        Ok(gate)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts every connection and refuses new ones until [`TcpGate::reopen`].
    pub fn close(&self) {
        self.open.send_replace(false);
    }

    pub fn reopen(&self) {
        self.open.send_replace(true);
    }
}

async fn relay(mut client: TcpStream, upstream: SocketAddr, mut open: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = open.wait_for(|o| !*o) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn echo_through(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tokio::time::timeout(std::time::Duration::from_secs(2), s.read_exact(&mut buf))
            .await
            .map_err(|_| std::io::Error::other("timeout"))??;
        Ok(buf.to_vec())
    }

    #[tokio::test]
    async fn a_closed_gate_cuts_and_refuses_and_a_reopened_one_relays_again() {
        let gate = TcpGate::start(echo_server().await).await.unwrap();
        let mut held = TcpStream::connect(gate.addr()).await.unwrap();
        held.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        held.read_exact(&mut one).await.unwrap();
        assert_eq!(echo_through(gate.addr()).await.unwrap(), b"ping");
        gate.close();
        let mut rest = Vec::new();
        let cut = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            held.read_to_end(&mut rest),
        )
        .await;
        assert!(
            matches!(cut, Ok(Ok(0)) | Ok(Err(_))),
            "the held connection is cut"
        );
        assert!(
            echo_through(gate.addr()).await.is_err(),
            "refused while closed"
        );
        gate.reopen();
        assert_eq!(echo_through(gate.addr()).await.unwrap(), b"ping");
    }
}
