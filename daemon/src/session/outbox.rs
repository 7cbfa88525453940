//! What a connection sends, bounded in bytes: one writer task owns the
//! socket's write half; everything else queues frames here.
//!
//! * The queue holds at most [`MAX_BUFFERED_BYTES`] (the `hello-ok`
//!   `policy.maxBufferedBytes`). An event that does not fit means the
//!   client cannot keep up with its events: it is dropped at once rather
//!   than silently missing some. A response waits for room, up to
//!   [`WRITE_DEADLINE`]; past it the client is dropped.
//! * While the queue is full the session reads no new requests, so a
//!   client that sends without reading is held back by TCP itself.
//! * Dropping: a close frame when it can be queued without waiting, else
//!   the writer is stopped mid-send and the socket shut.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{Sink, SinkExt};
use molt_protocol::close::ServerClose;
use molt_protocol::event::EventName;
use molt_protocol::frame::{EventFrame, ResponseFrame, ServerFrame};
use serde::Serialize;
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

pub use molt_protocol::handshake::MAX_BUFFERED_BYTES;

/// How long a response may wait for room before its client is dropped.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The client is too slow for what it is sent; drop it.
    SlowConsumer,
    /// The writer is gone (the client left, or was dropped).
    Closed,
}

enum Outbound {
    Text(String),
    Ping,
    Close(u16, String),
}

/// The queue's shared state: bytes waiting, room notifications, and the
/// token that stops the writer at once.
struct Queue {
    bytes: AtomicUsize,
    limit: usize,
    room: Notify,
    kill: CancellationToken,
}

impl Queue {
    fn fits(&self, len: usize) -> bool {
        self.bytes.load(Ordering::Acquire) + len <= self.limit
    }

    fn is_full(&self) -> bool {
        self.bytes.load(Ordering::Acquire) >= self.limit
    }
}

/// Queues frames for the writer; cheap to clone for request tasks.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Outbound>,
    queue: Arc<Queue>,
}

/// Numbers events (`seq` is per connection and strictly increasing); only
/// the session loop sends events.
pub struct Events {
    outbox: Outbox,
    seq: u64,
}

impl Events {
    pub fn new(outbox: Outbox) -> Self {
        Self { outbox, seq: 0 }
    }

    /// Queues an event; never waits.
    pub fn send(&mut self, event: EventName, payload: impl Serialize) -> Result<(), Full> {
        let frame = ServerFrame::Event(EventFrame {
            event: event.as_str().to_owned(),
            payload: serde_json::to_value(payload).ok(),
            seq: Some(self.seq + 1),
        });
        self.outbox.push(frame.to_text())?;
        self.seq += 1;
        Ok(())
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }
}

impl Outbox {
    /// The queue and its writer over `sink`; the writer ends when every
    /// `Outbox` is gone and the queue is sent, on a close frame, or at once
    /// on [`Outbox::drop_now`].
    pub fn start<S>(sink: S, limit: usize) -> (Outbox, tokio::task::JoinHandle<()>)
    where
        S: Sink<Message> + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let queue = Arc::new(Queue {
            bytes: AtomicUsize::new(0),
            limit,
            room: Notify::new(),
            kill: CancellationToken::new(),
        });
        let writer = tokio::spawn(write_loop(sink, rx, Arc::clone(&queue)));
        (Outbox { tx, queue }, writer)
    }

    /// Queues `text` if it fits; never waits.
    pub fn push(&self, text: String) -> Result<(), Full> {
        if !self.queue.fits(text.len()) {
            return Err(Full::SlowConsumer);
        }
        self.enqueue(text)
    }

    fn enqueue(&self, text: String) -> Result<(), Full> {
        self.queue.bytes.fetch_add(text.len(), Ordering::AcqRel);
        self.tx.send(Outbound::Text(text)).map_err(|_| Full::Closed)
    }

    /// Queues a response, waiting for room up to [`WRITE_DEADLINE`]. A
    /// response larger than the whole queue goes out alone.
    pub async fn respond(&self, response: ResponseFrame) -> Result<(), Full> {
        let text = ServerFrame::Res(response).to_text();
        let wait = async {
            loop {
                let room = self.queue.room.notified();
                if self.queue.fits(text.len()) || self.queue.bytes.load(Ordering::Acquire) == 0 {
                    return;
                }
                room.await;
            }
        };
        tokio::select! {
            () = wait => self.enqueue(text),
            () = self.queue.kill.cancelled() => Err(Full::Closed),
            () = tokio::time::sleep(WRITE_DEADLINE) => {
                self.drop_now();
                Err(Full::SlowConsumer)
            }
        }
    }

    /// A response that must not wait (the read loop's own errors).
    pub fn respond_now(&self, response: ResponseFrame) -> Result<(), Full> {
        self.push(ServerFrame::Res(response).to_text())
    }

    pub fn ping(&self) {
        let _ = self.tx.send(Outbound::Ping);
    }

    /// Ends the connection with `close`: a close frame if it can be queued
    /// without waiting, else the socket is shut at once.
    pub fn close(&self, close: ServerClose) {
        self.close_with(close, None);
    }

    /// [`Outbox::close`] with `: <detail>` after the reason.
    pub fn close_with(&self, close: ServerClose, detail: Option<&str>) {
        if self.queue.is_full() {
            self.drop_now();
        } else {
            let reason = match detail {
                Some(detail) => format!("{}: {detail}", close.reason()),
                None => close.reason().to_owned(),
            };
            let _ = self.tx.send(Outbound::Close(close.code(), reason));
        }
    }

    /// Stops the writer now, mid-frame if need be.
    pub fn drop_now(&self) {
        self.queue.kill.cancel();
    }

    /// Whether the queue is at its bound (the session then reads no more).
    pub fn is_full(&self) -> bool {
        self.queue.is_full()
    }

    /// Waits until the queue has room again (or the writer is gone).
    pub async fn room(&self) {
        loop {
            let room = self.queue.room.notified();
            if !self.queue.is_full() || self.queue.kill.is_cancelled() {
                return;
            }
            tokio::select! {
                () = room => {}
                () = self.queue.kill.cancelled() => return,
            }
        }
    }

    /// Cancelled once the writer is gone: the connection was dropped, or
    /// its last frame is out.
    pub fn gone(&self) -> &CancellationToken {
        &self.queue.kill
    }
}

