//! Runs an HTTP/2 connection's streams inside the connection's own task instead of a spawned
//! task per stream: a stream is one request, and a task per request cost a spawn, a task cell
//! the size of the request's future (copied in) and a cross-task wake-up for every frame the
//! stream hands to the connection (BENCHMARKS.md §1). A connection's streams then share its
//! core, as nginx's and HAProxy's do.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::FutureExt as _;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use futures_util::task::AtomicWaker;

use crate::sync::lock;

type Stream = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The executor hyper hands a connection's streams to; they run in [`WithStreams`].
#[derive(Clone, Default)]
pub struct StreamExec(Arc<Queue>);

#[derive(Default)]
struct Queue {
    new: Mutex<Vec<Stream>>,
    /// Whether `new` holds anything: HTTP/1.1 connections, which start no streams, never lock.
    pending: AtomicBool,
    waker: AtomicWaker,
}

impl<F> hyper::rt::Executor<F> for StreamExec
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        // As with a task per stream, a panic ends its own stream, not the connection's others.
        lock(&self.0.new).push(Box::pin(AssertUnwindSafe(fut).catch_unwind().map(drop)));
        self.0.pending.store(true, Ordering::Release);
        self.0.waker.wake();
    }
}

pin_project_lite::pin_project! {
    /// A connection future together with the streams it started: done when the connection is
    /// done and every stream has finished.
    pub struct WithStreams<C: Future> {
        #[pin]
        conn: C,
        streams: FuturesUnordered<Stream>,
        queue: Arc<Queue>,
        done: Option<C::Output>,
    }
}

impl<C: Future> WithStreams<C> {
    pub fn new(conn: C, exec: &StreamExec) -> Self {
        WithStreams {
            conn,
            streams: FuturesUnordered::new(),
            queue: exec.0.clone(),
            done: None,
        }
    }

    pub fn conn(self: Pin<&mut Self>) -> Pin<&mut C> {
        self.project().conn
    }
}

impl<C: Future> Future for WithStreams<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let mut this = self.project();
        this.queue.waker.register(cx.waker());
        loop {
            if this.done.is_none()
                && let Poll::Ready(out) = this.conn.as_mut().poll(cx)
            {
                *this.done = Some(out);
            }
            let started = this.queue.pending.swap(false, Ordering::Acquire);
            if started {
                let new = std::mem::take(&mut *lock(&this.queue.new));
                this.streams.extend(new);
            }
            // Until every stream is waiting (FuturesUnordered yields on its own after a while).
            while !this.streams.is_empty()
                && let Poll::Ready(Some(())) = this.streams.poll_next_unpin(cx)
            {}
            // New streams get their first poll now rather than after a round trip through the
            // scheduler; the connection is polled again for what they queued.
            if !started {
                break;
            }
        }
        match this.done.take() {
            Some(out) if this.streams.is_empty() => Poll::Ready(out),
            other => {
                *this.done = other;
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use hyper::rt::Executor as _;
    use tokio::sync::oneshot;

    use super::*;

    #[tokio::test]
    async fn streams_outlive_their_connection_future_and_a_panic_ends_only_its_own() {
        let exec = StreamExec::default();
        let finished = Arc::new(AtomicUsize::new(0));
        let (release, released) = oneshot::channel::<()>();
        let conn = {
            let (exec, finished) = (exec.clone(), finished.clone());
            async move {
                exec.execute(async { panic!("one stream fails") });
                let f = finished.clone();
                exec.execute(async move {
                    let _ = released.await;
                    f.fetch_add(1, Ordering::SeqCst);
                });
                exec.execute(async move {
                    finished.fetch_add(1, Ordering::SeqCst);
                });
                "connection closed"
            }
        };
        let mut both = Box::pin(WithStreams::new(conn, &exec));
        // The connection future is done, one stream still waits: not done yet.
        assert!(futures_util::poll!(both.as_mut()).is_pending());
        assert_eq!(finished.load(Ordering::SeqCst), 1);
        release.send(()).expect("stream waits");
        assert_eq!(both.await, "connection closed");
        assert_eq!(finished.load(Ordering::SeqCst), 2);
    }
}
