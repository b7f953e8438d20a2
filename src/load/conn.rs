//! One SIP-over-TLS connection as the load generator uses it: connect with a full handshake,
//! write requests, read whole messages through the SIP core's [`Framer`].
//!
//! Every wait on the server has a timeout, and every way it can fail becomes a [`Reason`]:
//! the connect and handshake through [`ConnectFailure`] (from rustls's typed error and the I/O
//! error kind), what follows as a SIP status, a timeout or a lost connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::record::{Op, Phase, Reason};
use super::target::Target;
use crate::failure::ConnectFailure;
use crate::sip::{DEFAULT_MAX_MESSAGE_SIZE, Frame, Framer, Message, RequestIds, parse_message};

/// A TLS connection to the target.
pub type Stream = TlsStream<TcpStream>;

/// Timeouts of one operation.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP connect plus TLS handshake.
    pub connect: Duration,
    /// From a request to its final response.
    pub response: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            // Above Timer F (32 s) would hide 408s; this is the client's patience for one answer.
            response: Duration::from_secs(40),
        }
    }
}

/// Connects and makes a full TLS handshake, within `timeout` for both (one timer: the generator
/// must cost less than what it measures). `op`, when the attempt is a recorded operation, moves
/// to [`Phase::Handshaking`] once the TCP connection is up.
pub async fn connect(
    target: &Target,
    timeout: Duration,
    mut op: Option<&mut Op>,
) -> Result<Stream, Reason> {
    let mut handshaking = false;
    let attempt = async {
        let tcp = TcpStream::connect(target.addr)
            .await
            .map_err(|e| Reason::Connect(ConnectFailure::from_connect_error(&e)))?;
        let _ = tcp.set_nodelay(true);
        handshaking = true;
        if let Some(op) = op.as_deref_mut() {
            op.phase(Phase::Handshaking);
        }
        target
            .connector
            .connect(target.server_name.clone(), tcp)
            .await
            .map_err(|e| Reason::Connect(ConnectFailure::from_handshake_error(&e)))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) if handshaking => Err(Reason::Connect(ConnectFailure::HandshakeTimeout)),
        Err(_) => Err(Reason::Connect(ConnectFailure::ConnectTimeout)),
    }
}

/// Reads whole SIP messages from a stream.
#[derive(Debug)]
pub struct Reader<R> {
    io: R,
    framer: Framer,
    buf: Box<[u8]>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// A reader over `io`.
    pub fn new(io: R) -> Reader<R> {
        Reader {
            io,
            framer: Framer::new(DEFAULT_MAX_MESSAGE_SIZE),
            // A response to OPTIONS or REGISTER is a few hundred bytes; the framer gathers more.
            buf: vec![0; 4096].into_boxed_slice(),
        }
    }

    /// The next message; `Err(ConnectionLost)` when the connection closed or broke, and
    /// `Err(BadResponse)` for bytes that do not frame or parse. Keep-alive pings are skipped.
    ///
    /// A TLS alert is the server's refusal, named as a failed handshake would name it: over
    /// TLS 1.3 a server checks the client's certificate after the client has finished its
    /// half of the handshake, so a mutual-TLS refusal (`certificate_required`,
    /// `unknown_ca`, ...) arrives as the first read's error.
    pub async fn next(&mut self) -> Result<Message, Reason> {
        loop {
            match self.framer.pop() {
                Some(Ok(Frame::Message(bytes))) => {
                    return parse_message(&bytes).map_err(|_| Reason::BadResponse);
                }
                Some(Ok(Frame::Ping)) => continue,
                Some(Err(_)) => return Err(Reason::BadResponse),
                None => {}
            }
            match self.io.read(&mut self.buf).await {
                Ok(0) => return Err(Reason::ConnectionLost),
                Err(e) => return Err(read_failure(&e)),
                Ok(n) => self.framer.push(&self.buf[..n]),
            }
        }
    }

    /// The underlying stream.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.io
    }
}

fn read_failure(e: &std::io::Error) -> Reason {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::AlertReceived(_)) => {
            Reason::Connect(ConnectFailure::from_handshake_error(e))
        }
        _ => Reason::ConnectionLost,
    }
}

/// Writes `bytes` and reads until the final response; 2xx is success, another final status a
/// [`Reason::Sip`].
pub async fn transaction<S: AsyncRead + AsyncWrite + Unpin>(
    reader: &mut Reader<S>,
    bytes: &[u8],
    timeout: Duration,
) -> Result<(), Reason> {
    let exchange = async {
        reader
            .get_mut()
            .write_all(bytes)
            .await
            .map_err(|_| Reason::ClosedBeforeResponse)?;
        loop {
            match reader.next().await {
                Ok(Message::Response(r)) if r.is_final() => {
                    return if (200..300).contains(&r.status) {
                        Ok(())
                    } else {
                        Err(Reason::Sip(r.status))
                    };
                }
                Ok(_) => continue,
                Err(Reason::ConnectionLost) => return Err(Reason::ClosedBeforeResponse),
                Err(e) => return Err(e),
            }
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| Reason::ResponseTimeout)?
}

/// Fresh Call-IDs, tags and branches: a random run id, the shard, and a counter, so shards of
/// one run and runs against one server never collide.
#[derive(Debug)]
pub struct Ids {
    prefix: String,
    next: AtomicU64,
}

impl Ids {
    /// Identifiers for shard `shard` of a run.
    pub fn new(shard: u32) -> Ids {
        let mut run = [0u8; 6];
        getrandom::fill(&mut run).expect("the OS random source");
        Ids {
            prefix: format!("{}s{shard}", hex::encode(run)),
            next: AtomicU64::new(0),
        }
    }

    /// The identifiers of one new request.
    pub fn next(&self) -> RequestIds {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        RequestIds {
            call_id: format!("{}-{n}", self.prefix),
            from_tag: format!("{}t{n}", self.prefix),
            branch: format!("{}b{n}", self.prefix),
            cseq: 1,
        }
    }

    /// The run prefix (for Contact user parts and the like).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}