async fn write_loop<S>(mut sink: S, mut rx: mpsc::UnboundedReceiver<Outbound>, queue: Arc<Queue>)
where
    S: Sink<Message> + Unpin,
{
    loop {
        let item = tokio::select! {
            biased;
            () = queue.kill.cancelled() => break,
            item = rx.recv() => match item {
                Some(item) => item,
                None => break,
            },
        };
        let (message, len, last) = match item {
            Outbound::Text(text) => {
                let len = text.len();
                (Message::text(text), len, false)
            }
            Outbound::Ping => (Message::Ping(Default::default()), 0, false),
            Outbound::Close(code, reason) => {
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.into(),
                };
                (Message::Close(Some(frame)), 0, true)
            }
        };
        let sent = tokio::select! {
            biased;
            // Mid-send: the socket is shut when the halves drop.
            () = queue.kill.cancelled() => break,
            sent = sink.send(message) => sent.is_ok(),
        };
        queue.bytes.fetch_sub(len, Ordering::AcqRel);
        queue.room.notify_waiters();
        if !sent || last {
            break;
        }
    }
    if !queue.kill.is_cancelled() {
        let _ = sink.close().await;
    }
    // Whoever waits for room learns the writer is gone.
    queue.kill.cancel();
    queue.room.notify_waiters();
}

#[cfg(test)]
mod tests {
    use super::*;
    use molt_protocol::ids::RequestId;
    use tokio_util::sync::PollSender;

    /// A sink that holds one message until the test takes it.
    fn one_at_a_time() -> (
        impl Sink<Message> + Unpin + Send + 'static,
        mpsc::Receiver<Message>,
    ) {
        let (tx, rx) = mpsc::channel(1);
        (PollSender::new(tx), rx)
    }

    fn response(size: usize) -> ResponseFrame {
        ResponseFrame::success(RequestId::from("1"), serde_json::json!("x".repeat(size)))
    }

    #[tokio::test]
    async fn events_that_do_not_fit_are_refused_and_responses_wait_for_room() {
        let (sink, mut delivered) = one_at_a_time();
        let (outbox, writer) = Outbox::start(sink, 1000);
        let mut events = Events::new(outbox.clone());
        events.send(EventName::Tick, "a".repeat(600)).unwrap();
        // 600 + 600 > 1000: the client cannot keep up with its events.
        assert_eq!(
            events.send(EventName::Tick, "b".repeat(600)),
            Err(Full::SlowConsumer)
        );
        let waiting = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.respond(response(600)).await })
        };
        // The first event goes out; the response then fits.
        let first = delivered.recv().await.unwrap();
        assert!(first.to_text().unwrap().contains("\"seq\":1"));
        assert_eq!(waiting.await.unwrap(), Ok(()));
        assert!(
            delivered
                .recv()
                .await
                .unwrap()
                .to_text()
                .unwrap()
                .contains("xxx")
        );
        drop((outbox, events));
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_full_queue_is_dropped_instead_of_closed_politely() {
        let (sink, _never_read) = one_at_a_time();
        let (outbox, writer) = Outbox::start(sink, 100);
        outbox.push("x".repeat(100)).unwrap();
        outbox.push("y".repeat(50)).unwrap_err();
        assert!(outbox.is_full());
        outbox.close(ServerClose::SlowConsumer);
        assert!(outbox.gone().is_cancelled(), "no close frame could be sent");
        writer.await.unwrap();
    }
}
