//! One connection's task: pump bytes between the stream and the driver.
//!
//! Generic over the stream (TCP, TLS over TCP, TLS over a simulated socket). Reads go to the
//! driver as they come; the driver's writes come back on a channel. An idle connection (no
//! traffic either way for `idle`) is closed, as LCS closes idle client connections, and so is one
//! whose peer stops reading (a write not done within `idle`).
//!
//! A server holds thousands of mostly idle connections, so what one costs while it waits
//! matters more than what it costs while busy (issue 9's held-connections bench):
//! - the stream is not split: one `select!` reads or writes it, so there is no shared lock
//!   around it, nor the allocation that goes with one;
//! - the read buffer is small ([`READ_CHUNK`]). A larger message takes several reads: the TLS
//!   layer keeps what does not fit and hands it over on the next read, and the driver's framer
//!   joins the pieces;
//! - the idle deadline is one timer per connection, moved only when it fires (to the last
//!   activity plus `idle`), not a timer registered and cancelled around every read;
//! - an inbound connection reaches the driver (and its channel is made) only when it first
//!   speaks, so one that never does costs the driver and the proxy nothing, and a one-shot
//!   connection wakes the driver once less.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::clock::monotonic_now;
use crate::sip::{ConnId, ConnKind};

use super::driver::{ToDriver, WriteCmd};

/// Bytes read from a connection at a time. A REGISTER or MESSAGE of a typical client fits.
pub(crate) const READ_CHUNK: usize = 2048;

/// Runs until either side closes. Tells the driver when the connection opens (an inbound one:
/// when it first speaks) and closes.
///
/// Not an `async fn`: that would keep the stream twice in the future (its argument and the
/// body's copy, rust-lang/rust#62958); the block below uses the one it captures.
#[allow(
    clippy::manual_async_fn,
    reason = "an async fn would store the stream twice (rust-lang/rust#62958)"
)]
pub(crate) fn pump<IO>(
    mut io: IO,
    conn: ConnId,
    kind: ConnKind,
    to_driver: mpsc::UnboundedSender<ToDriver>,
    idle: Duration,
) -> impl Future<Output = ()> + Send
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    async move {
        // An inbound connection is announced to the driver with its first bytes: the proxy
        // has nothing to do with one that never speaks, so a held idle connection costs the
        // driver nothing (no channel, no entry). A route is announced at once: the proxy
        // sends its queue on it.
        let mut writer_rx = None;
        if matches!(kind, ConnKind::Route(_)) {
            match announce(&to_driver, conn, kind) {
                Some(rx) => writer_rx = Some(rx),
                None => return, // the service is stopping
            }
        }
        let mut buf = [0u8; READ_CHUNK];
        let mut last_activity = monotonic_now();
        let idle_deadline = tokio::time::sleep_until((last_activity + idle).into());
        tokio::pin!(idle_deadline);
        loop {
            tokio::select! {
                biased;
                cmd = next_write(&mut writer_rx) => match cmd {
                    Some(WriteCmd::Bytes(bytes)) => {
                        // A peer that stops reading must not hold this task (and the queue behind
                        // it) for ever: a write that cannot finish within the idle time ends it.
                        // (The timer is registered only if the write has to wait.)
                        let write = async {
                            io.write_all(&bytes).await?;
                            io.flush().await
                        };
                        if !matches!(tokio::time::timeout(idle, write).await, Ok(Ok(()))) {
                            break;
                        }
                        last_activity = monotonic_now();
                    }
                    Some(WriteCmd::Close) | None => {
                        let _ = io.shutdown().await;
                        break;
                    }
                },
                read = io.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        last_activity = monotonic_now();
                        if writer_rx.is_none() {
                            match announce(&to_driver, conn, kind) {
                                Some(rx) => writer_rx = Some(rx),
                                None => break,
                            }
                        }
                        if to_driver.send(ToDriver::Bytes { conn, bytes: buf[..n].to_vec() }).is_err() {
                            break;
                        }
                    }
                },
                // Not yet announced, so no Close will come: end with the service, as an
                // announced connection does on the driver's Close.
                () = to_driver.closed(), if writer_rx.is_none() => {
                    let _ = io.shutdown().await;
                    break;
                }
                () = &mut idle_deadline => {
                    let due = last_activity + idle;
                    if monotonic_now() < due {
                        idle_deadline.as_mut().reset(due.into()); // there was traffic since it was set
                        continue;
                    }
                    tracing::debug!("connection {conn:?} idle for {idle:?}; closing");
                    let _ = io.shutdown().await;
                    break;
                }
            }
        }
        if writer_rx.is_some() {
            let _ = to_driver.send(ToDriver::Closed { conn });
        }
    }
}

/// Tells the driver a connection is open; the receiver of its writes, or `None` when the
/// service is stopping.
fn announce(
    to_driver: &mpsc::UnboundedSender<ToDriver>,
    conn: ConnId,
    kind: ConnKind,
) -> Option<mpsc::UnboundedReceiver<WriteCmd>> {
    let (writer, writes) = mpsc::unbounded_channel();
    let opened = ToDriver::Opened { conn, kind, writer };
    to_driver.send(opened).ok().map(|()| writes)
}

/// The driver's next write for this connection; never, before it is announced.
async fn next_write(writes: &mut Option<mpsc::UnboundedReceiver<WriteCmd>>) -> Option<WriteCmd> {
    match writes {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
