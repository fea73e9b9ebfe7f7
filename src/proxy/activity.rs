//! Per-connection timers that hyper does not give us in the right shape: the HTTP/1 request
//! head deadline (from the first byte of a head, not while idle), the idle timeout for both
//! HTTP/1 keep-alive and HTTP/2, and the write timeout (a client that takes no bytes while the
//! proxy has some to send). One watchdog per connection reads these counters.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const NONE: u64 = u64::MAX;

/// What the watchdog should do about a connection now.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Fine,
    /// No request for `idle_timeout`: close gracefully.
    Idle,
    /// A request head started but did not complete in time: drop the connection.
    HeadTimeout,
}

#[derive(Debug)]
pub struct Activity {
    start: Instant,
    http1: bool,
    in_flight: AtomicUsize,
    /// Milliseconds since `start` when the last request finished (or the connection began).
    last_done: AtomicU64,
    /// Milliseconds since `start` of the first byte of a pending HTTP/1 head, or NONE.
    head_started: AtomicU64,
    /// Milliseconds since `start` since when a write to the client is blocked, or NONE.
    write_blocked: AtomicU64,
}

impl Activity {
    pub fn new(http1: bool) -> Self {
        Activity {
            start: Instant::now(),
            http1,
            in_flight: AtomicUsize::new(0),
            last_done: AtomicU64::new(0),
            head_started: AtomicU64::new(NONE),
            write_blocked: AtomicU64::new(NONE),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// A request head was parsed and handed to the service.
    pub fn request_started(&self) {
        self.head_started.store(NONE, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// The response body was sent (or dropped).
    pub fn request_done(&self) {
        self.last_done.store(self.now_ms(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    fn bytes_read(&self) {
        if self.http1
            && self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started.load(Ordering::Relaxed) == NONE
        {
            self.head_started.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// A write to the client could not proceed (its window and our buffers are full), or did.
    fn write_blocked(&self, blocked: bool) {
        if !blocked {
            self.write_blocked.store(NONE, Ordering::Relaxed);
        } else if self.write_blocked.load(Ordering::Relaxed) == NONE {
            self.write_blocked.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// Whether writes to the client have been blocked for `limit`.
    pub fn write_stalled(&self, limit: Duration) -> bool {
        let since = self.write_blocked.load(Ordering::Relaxed);
        since != NONE && self.now_ms().saturating_sub(since) >= limit.as_millis() as u64
    }

    pub fn verdict(&self, head_timeout: Duration, idle_timeout: Duration) -> Verdict {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Verdict::Fine;
        }
        let now = self.now_ms();
        let head = self.head_started.load(Ordering::Relaxed);
        if head != NONE {
            return if now.saturating_sub(head) >= head_timeout.as_millis() as u64 {
                Verdict::HeadTimeout
            } else {
                Verdict::Fine
            };
        }
        if now.saturating_sub(self.last_done.load(Ordering::Relaxed))
            >= idle_timeout.as_millis() as u64
        {
            Verdict::Idle
        } else {
            Verdict::Fine
        }
    }
}

pin_project_lite::pin_project! {
    /// Notes when bytes arrive, for the HTTP/1 head deadline.
    pub struct ActivityIo<T> {
        #[pin]
        inner: T,
        activity: std::sync::Arc<Activity>,
    }
}

impl<T> ActivityIo<T> {
    pub fn new(inner: T, activity: std::sync::Arc<Activity>) -> Self {
        ActivityIo { inner, activity }
    }
}

impl<T: AsyncRead> AsyncRead for ActivityIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let res = this.inner.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.bytes_read();
        }
        res
    }
}

impl<T: AsyncWrite> AsyncWrite for ActivityIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let res = this.inner.poll_write(cx, buf);
        this.activity.write_blocked(res.is_pending());
        res
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let res = this.inner.poll_flush(cx);
        this.activity.write_blocked(res.is_pending());
        res
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let res = this.inner.poll_write_vectored(cx, bufs);
        this.activity.write_blocked(res.is_pending());
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_connection_is_idle_only_without_requests_in_flight() {
        let a = Activity::new(true);
        assert_eq!(
            a.verdict(Duration::from_secs(10), Duration::ZERO),
            Verdict::Idle
        );
        a.request_started();
        assert_eq!(a.verdict(Duration::ZERO, Duration::ZERO), Verdict::Fine);
        a.request_done();
        assert_eq!(
            a.verdict(Duration::from_secs(10), Duration::ZERO),
            Verdict::Idle
        );
    }

    #[test]
    fn a_started_head_is_held_to_the_head_timeout_not_the_idle_one() {
        let a = Activity::new(true);
        a.bytes_read();
        assert_eq!(
            a.verdict(Duration::ZERO, Duration::from_secs(60)),
            Verdict::HeadTimeout
        );
        assert_eq!(
            a.verdict(Duration::from_secs(60), Duration::ZERO),
            Verdict::Fine
        );
    }

    #[test]
    fn a_blocked_write_stalls_until_a_write_proceeds() {
        let a = Activity::new(false);
        assert!(!a.write_stalled(Duration::ZERO));
        a.write_blocked(true);
        assert!(a.write_stalled(Duration::ZERO));
        assert!(!a.write_stalled(Duration::from_secs(60)));
        a.write_blocked(false);
        assert!(!a.write_stalled(Duration::ZERO));
    }
}
