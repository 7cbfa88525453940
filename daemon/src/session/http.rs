//! Plain HTTP on the gateway's own port: `GET /metrics` and OpenClaw's
//! `GET /api/diagnostics/prometheus` answer the Prometheus metrics
//! (docs/operations.md, "Metrics"), with the gateway's auth as a bearer
//! token. Everything else (a WebSocket upgrade, any other path) goes on to
//! the WebSocket handshake with the bytes read so far replayed, so that
//! handshake sees the connection exactly as the client sent it.
//!
//! Generic over the stream, so any listener's connections can be routed.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::auth::Peer;
use crate::gateway::Gateway;
use crate::metrics;

/// The paths that answer the metrics.
pub const METRICS_PATHS: &[&str] = &["/metrics", "/api/diagnostics/prometheus"];
/// The longest request head read before deciding; a longer one goes on to
/// the WebSocket handshake, which has its own bounds.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// Where a connection goes.
pub enum Routed<S> {
    /// To the WebSocket handshake, with what was read replayed first.
    WebSocket(Replay<S>),
    /// Answered over plain HTTP and closed.
    Answered,
}

/// Reads the request head and answers it if it is for the metrics.
pub async fn route<S>(mut stream: S, gw: &Gateway, peer: &Peer) -> io::Result<Routed<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let request = loop {
        let n = stream.read(&mut chunk).await?;
        head.extend_from_slice(&chunk[..n]);
        match parse(&head) {
            Parsed::Metrics(request) => break request,
            Parsed::Partial if n > 0 && head.len() < MAX_HEAD => continue,
            Parsed::Partial | Parsed::Other => {
                return Ok(Routed::WebSocket(Replay::new(head, stream)));
            }
        }
    };
    let response = answer(&request, gw, peer);
    stream.write_all(&response).await?;
    stream.flush().await?;
    stream.shutdown().await?;
    Ok(Routed::Answered)
}

/// What the head says, as far as routing goes.
enum Parsed {
    Metrics(MetricsRequest),
    /// Not all of the head is in yet.
    Partial,
    /// A WebSocket upgrade, another path, or not HTTP at all.
    Other,
}

struct MetricsRequest {
    method: String,
    /// The `Authorization` header, if any.
    authorization: Option<String>,
}

fn parse(head: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    }
    let path = request.path.unwrap_or_default();
    let path = path.split('?').next().unwrap_or_default();
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    if !METRICS_PATHS.contains(&path) || header("upgrade").is_some() {
        return Parsed::Other;
    }
    Parsed::Metrics(MetricsRequest {
        method: request.method.unwrap_or_default().to_owned(),
        authorization: header("authorization"),
    })
}

/// The whole response. Only a peer with the read scope (either token, the
/// local socket's owner, or anyone under `auth.mode: none`) sees a metric;
/// a wrong token counts as a guess, as on the WebSocket.
fn answer(request: &MetricsRequest, gw: &Gateway, peer: &Peer) -> Vec<u8> {
    if request.method != "GET" && request.method != "HEAD" {
        return response(
            "405 Method Not Allowed",
            &[("Allow", "GET, HEAD")],
            "text/plain; charset=utf-8",
            "only GET answers the metrics\n",
        );
    }
    let token = request
        .authorization
        .as_deref()
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    if super::handshake::authenticate(gw, peer, token).is_err() {
        return response(
            "401 Unauthorized",
            &[("WWW-Authenticate", "Bearer realm=\"moltd\"")],
            "text/plain; charset=utf-8",
            "unauthorized: gateway token missing or wrong (send Authorization: Bearer <token>)\n",
        );
    }
    let body = metrics::metrics().encode(&gw.metrics_live());
    let mut bytes = response("200 OK", &[], metrics::CONTENT_TYPE, &body);
    if request.method == "HEAD" {
        bytes.truncate(bytes.len() - body.len());
    }
    bytes
}

fn response(status: &str, headers: &[(&str, &str)], content_type: &str, body: &str) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// A stream whose first reads return bytes already read from it.
pub struct Replay<S> {
    read: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Replay<S> {
    fn new(read: Vec<u8>, inner: S) -> Self {
        Self { read, at: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.read.len() {
            let n = buf.remaining().min(this.read.len() - this.at);
            buf.put_slice(&this.read[this.at..this.at + n]);
            this.at += n;
            if this.at == this.read.len() {
                this.read = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_request_for_a_metrics_path_is_answered_here() {
        let metrics = |head: &str| matches!(parse(head.as_bytes()), Parsed::Metrics(_));
        assert!(metrics("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(metrics(
            "GET /api/diagnostics/prometheus?x=1 HTTP/1.1\r\n\r\n"
        ));
        assert!(!metrics("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!metrics(
            "GET /metrics HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        ));
        assert!(!metrics("\u{16}\u{3}\u{1} not http"));
        assert!(matches!(
            parse(b"GET /metrics HTTP/1.1\r\nHo"),
            Parsed::Partial
        ));
    }

    #[test]
    fn the_token_is_read_from_a_bearer_authorization_only() {
        let auth = |head: &str| match parse(head.as_bytes()) {
            Parsed::Metrics(r) => r.authorization,
            _ => None,
        };
        assert_eq!(
            auth("GET /metrics HTTP/1.1\r\nauthorization: Bearer abc\r\n\r\n").as_deref(),
            Some("Bearer abc")
        );
    }

    #[tokio::test]
    async fn replay_gives_back_what_was_read_then_the_rest() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b" world").await.unwrap();
        drop(client);
        let mut replay = Replay::new(b"hello".to_vec(), server);
        let mut all = String::new();
        replay.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "hello world");
    }
}
