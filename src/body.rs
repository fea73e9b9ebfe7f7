//! Body wrappers for the proxy's streams: counting bytes and running a hook when a body is
//! done (or dropped), which is when a request is really over for the access log and the idle
//! timer, or when an upstream body stalls between two reads.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};

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

pin_project_lite::pin_project! {
    /// Adds the length of every data frame to a shared counter.
    /// Adds the length of every data frame to a shared counter, and runs a hook when the body
    /// fails (a client's bad chunk or early close: a client error, not the upstream's). The
    /// hook runs where the failure is seen, even if the request's handler is gone by then.
    pub struct Counted<B> {
        #[pin]
        inner: B,
        count: Arc<AtomicU64>,
        on_failure: Option<FailureHook>,
    }
}

impl<B> Counted<B> {
    pub fn new(inner: B, count: Arc<AtomicU64>) -> Self {
        Counted {
            inner,
            count,
            on_failure: None,
        }
    }

    /// Runs `hook` once if the body ends in an error.
    pub fn on_failure(mut self, hook: FailureHook) -> Self {
        self.on_failure = Some(hook);
        self
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
                    this.count.fetch_add(d.len() as u64, Ordering::Relaxed);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(hook) = this.on_failure.take() {
                    hook();
                }
            }
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

/// Called once when a body fails.
pub type FailureHook = Box<dyn FnOnce() + Send>;

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

/// Called once when a body stalled past its read timeout.
pub type TimeoutHook = Box<dyn FnOnce() + Send>;

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
        on_timeout: Option<TimeoutHook>,
    }
}

impl<B> ReadTimeout<B> {
    pub fn new(inner: B, limit: Duration, on_timeout: Option<TimeoutHook>) -> Self {
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
                            hook();
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
