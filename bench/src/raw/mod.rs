//! Raw WebSocket members (`--raw-members`): a viewer as a bare TCP socket
//! that speaks just enough of RFC 6455 and of docs/protocol.md to join a
//! session and count its chat. The SDK `Client` costs every viewer a driver
//! task, two channels and a full JSON parse per frame, which made the load
//! tool busier than the server it measures; this costs one task, a read
//! into a stack buffer and a few substring searches per message. Measured
//! here (2 cores, 2000 viewers, 200 msgs/s to the floor, ~390k deliveries/s):
//! SDK viewers used 118% of a core, raw ones 49% (the floor 58–73%).
//!
//! Plain `ws://` only (loopback benchmarks), no fragmented messages (neither
//! Simmer nor the floor sends them), no extensions.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, SocketAddr};

use anyhow::{bail, Context};
use mobile_bridge::protocol::{ClientFrame, ClientMsg, Ref, ServerMsg, SUBPROTOCOL};
use mobile_bridge::SessionId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

mod frame;
#[cfg(target_os = "linux")]
pub mod uring;

use frame::{frames, header, masked, Frame, OP_CLOSE, OP_PONG, OP_TEXT};

/// Where the viewers connect: the server's address and what goes in the
/// handshake's `Host` and request line.
#[derive(Debug, Clone)]
pub struct Target {
    addr: SocketAddr,
    host: String,
    path: String,
}

impl Target {
    /// The `/ws` endpoint of a server base URL (`http://127.0.0.1:8080`).
    pub async fn of_base(base: &str) -> anyhow::Result<Self> {
        let url = reqwest::Url::parse(base).with_context(|| format!("bad URL {base}"))?;
        if url.scheme() != "http" {
            bail!(
                "--raw-members speaks plain ws:// only, not {}",
                url.scheme()
            );
        }
        let host = url.host_str().context("URL without a host")?.to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let addr = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
            .await?
            .next()
            .with_context(|| format!("cannot resolve {host}"))?;
        Ok(Self {
            addr,
            host: format!("{host}:{port}"),
            path: format!("{}/ws", url.path().trim_end_matches('/')),
        })
    }
}

/// What a viewer needs of a `chat.message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chat {
    pub seq: u64,
    /// The send time the load tool wrote into the text (`t=<µs>`).
    pub sent_us: Option<u64>,
}

/// One viewer's connection.
#[derive(Debug)]
pub struct RawMember {
    stream: TcpStream,
    inbox: Inbox,
}

/// What a viewer keeps between two reads, however it reads.
#[derive(Debug, Default)]
struct Inbox {
    /// The start of a frame that has not fully arrived yet. Usually empty
    /// (chat frames are small and arrive whole), so an idle viewer holds
    /// no read buffer of its own.
    partial: Vec<u8>,
    /// A pong owed to the server (its pings keep the connection alive past
    /// Simmer's idle timeout).
    pong: Option<Vec<u8>>,
}

impl Inbox {
    /// Hands every whole text frame of what arrived before and `data` to
    /// `on_text` and keeps the rest; `false` once the server sent a close.
    fn take(&mut self, data: &[u8], on_text: &mut impl FnMut(&[u8])) -> io::Result<bool> {
        let pong = &mut self.pong;
        let mut closed = false;
        let mut on_frame = |frame: Frame<'_>| match frame {
            Frame::Text(text) => on_text(text),
            Frame::Ping(payload) => *pong = Some(payload.to_vec()),
            Frame::Close => closed = true,
            Frame::Other => {}
        };
        if self.partial.is_empty() {
            let used = frames(data, &mut on_frame)?;
            self.partial.extend_from_slice(&data[used..]);
        } else {
            self.partial.extend_from_slice(data);
            let used = frames(&self.partial, &mut on_frame)?;
            self.partial.drain(..used);
            if self.partial.is_empty() && self.partial.capacity() > READ_CHUNK {
                self.partial = Vec::new(); // after a large frame
            }
        }
        Ok(!closed)
    }
}

/// Bytes read at once, into the worker thread's buffer, not every viewer's.
const READ_CHUNK: usize = 16 * 1024;

