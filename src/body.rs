//! Body wrappers for the proxy's streams: counting bytes and running a hook when a body is
//! done (or dropped), which is when a request is really over for the access log and the idle
//! timer, or when an upstream body stalls between two reads.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use prometheus::IntCounter;

/// Sent upstream: the client's body, counted, or nothing (a retry).
pub type RequestBody = Either<Counted<Incoming>, Empty<Bytes>>;

/// Sent to the client: the upstream's body (with a read timer) or a short local one, with a
/// completion hook.
pub type ResponseBody = Tracked<Either<ReadTimeout<Incoming>, Full<Bytes>>>;

/// A short local response body.
pub fn local(text: &'static str) -> ResponseBody {
    Tracked::new(
        Either::Right(Full::new(Bytes::from_static(text.as_bytes()))),
        None,
    )
}

/// What a request body reports while it streams upstream: its bytes (for the access log)
/// and whether it failed. A failure (a client's bad chunk or early close) is a client error,
/// not the upstream's: it is counted where it is seen, even if the request's handler is gone
/// by then. One allocation per request holds all of it.
#[derive(Debug)]
pub struct BodyStats {
    bytes: AtomicU64,
    failed: AtomicBool,
    failures: IntCounter,
}

impl BodyStats {
    /// `failures` counts bodies that failed.
    pub fn new(failures: IntCounter) -> Self {
        BodyStats {
            bytes: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            failures,
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Whether the body ended in an error.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    fn fail(&self) {
        if !self.failed.swap(true, Ordering::Relaxed) {
            self.failures.inc();
        }
    }
}

pin_project_lite::pin_project! {
    /// Adds the length of every data frame to [`BodyStats`], and records a failure there.
    pub struct Counted<B> {
        #[pin]
        inner: B,
        stats: Arc<BodyStats>,
    }
}

impl<B> Counted<B> {
    pub fn new(inner: B, stats: Arc<BodyStats>) -> Self {
        Counted { inner, stats }
    }
}

impl<B: Body<Data = Bytes>> Body for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let res = this.inner.poll_frame(cx);
        match &res {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.stats
                        .bytes
                        .fetch_add(d.len() as u64, Ordering::Relaxed);
                }
            }
            Poll::Ready(Some(Err(_))) => this.stats.fail(),
            _ => {}
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Called once with the bytes sent when the body ends or is dropped.
pub type DoneHook = Box<dyn FnOnce(u64) + Send>;

pin_project_lite::pin_project! {
    /// Counts the bytes of a body and runs a hook once it is finished or dropped.
    pub struct Tracked<B> {
        #[pin]
        inner: B,
        sent: u64,
        done: Option<DoneHook>,
    }

    impl<B> PinnedDrop for Tracked<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(hook) = this.done.take() {
                hook(*this.sent);
            }
        }
    }
}

impl<B> Tracked<B> {
    pub fn new(inner: B, done: Option<DoneHook>) -> Self {
        Tracked {
            inner,
            sent: 0,
            done,
        }
    }

    /// Replaces the hook (the response was built before its hook was known).
    pub fn set_done(&mut self, done: DoneHook) {
        self.done = Some(done);
    }
}

impl<B: Body<Data = Bytes>> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let res = this.inner.poll_frame(cx);
        match &res {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    *this.sent += d.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                if let Some(hook) = this.done.take() {
                    hook(*this.sent);
                }
            }
            Poll::Pending => {}
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Told once when a body stalled past its read timeout. Shared (the route's entry), so a
/// response body costs no allocation for it.
pub trait OnStall: Send + Sync {
    fn stalled(&self, limit: Duration);
}

/// The error a stalled body ends with.
#[derive(Debug, thiserror::Error)]
#[error("no data from the upstream for {0:?}")]
pub struct Stalled(pub Duration);

pin_project_lite::pin_project! {
    /// Ends a body with [`Stalled`] when no frame arrives for `limit` while one is awaited.
    /// The timer runs only while the body is polled and pending: a client that is not reading
    /// does not poll, and is the write timer's business.
    pub struct ReadTimeout<B> {
        #[pin]
        inner: B,
        limit: Duration,
        #[pin]
        timer: Option<tokio::time::Sleep>,
        on_timeout: Option<Arc<dyn OnStall>>,
    }
}

impl<B> ReadTimeout<B> {
    pub fn new(inner: B, limit: Duration, on_timeout: Option<Arc<dyn OnStall>>) -> Self {
        ReadTimeout {
            inner,
            limit,
            timer: None,
            on_timeout,
        }
    }
}

impl<B> Body for ReadTimeout<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(r) => {
                this.timer.set(None);
                Poll::Ready(r.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                if this.timer.is_none() {
                    this.timer.set(Some(tokio::time::sleep(*this.limit)));
                }
                let Some(timer) = this.timer.as_mut().as_pin_mut() else {
                    return Poll::Pending;
                };
                match timer.poll(cx) {
                    Poll::Ready(()) => {
                        this.timer.set(None);
                        if let Some(hook) = this.on_timeout.take() {
                            hook.stalled(*this.limit);
                        }
                        Poll::Ready(Some(Err(Box::new(Stalled(*this.limit)))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
