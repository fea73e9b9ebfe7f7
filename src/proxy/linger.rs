//! Lingering close, as nginx's: when hyper ends an HTTP/1.1 connection on a head it refused
//! (431, 400), the client may still be sending that head. Closing with its bytes unread makes
//! the kernel answer with a reset, which cuts the client off before it reads the answer. The
//! client's TCP stream is handed back when the TLS stream over it is dropped, and read and
//! discarded within bounds before it closes. No parsing; the bytes are thrown away.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::sync::lock;

/// The client's TCP stream under TLS; hands itself to its [`Slot`] when dropped.
pub struct Reclaim {
    tcp: Option<TcpStream>,
    slot: Arc<Mutex<Option<TcpStream>>>,
}

/// Where a dropped [`Reclaim`] leaves its stream.
pub struct Slot(Arc<Mutex<Option<TcpStream>>>);

impl Reclaim {
    pub fn new(tcp: TcpStream) -> (Self, Slot) {
        let slot = Arc::new(Mutex::new(None));
        let r = Reclaim {
            tcp: Some(tcp),
            slot: slot.clone(),
        };
        (r, Slot(slot))
    }

    fn tcp(self: Pin<&mut Self>) -> Pin<&mut TcpStream> {
        Pin::new(
            self.get_mut()
                .tcp
                .as_mut()
                .expect("the stream is taken only on drop"),
        )
    }
}

impl Drop for Reclaim {
    fn drop(&mut self) {
        if let Some(tcp) = self.tcp.take() {
            *lock(&self.slot) = Some(tcp);
        }
    }
}

impl Slot {
    /// Reads and discards what the client still sends, up to [`LINGER_BYTES`] or
    /// [`LINGER_TIME`], until it closes; then the stream is closed.
    pub async fn drain(self) {
        let Some(mut tcp) = lock(&self.0).take() else {
            return;
        };
        let mut buf = vec![0u8; 16 * 1024];
        let mut left = LINGER_BYTES;
        let _ = tokio::time::timeout(LINGER_TIME, async {
            while left > 0 {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        })
        .await;
    }
}

impl AsyncRead for Reclaim {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.tcp().poll_read(cx, buf)
    }
}

impl AsyncWrite for Reclaim {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.tcp().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.tcp().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.as_ref().is_some_and(|t| t.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.tcp().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.tcp().poll_shutdown(cx)
    }
}

/// Bytes read past a refused head before closing: a 1 MiB head and then some.
pub const LINGER_BYTES: usize = 2 * 1024 * 1024;
/// How long the client gets to finish sending (nginx `lingering_timeout`).
pub const LINGER_TIME: Duration = Duration::from_secs(5);