thread_local! {
    /// Where a worker thread's reads land before they are parsed.
    static CHUNK: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// The longest handshake answer accepted.
const MAX_HEAD: usize = 8 * 1024;

impl RawMember {
    /// Opens the TCP connection (from `bind` if set), upgrades it with
    /// `token` and waits for `hello`.
    pub async fn connect(
        target: &Target,
        bind: Option<IpAddr>,
        token: &str,
    ) -> anyhow::Result<Self> {
        let socket = if target.addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }?;
        if let Some(ip) = bind {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let mut stream = socket.connect(target.addr).await?;
        stream.set_nodelay(true)?;
        // The key is fixed and the answer's `Sec-WebSocket-Accept` is not
        // checked: it guards against caching proxies, and there are none
        // between a loopback load tool and its server.
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\nAuthorization: Bearer {token}\r\n\r\n",
            target.path, target.host
        );
        stream.write_all(request.as_bytes()).await?;
        let mut head = Vec::with_capacity(512);
        let end = loop {
            if let Some(i) = find(&head, b"\r\n\r\n") {
                break i + 4;
            }
            if head.len() > MAX_HEAD {
                bail!("handshake answer too long");
            }
            if stream.read_buf(&mut head).await? == 0 {
                bail!("closed during the handshake");
            }
        };
        if !head.starts_with(b"HTTP/1.1 101") {
            let status = head.split(|b| *b == b'\r').next().unwrap_or_default();
            bail!("upgrade refused: {}", String::from_utf8_lossy(status));
        }
        let mut member = Self {
            stream,
            inbox: Inbox {
                partial: head.split_off(end),
                pong: None,
            },
        };
        let hello = member.next_text().await?;
        if find(&hello, b"\"hello\"").is_none() {
            bail!("the first frame is not hello");
        }
        Ok(member)
    }

    /// Joins `session`; the newest sequence number at the join.
    pub async fn join(&mut self, session: SessionId) -> anyhow::Result<u64> {
        let frame = ClientFrame {
            reference: Some(Ref::Number(1)),
            msg: ClientMsg::Join {
                session_id: session,
                last_seq: None,
            },
        };
        self.send(OP_TEXT, serde_json::to_string(&frame)?.as_bytes())
            .await?;
        // Other frames (presence) may come first; the reply is parsed in
        // full, once per viewer.
        loop {
            let text = self.next_text().await?;
            if find(&text, b"\"reply\"").is_none() {
                continue;
            }
            match serde_json::from_slice::<ServerMsg>(&text)? {
                ServerMsg::Reply {
                    reference: Some(Ref::Number(1)),
                    body: Some(body),
                    ..
                } if body["last_seq"].is_u64() => {
                    if self.inbox.partial.is_empty() {
                        self.inbox.partial = Vec::new(); // an idle viewer holds no buffer
                    }
                    return Ok(body["last_seq"].as_u64().unwrap_or(0));
                }
                ServerMsg::Reply {
                    reference: Some(Ref::Number(1)),
                    ..
                } => bail!("join refused: {}", String::from_utf8_lossy(&text)),
                _ => {}
            }
        }
    }

    /// Waits for data and hands every whole text frame that arrived to
    /// `on_text`, answering the server's pings; `false` once the server
    /// closed the connection.
    pub async fn read(&mut self, on_text: &mut impl FnMut(&[u8])) -> io::Result<bool> {
        loop {
            self.stream.readable().await?;
            match self.take_arrived(on_text) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
                Ok(open) => {
                    if let Some(payload) = self.inbox.pong.take() {
                        self.send(OP_PONG, &payload).await?;
                    }
                    return Ok(open);
                }
            }
        }
    }

    /// Sends a close frame and drops the connection without waiting for the
    /// server's close.
    pub async fn close(mut self) {
        let _ = self.send(OP_CLOSE, &1000u16.to_be_bytes()).await;
        let _ = self.stream.shutdown().await;
    }

    /// Reads once, without waiting, and parses what is whole. The read goes
    /// into the worker thread's one buffer, not into the viewer's future,
    /// and is not zeroed per read (16 KiB at 100,000 reads/s was a few
    /// percent of the tool's core).
    fn take_arrived(&mut self, on_text: &mut impl FnMut(&[u8])) -> io::Result<bool> {
        CHUNK.with_borrow_mut(|chunk| self.parse_arrived(chunk, on_text))
    }

    fn parse_arrived(
        &mut self,
        chunk: &mut [u8],
        on_text: &mut impl FnMut(&[u8]),
    ) -> io::Result<bool> {
        let n = self.stream.try_read(chunk)?;
        if n == 0 {
            return Ok(false);
        }
        self.inbox.take(&chunk[..n], on_text)
    }

    /// The next text frame, whatever it is (for the handshake and the join;
    /// allocates).
    async fn next_text(&mut self) -> anyhow::Result<Vec<u8>> {
        loop {
            let partial = &mut self.inbox.partial;
            while let Some((opcode, head, len)) = header(partial)? {
                let Some(payload) = partial.get(head..head.saturating_add(len)) else {
                    break;
                };
                let text = (opcode == OP_TEXT).then(|| payload.to_vec());
                partial.drain(..head + len);
                match (text, opcode) {
                    (Some(text), _) => return Ok(text),
                    (None, OP_CLOSE) => bail!("the server closed the connection"),
                    _ => {}
                }
            }
            partial.reserve(4096);
            if self.stream.read_buf(partial).await? == 0 {
                bail!("the server closed the connection");
            }
        }
    }

    /// Sends one masked frame.
    async fn send(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        self.stream.write_all(&masked(opcode, payload)).await
    }
}

