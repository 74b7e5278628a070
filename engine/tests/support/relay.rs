//! A TCP relay between a test's client and the test cluster's API server that the test can cut:
//! every connection through it is closed at once, as the kernel closes them when the API server
//! process is killed, while new connections still get through (the API server is back).
#![allow(
    dead_code,
    reason = "each test binary uses a part of the shared fixtures"
)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Relay {
    /// Where clients connect.
    pub addr: SocketAddr,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Relay {
    /// Listens on a free loopback port and relays every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay address");
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let tracked = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                let mut all = tracked.lock().expect("relay lock");
                all.retain(|t| !t.is_finished());
                all.push(task);
            }
        });
        Self {
            addr,
            connections,
            accept,
        }
    }

    /// Closes every open connection (both ends); returns how many there were.
    pub fn cut(&self) -> usize {
        let all = std::mem::take(&mut *self.connections.lock().expect("relay lock"));
        let open = all.iter().filter(|t| !t.is_finished()).count();
        for task in all {
            task.abort();
        }
        open
    }

    /// A copy of `config` whose requests go through the relay.
    pub fn config(&self, config: &kube::Config) -> kube::Config {
        let mut relayed = config.clone();
        relayed.cluster_url = format!("https://{}", self.addr).parse().expect("relay url");
        relayed
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// The API server's address in `config` (an `https://ip:port` URL, as the test cluster's is).
pub fn upstream(config: &kube::Config) -> SocketAddr {
    let authority = config
        .cluster_url
        .authority()
        .expect("the cluster URL has an authority");
    authority
        .as_str()
        .parse()
        .unwrap_or_else(|err| panic!("{authority} is not ip:port: {err}"))
}
