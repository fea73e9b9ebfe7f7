//! Body wrappers for the proxy's streams: counting bytes and running a hook when a body is
//! done (or dropped), which is when a request is really over for the access log and the idle
//! timer.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{Either, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};

/// Sent upstream: the client's body, counted, or nothing (a retry).
pub type RequestBody = Either<Counted<Incoming>, Empty<Bytes>>;

/// Sent to the client: the upstream's body or a short local one, with a completion hook.
pub type ResponseBody = Tracked<Either<Incoming, Full<Bytes>>>;

/// A short local response body.
pub fn local(text: &'static str) -> ResponseBody {
    Tracked::new(
        Either::Right(Full::new(Bytes::from_static(text.as_bytes()))),
        None,
    )
}

pin_project_lite::pin_project! {
    /// Adds the length of every data frame to a shared counter, if there is one (counting
    /// nobody reads would cost an allocation per request).
    pub struct Counted<B> {
        #[pin]
        inner: B,
        count: Option<Arc<AtomicU64>>,
    }
}

impl<B> Counted<B> {
    pub fn new(inner: B, count: Option<Arc<AtomicU64>>) -> Self {
        Counted { inner, count }
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
        if let Poll::Ready(Some(Ok(f))) = &res
            && let Some(d) = f.data_ref()
            && let Some(count) = this.count
        {
            count.fetch_add(d.len() as u64, Ordering::Relaxed);
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