/// The first position of `needle` in `haystack` (candidates by their first
/// byte, then compared).
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut from = 0;
    while let Some(i) = haystack.get(from..)?.iter().position(|b| *b == first) {
        let at = from + i;
        if haystack.get(at + 1..at + needle.len())? == rest {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// The unsigned number right after `key` in `text`.
fn number_after(text: &[u8], key: &[u8]) -> Option<u64> {
    let start = find(text, key)? + key.len();
    let digits = text[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&text[start..start + digits])
        .ok()?
        .parse()
        .ok()
}

/// The sequence number and send stamp of a `chat.message` frame; `None`
/// for any other frame. Not a JSON parse: a key in quotes followed by a
/// colon cannot occur inside a JSON string (its quotes would be escaped),
/// so the first `"seq":` is the message's own.
pub fn chat_of(text: &[u8]) -> Option<Chat> {
    const CHAT: &[u8] = b"{\"type\":\"chat.message\"";
    if !text.starts_with(CHAT) {
        let at = find(text, b"\"type\":\"")? + 8;
        if !text[at..].starts_with(b"chat.message\"") {
            return None;
        }
    }
    Some(Chat {
        seq: number_after(text, b"\"seq\":")?,
        sent_us: number_after(text, b"\"text\":\"t="),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_finds_the_first_whole_match() {
        assert_eq!(find(b"xxabxabc abc", b"abc"), Some(5));
        assert_eq!(find(b"ab", b"abc"), None);
        assert_eq!(find(b"", b"a"), None);
    }

    #[test]
    fn chat_is_read_without_parsing() {
        let msg = br#"{"type":"chat.message","session_id":"0192f0e0-0000-7000-8000-000000000000","seq":42,"author":{"id":"0192f0e0-0000-7000-8000-000000000001","name":"a \"seq\":7","role":"host"},"text":"t=1700000000123456","sent_at":"2026-11-26T17:20:00.123Z","client_msg_id":"c"}"#;
        assert_eq!(
            chat_of(msg),
            Some(Chat {
                seq: 42,
                sent_us: Some(1_700_000_000_123_456)
            })
        );
        assert_eq!(chat_of(br#"{"type":"presence","viewer_count":3}"#), None);
        assert_eq!(
            chat_of(br#"{"seq":3,"type":"chat.message","text":"hi"}"#),
            Some(Chat {
                seq: 3,
                sent_us: None
            })
        );
    }
}
