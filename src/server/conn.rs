//! One connection's task: pump bytes between the stream and the driver.
//!
//! Generic over the stream (TCP, TLS over TCP, TLS over a simulated socket). Reads go to the
//! driver as they come; the driver's writes come back on a channel. An idle connection (no
//! traffic either way for `idle`) is closed, as LCS closes idle client connections, and so is one
//! whose peer stops reading (a write not done within `idle`).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::sip::{ConnId, ConnKind};

use super::driver::{ToDriver, WriteCmd};

/// Runs until either side closes. Tells the driver when the connection opens and closes.
pub(crate) async fn pump<IO>(
    io: IO,
    conn: ConnId,
    kind: ConnKind,
    to_driver: mpsc::UnboundedSender<ToDriver>,
    idle: Duration,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (writer_tx, mut writer_rx) = mpsc::unbounded_channel();
    if to_driver
        .send(ToDriver::Opened {
            conn,
            kind,
            writer: writer_tx,
        })
        .is_err()
    {
        return; // the service is stopping
    }
    let (mut reader, mut writer) = tokio::io::split(io);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            biased;
            cmd = writer_rx.recv() => match cmd {
                Some(WriteCmd::Bytes(bytes)) => {
                    // A peer that stops reading must not hold this task (and the queue behind
                    // it) for ever: a write that cannot finish within the idle time ends it.
                    let write = async {
                        writer.write_all(&bytes).await?;
                        writer.flush().await
                    };
                    if !matches!(tokio::time::timeout(idle, write).await, Ok(Ok(()))) {
                        break;
                    }
                }
                Some(WriteCmd::Close) | None => {
                    let _ = writer.shutdown().await;
                    break;
                }
            },
            read = tokio::time::timeout(idle, reader.read(&mut buf)) => match read {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => {
                    if to_driver.send(ToDriver::Bytes { conn, bytes: buf[..n].to_vec() }).is_err() {
                        break;
                    }
                }
                Err(_idle) => {
                    tracing::debug!("connection {conn:?} idle for {idle:?}; closing");
                    let _ = writer.shutdown().await;
                    break;
                }
            },
        }
    }
    let _ = to_driver.send(ToDriver::Closed { conn });
}
