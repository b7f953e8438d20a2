//! The network the server runs on: real sockets live, simulated ones in the simulation.
//!
//! The accept loop and the connection handling only need a listener that yields streams and a
//! way to dial a next hop; streams are `AsyncRead + AsyncWrite + Unpin`, as tokio-rustls wants.
//! Keeping the server generic over [`Network`] is what lets the simulation run this very code
//! over turmoil's sockets on virtual time.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};

/// A bound listening socket.
pub trait Listener: Send + 'static {
    /// The stream an accepted connection gives.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Waits for the next connection.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Io, SocketAddr)>> + Send;

    /// The address actually bound (port 0 resolved).
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// Binding and dialling.
pub trait Network: Clone + Send + Sync + 'static {
    /// The stream type of this network.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The listener type of this network.
    type Listener: Listener<Io = Self::Io>;

    /// Binds a listener.
    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send;

    /// Opens a connection to `host:port`.
    fn connect(&self, target: &str) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

/// The operating system's TCP stack, through tokio.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioNet;

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;

    async fn accept(&mut self) -> io::Result<(Self::Io, SocketAddr)> {
        let (stream, peer) = tokio::net::TcpListener::accept(self).await?;
        stream.set_nodelay(true)?;
        Ok((stream, peer))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpListener::local_addr(self)
    }
}

impl Network for TokioNet {
    type Io = tokio::net::TcpStream;
    type Listener = tokio::net::TcpListener;

    async fn bind(&self, addr: SocketAddr) -> io::Result<Self::Listener> {
        tokio::net::TcpListener::bind(addr).await
    }

    async fn connect(&self, target: &str) -> io::Result<Self::Io> {
        let stream = tokio::net::TcpStream::connect(target).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}
