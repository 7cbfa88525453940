//! A read budget on the raw socket, so an unauthenticated peer cannot make
//! the server buffer more than the pre-auth frame limit allows.
//!
//! tokio-tungstenite fixes its message limit at accept time, and the limit
//! must be `maxPayload` once authenticated; the budget bounds what an
//! unauthenticated peer can make us read until [`ReadBudget::lift`].

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Shared handle to lift the budget once the peer is authenticated.
#[derive(Clone, Debug)]
pub struct ReadBudget(Arc<AtomicU64>);

impl ReadBudget {
    pub fn new(bytes: u64) -> Self {
        Self(Arc::new(AtomicU64::new(bytes)))
    }

    pub fn lift(&self) {
        self.0.store(u64::MAX, Ordering::Relaxed);
    }

    fn remaining(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn consume(&self, n: u64) {
        // Only this stream's reader consumes, so load/store is race-free.
        let left = self.remaining();
        if left != u64::MAX {
            self.0.store(left.saturating_sub(n), Ordering::Relaxed);
        }
    }
}

/// A stream whose reads fail once the budget is spent.
pub struct Budgeted<S> {
    inner: S,
    budget: ReadBudget,
}

impl<S> Budgeted<S> {
    pub fn new(inner: S, budget: ReadBudget) -> Self {
        Self { inner, budget }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Budgeted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let remaining = self.budget.remaining();
        if remaining == u64::MAX {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        if remaining == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "peer sent more than allowed before authenticating",
            )));
        }
        let cap = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(buf.remaining());
        // Read into an initialised window of the caller's buffer, then
        // advance it: no unsafe, and only pre-auth reads pay the zeroing.
        let window = buf.initialize_unfilled_to(cap);
        let mut limited = ReadBuf::new(window);
        let poll = Pin::new(&mut self.inner).poll_read(cx, &mut limited);
        let filled = limited.filled().len();
        if let Poll::Ready(Ok(())) = poll {
            buf.advance(filled);
            self.budget.consume(filled as u64);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Budgeted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
