//! One server-side WebSocket on the raw TCP stream taken at the upgrade.
//!
//! It holds no buffer while it is idle: inbound bytes are read into a small
//! buffer that is freed as soon as it holds no partial frame, and outbound
//! frames are written straight from their shared payload (one `sendmsg` of
//! headers and payloads, or of whole frames the fan-out shares, built once
//! a message); only what the socket did not take waits, and a
//! client that lets more than `max_backlog` bytes pile up is dropped; `recv`
//! writes that backlog while it waits. Every method is cancel-safe, so a
//! connection loop can `select!` over `recv` and its other sources. The
//! write side ([`Outlet`]) can be shared on the worker thread: the gateway's
//! fan-out writes to members' sockets without waking their loops.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::rc::Rc;
use std::task::Poll;

use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::task::AtomicWaker;
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::frame::{self, FrameError, OpCode, MAX_HEADER};

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 4096;
/// Frames (header and payload each) written in one `writev`, at most.
pub(super) const WRITE_BATCH: usize = 64;
/// An outbound queue this long is kept for the next burst; a longer one is
/// freed once empty.
const KEPT_QUEUE: usize = 16;
/// What a closing connection reads and drops at most while the client has
/// not closed its side yet.
const LINGER_BYTES: usize = 64 * 1024;
/// Bytes waiting for the socket above which the connection is
/// [`WebSocket::backlogged`]: its loop stops taking new events until
/// [`Message::Drained`] (they wait in the session's bounded ring, and a
/// connection that falls out of it catches up from history).
pub const HIGH_WATER: usize = 64 * 1024;

/// What a connection may make the server hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest inbound message (all its fragments together), in bytes.
    pub max_message: usize,
    /// Outbound bytes waiting for a slow reader before it is dropped.
    pub max_backlog: usize,
    /// The kernel's send buffer (`SO_SNDBUF`, which Linux doubles); 0
    /// leaves it to the kernel's autotuning (megabytes for a client that
    /// does not read).
    pub send_buffer: usize,
}

/// A message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(ByteString),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// The client closes (its code and reason, if it gave them).
    Close(Option<(u16, String)>),
    /// Not from the client: the connection was [`WebSocket::backlogged`]
    /// and the socket has taken enough; new events may be sent again.
    Drained,
}

/// Why the connection cannot go on.
#[derive(Debug)]
pub enum WsError {
    /// The client broke RFC 6455 or a limit (close with [`Self::close_code`]).
    Frame(FrameError),
    /// A text message that is not UTF-8 (1007).
    InvalidUtf8,
    /// The client went away (EOF) or the socket failed.
    Gone(Option<io::Error>),
    /// More than `max_backlog` bytes wait for the client (1008).
    SlowReader { limit: usize },
}

impl WsError {
    /// The close code to tell the client, if it is still worth telling.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            Self::Frame(FrameError::Protocol(_)) => Some(1002),
            Self::Frame(FrameError::TooBig { .. }) => Some(1009),
            Self::InvalidUtf8 => Some(1007),
            Self::SlowReader { .. } => Some(1008),
            Self::Gone(_) => None,
        }
    }
}

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Frame(FrameError::Protocol(why)) => write!(f, "protocol error: {why}"),
            Self::Frame(FrameError::TooBig { limit }) => {
                write!(f, "message larger than {limit} bytes")
            }
            Self::InvalidUtf8 => f.write_str("text message is not UTF-8"),
            Self::Gone(None) => f.write_str("the client went away"),
            Self::Gone(Some(e)) => write!(f, "socket error: {e}"),
            Self::SlowReader { limit } => {
                write!(f, "too slow: more than {limit} bytes waiting to be read")
            }
        }
    }
}

impl From<FrameError> for WsError {
    fn from(e: FrameError) -> Self {
        Self::Frame(e)
    }
}

impl From<io::Error> for WsError {
    fn from(e: io::Error) -> Self {
        Self::Gone(Some(e))
    }
}

/// A piece of outbound data: a frame header (kept inline) or a payload.
enum Chunk {
    Header {
        bytes: [u8; MAX_HEADER],
        at: u8,
        end: u8,
    },
    Payload(Bytes),
    /// A whole frame of this thread's, shared by many sockets' queues (the
    /// fan-out's): counted without atomics, from `at`.
    Local {
        frame: Rc<[u8]>,
        at: usize,
    },
}

impl Chunk {
    /// The header of a frame of `opcode` with a payload of `len` bytes.
    fn header(opcode: OpCode, len: usize) -> Self {
        let (bytes, end) = frame::header(opcode, len);
        Self::Header {
            bytes,
            at: 0,
            // At most 10.
            end: end as u8,
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Header { bytes, at, end } => &bytes[usize::from(*at)..usize::from(*end)],
            Self::Payload(bytes) => bytes,
            Self::Local { frame, at } => &frame[*at..],
        }
    }

    /// Drops `n` bytes from the front (`n` <= its length).
    fn advance(&mut self, n: usize) {
        match self {
            // Headers are at most 10 bytes: `n` fits.
            Self::Header { at, .. } => *at += n as u8,
            Self::Payload(bytes) => bytes.advance(n),
            Self::Local { at, .. } => *at += n,
        }
    }
}

/// A whole text frame, header and payload in one buffer, that this thread
/// shares between many sockets' queues: the gateway's fan-out builds it once
/// a message, and each member's write is then that one buffer.
#[derive(Debug, Clone)]
pub struct LocalFrame(Rc<[u8]>);

impl LocalFrame {
    /// The text frame of `payload`.
    pub fn text(payload: &[u8]) -> Self {
        let (header, used) = frame::header(OpCode::Text, payload.len());
        Self(header[..used].iter().chain(payload).copied().collect())
    }
}

/// A server-side WebSocket (after the 101): the connection's loop owns it
/// and reads from it; its write side, the [`Outlet`], may be shared.
pub struct WebSocket {
    out: Rc<Outlet>,
    /// Bytes read and not yet parsed; `None` while there are none.
    inbound: Option<BytesMut>,
    /// A fragmented message being put together.
    fragments: Option<(OpCode, BytesMut)>,
    max_message: usize,
}

/// The write side of a WebSocket. Shared on its worker thread by the
/// connection's loop and whatever else writes to the client (the gateway's
/// fan-out writes chat straight to caught-up members); every method is
/// synchronous, so no borrow of its queue outlives a call.
pub struct Outlet {
    io: TcpStream,
    queue: RefCell<Outbound>,
    max_backlog: usize,
    /// The task of the loop that reads this socket, woken when another
    /// writer leaves bytes the socket did not take: its [`WebSocket::recv`]
    /// writes them as the socket takes them.
    owner: AtomicWaker,
}

/// Frames waiting for the socket.
#[derive(Default)]
pub(super) struct Outbound {
    chunks: VecDeque<Chunk>,
    bytes: usize,
    close_sent: bool,
}

impl std::fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("out", &self.out)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Outlet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outlet")
            .field("peer", &self.io.peer_addr().ok())
            .field("outbound_bytes", &self.queue.borrow().bytes)
            .finish_non_exhaustive()
    }
}

impl WebSocket {
    /// Takes over `io` after the handshake; `read` holds whatever the client
    /// sent after its request (frames may follow the handshake at once).
    pub fn new(io: TcpStream, read: BytesMut, limits: Limits) -> Self {
        let _ = io.set_nodelay(true);
        if limits.send_buffer > 0 {
            let _ = socket2::SockRef::from(&io).set_send_buffer_size(limits.send_buffer);
        }
        Self {
            out: Rc::new(Outlet {
                io,
                queue: RefCell::default(),
                max_backlog: limits.max_backlog,
                owner: AtomicWaker::new(),
            }),
            inbound: (!read.is_empty()).then_some(read),
            fragments: None,
            max_message: limits.max_message,
        }
    }

    /// The write side, for another writer on this worker thread.
    pub fn outlet(&self) -> &Rc<Outlet> {
        &self.out
    }

    /// The next message from the client; meanwhile, whatever the socket did
    /// not take yet is written as it can. Cancel-safe: a message is never
    /// half taken.
    pub async fn recv(&mut self) -> Result<Message, WsError> {
        loop {
            if let Some(message) = self.parse_buffered()? {
                return Ok(message);
            }
            // Polled, not awaited: `readable()` and `ready()` futures join
            // (and, dropped when another branch of the caller's `select!`
            // wins, leave) a waiter list under a lock; the poll methods keep
            // one waker per direction in place.
            let out = &*self.out;
            let (readable, writable) = std::future::poll_fn(|cx| {
                // Asked at every poll: another writer may have left bytes
                // since (and woken this task to say so).
                out.owner.register(cx.waker());
                let wants_write = out.has_backlog();
                let writable = wants_write && out.io.poll_write_ready(cx)?.is_ready();
                let readable = out.io.poll_read_ready(cx)?.is_ready();
                if readable || writable {
                    Poll::Ready(Ok::<_, io::Error>((readable, writable)))
                } else {
                    Poll::Pending
                }
            })
            .await?;
            if writable {
                let was_backlogged = self.backlogged();
                self.flush_now()?;
                if was_backlogged && !self.backlogged() {
                    return Ok(Message::Drained);
                }
            }
            if readable {
                self.read_some()?;
            }
        }
    }

    /// Reads what the socket has (no waiting).
    fn read_some(&mut self) -> Result<(), WsError> {
        let buf = self
            .inbound
            .get_or_insert_with(|| BytesMut::with_capacity(READ_CHUNK));
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        match self.out.io.try_read_buf(buf) {
            Ok(0) => Err(WsError::Gone(None)),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A whole message from the bytes already read, if there is one.
    fn parse_buffered(&mut self) -> Result<Option<Message>, WsError> {
        loop {
            let Some(buf) = self.inbound.as_mut() else {
                return Ok(None);
            };
            let taken = self.fragments.as_ref().map_or(0, |(_, m)| m.len());
            let parsed = frame::parse(buf, self.max_message.saturating_sub(taken));
            if buf.is_empty() {
                // Idle again: hold no buffer.
                self.inbound = None;
            }
            let Some(frame) = parsed? else {
                return Ok(None);
            };
            match frame.opcode {
                OpCode::Ping => return Ok(Some(Message::Ping(frame.payload.freeze()))),
                OpCode::Pong => return Ok(Some(Message::Pong(frame.payload.freeze()))),
                OpCode::Close => return close_reason(frame.payload).map(Some),
                OpCode::Text | OpCode::Binary => {
                    if self.fragments.is_some() {
                        return Err(FrameError::Protocol(
                            "a new message began inside a fragmented one",
                        )
                        .into());
                    }
                    if frame.fin {
                        return whole(frame.opcode, frame.payload).map(Some);
                    }
                    self.fragments = Some((frame.opcode, frame.payload));
                }
                OpCode::Continuation => {
                    let Some((opcode, mut message)) = self.fragments.take() else {
                        return Err(
                            FrameError::Protocol("a continuation frame without a message").into(),
                        );
                    };
                    message.extend_from_slice(&frame.payload);
                    if frame.fin {
                        return whole(opcode, message).map(Some);
                    }
                    self.fragments = Some((opcode, message));
                }
            }
        }
    }

    /// Sends a text message (its payload shared, not copied): written now
    /// as far as the socket takes it; the rest waits and goes out while
    /// [`Self::recv`] waits.
    pub fn send_text(&mut self, payload: Bytes) -> Result<(), WsError> {
        self.out.send_text(payload)
    }

    /// Queues a text message without writing: several queued messages go out
    /// in one `sendmsg` at the next [`Self::flush_now`].
    pub fn queue_text(&mut self, payload: Bytes) -> Result<(), WsError> {
        self.out.queue_text(payload)
    }

    /// Sends a ping.
    pub fn ping(&mut self, payload: Bytes) -> Result<(), WsError> {
        self.out.queue(OpCode::Ping, payload)?;
        self.out.flush_now()
    }

    /// Answers a ping.
    pub fn pong(&mut self, payload: Bytes) -> Result<(), WsError> {
        self.out.queue(OpCode::Pong, payload)?;
        self.out.flush_now()
    }

    /// Whether bytes wait for the socket ([`Self::recv`] writes them as it
    /// can).
    pub fn has_backlog(&self) -> bool {
        self.out.has_backlog()
    }

    /// Whether more than [`HIGH_WATER`] bytes wait: send nothing new that
    /// can wait (events) until [`Message::Drained`].
    pub fn backlogged(&self) -> bool {
        self.out.backlogged()
    }

    /// Bytes of buffer this connection holds now (inbound, fragments and
    /// outbound queue; payloads shared with other connections not counted).
    pub fn held_bytes(&self) -> usize {
        self.inbound.as_ref().map_or(0, BytesMut::capacity)
            + self.fragments.as_ref().map_or(0, |(_, m)| m.capacity())
            + self.out.queue.borrow().chunks.capacity() * std::mem::size_of::<Chunk>()
    }

    /// Writes what is queued as far as the socket takes it now.
    pub fn flush_now(&mut self) -> Result<(), WsError> {
        self.out.flush_now()
    }

    /// Waits until the socket takes the whole backlog. Cancel-safe.
    pub async fn write_backlog(&mut self) -> Result<(), WsError> {
        while self.has_backlog() {
            self.out.io.writable().await?;
            self.flush_now()?;
        }
        Ok(())
    }

    /// Closes: the close frame (after whatever is queued) written and the
    /// write side shut, then what the client still sends read and dropped
    /// until it closes too, all within `within`. (Closing a socket with
    /// unread bytes would reset it, and the client could lose the close
    /// frame that says why.)
    pub async fn close(&mut self, code: u16, reason: &str, within: std::time::Duration) {
        self.out.queue_close(code, reason);
        let until = tokio::time::Instant::now() + within;
        let _ = tokio::time::timeout_at(until, self.write_backlog()).await;
        let _ = socket2::SockRef::from(&self.out.io).shutdown(std::net::Shutdown::Write);
        self.inbound = None;
        self.fragments = None;
        // On the heap: a future holding it would hold it for every idle
        // connection.
        let mut sink = vec![0u8; 1024];
        let mut left = LINGER_BYTES;
        while left > 0 {
            let read = async {
                loop {
                    self.out.io.readable().await?;
                    match self.out.io.try_read(&mut sink) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        read => return read,
                    }
                }
            };
            match tokio::time::timeout_at(until, read).await {
                Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
                _ => break,
            }
        }
    }
}

impl Outlet {
    /// Sends a text message: written now as far as the socket takes it; the
    /// rest waits for the owner's [`WebSocket::recv`].
    pub fn send_text(&self, payload: Bytes) -> Result<(), WsError> {
        self.queue(OpCode::Text, payload)?;
        self.flush_now()
    }

    /// Queues a text message without writing (see [`Self::flush_now`]).
    pub fn queue_text(&self, payload: Bytes) -> Result<(), WsError> {
        self.queue(OpCode::Text, payload)
    }

    /// Queues a frame this thread shares between many sockets (see
    /// [`Self::queue_text`]): one buffer, whose count is kept without atomic
    /// operations, which would order each socket's memory accesses after
    /// the last one's.
    pub fn queue_local(&self, frame: &LocalFrame) -> Result<(), WsError> {
        let chunk = Chunk::Local {
            frame: Rc::clone(&frame.0),
            at: 0,
        };
        self.push(chunk, None)
    }

    /// Queues a frame's header and, unless it is empty, its payload.
    fn queue(&self, opcode: OpCode, payload: Bytes) -> Result<(), WsError> {
        let header = Chunk::header(opcode, payload.len());
        self.push(
            header,
            (!payload.is_empty()).then(|| Chunk::Payload(payload)),
        )
    }

    /// Queues a frame, in one chunk or two.
    fn push(&self, first: Chunk, second: Option<Chunk>) -> Result<(), WsError> {
        let mut queue = self.queue.borrow_mut();
        if queue.close_sent {
            return Err(WsError::Gone(None));
        }
        queue.bytes += first.as_slice().len() + second.as_ref().map_or(0, |c| c.as_slice().len());
        queue.chunks.push_back(first);
        queue.chunks.extend(second);
        if queue.bytes > self.max_backlog {
            return Err(WsError::SlowReader {
                limit: self.max_backlog,
            });
        }
        Ok(())
    }

    /// Queues the close frame (once), past any backlog limit: it goes out
    /// regardless.
    fn queue_close(&self, code: u16, reason: &str) {
        let mut queue = self.queue.borrow_mut();
        if queue.close_sent {
            return;
        }
        let mut payload = Vec::with_capacity(2 + reason.len().min(123));
        payload.extend_from_slice(&code.to_be_bytes());
        // A close reason has at most 123 bytes; cut at a char boundary.
        let mut cut = reason.len().min(123);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        payload.extend_from_slice(&reason.as_bytes()[..cut]);
        let header = Chunk::header(OpCode::Close, payload.len());
        queue.bytes += header.as_slice().len() + payload.len();
        queue.chunks.push_back(header);
        queue.chunks.push_back(Chunk::Payload(payload.into()));
        queue.close_sent = true;
    }

    /// Whether bytes wait for the socket.
    pub fn has_backlog(&self) -> bool {
        !self.queue.borrow().chunks.is_empty()
    }

    /// Whether more than [`HIGH_WATER`] bytes wait.
    pub fn backlogged(&self) -> bool {
        self.queue.borrow().bytes > HIGH_WATER
    }

    /// Wakes the task that reads this socket, so that it writes what waits
    /// as the socket takes it (call after leaving a backlog behind).
    pub fn wake_owner(&self) {
        self.owner.wake();
    }

    /// Writes what is queued as far as the socket takes it now.
    pub fn flush_now(&self) -> Result<(), WsError> {
        let mut queue = self.queue.borrow_mut();
        while !queue.chunks.is_empty() {
            let mut slices = [IoSlice::new(&[]); WRITE_BATCH];
            let mut count = 0;
            for (slot, chunk) in slices.iter_mut().zip(&queue.chunks) {
                *slot = IoSlice::new(chunk.as_slice());
                count += 1;
            }
            // `sendmsg` on the socket, not `writev` (`try_write_vectored`)
            // through the file layer: at 100,000 deliveries/s the file
            // layer's `vfs_writev` and `fdget_pos` took 8 % of the server's
            // samples, the `sendmsg` path takes 4 %. A would-block clears
            // the readiness as `try_write_vectored` does.
            let socket = socket2::SockRef::from(&self.io);
            match self.io.try_io(Interest::WRITABLE, || {
                socket.send_vectored(&slices[..count])
            }) {
                Ok(0) => return Err(WsError::Gone(None)),
                Ok(written) => queue.consume(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The socket's descriptor, for a write made elsewhere.
    #[cfg(target_os = "linux")]
    pub(super) fn fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.io)
    }

    /// What is queued, as `iovec`s in `slots` (as many as fit): the queue
    /// stays borrowed, so the memory they point to stays put, for as long
    /// as the guard is held. `None` when nothing waits.
    #[cfg(target_os = "linux")]
    pub(super) fn queued<'a>(
        &'a self,
        slots: &mut [libc::iovec],
    ) -> Option<(std::cell::Ref<'a, Outbound>, usize)> {
        let queue = self.queue.borrow();
        let mut count = 0;
        for (slot, chunk) in slots.iter_mut().zip(&queue.chunks) {
            let bytes = chunk.as_slice();
            *slot = libc::iovec {
                iov_base: bytes.as_ptr().cast_mut().cast(),
                iov_len: bytes.len(),
            };
            count += 1;
        }
        (count > 0).then_some((queue, count))
    }

    /// `written` bytes of the queue went out through a write made
    /// elsewhere (after [`Self::queued`]'s guard is dropped).
    #[cfg(target_os = "linux")]
    pub(super) fn wrote(&self, written: usize) {
        self.queue.borrow_mut().consume(written);
    }
}

impl Outbound {
    fn consume(&mut self, mut written: usize) {
        self.bytes -= written;
        while written > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            let len = front.as_slice().len();
            if written < len {
                front.advance(written);
                return;
            }
            written -= len;
            self.chunks.pop_front();
        }
        if self.chunks.is_empty() && self.chunks.capacity() > KEPT_QUEUE {
            self.chunks = VecDeque::new();
        }
    }
}

/// A whole data message, checked.
fn whole(opcode: OpCode, payload: BytesMut) -> Result<Message, WsError> {
    if opcode == OpCode::Binary {
        return Ok(Message::Binary(payload.freeze()));
    }
    ByteString::try_from(payload.freeze())
        .map(Message::Text)
        .map_err(|_| WsError::InvalidUtf8)
}

/// The code and reason of a client's close frame (RFC 6455 section 5.5.1).
fn close_reason(payload: BytesMut) -> Result<Message, WsError> {
    match payload.len() {
        0 => Ok(Message::Close(None)),
        1 => Err(FrameError::Protocol("a close frame with a one-byte body").into()),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            let valid = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            if !valid {
                return Err(FrameError::Protocol("a close code that may not be sent").into());
            }
            let reason = std::str::from_utf8(&payload[2..]).map_err(|_| WsError::InvalidUtf8)?;
            Ok(Message::Close(Some((code, reason.to_owned()))))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    const LIMITS: Limits = Limits {
        max_message: 1024,
        max_backlog: 256 * 1024,
        send_buffer: 0,
    };

    /// A server-side WebSocket and the client's end of its TCP connection.
    async fn pair(leftover: &[u8]) -> (WebSocket, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (
            WebSocket::new(server, BytesMut::from(leftover), LIMITS),
            client,
        )
    }

    /// A client frame as a browser sends it (masked).
    fn masked(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0xA1, 0xB2, 0xC3, 0xD4];
        let mut out = vec![u8::from(fin) << 7 | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// One server frame: its first byte and its payload.
    async fn read_frame(client: &mut TcpStream) -> (u8, Vec<u8>) {
        let mut head = [0u8; 2];
        client.read_exact(&mut head).await.unwrap();
        assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
        let len = match head[1] & 0x7F {
            126 => usize::from(client.read_u16().await.unwrap()),
            127 => usize::try_from(client.read_u64().await.unwrap()).unwrap(),
            n => usize::from(n),
        };
        let mut payload = vec![0u8; len];
        client.read_exact(&mut payload).await.unwrap();
        (head[0], payload)
    }

    /// What the kernel took from `ws` before it would take no more, its
    /// client reading nothing.
    fn taken_by_the_kernel(ws: &mut WebSocket) -> usize {
        let frame = Bytes::from(vec![b'x'; 1000]);
        let mut queued = 0;
        while !ws.has_backlog() {
            ws.queue_text(frame.clone()).unwrap();
            queued += 1004;
            ws.flush_now().unwrap();
            assert!(queued < 64 * 1024 * 1024, "the kernel kept taking");
        }
        queued - ws.out.queue.borrow().bytes
    }

    #[tokio::test]
    async fn a_client_that_reads_nothing_makes_the_kernel_hold_no_more_than_the_send_buffer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let send_buffer = 64 * 1024;
        // The client's receive buffer kept small (a phone on a slow link):
        // what the server's side holds is then its send buffer.
        let client = tokio::net::TcpSocket::new_v4().unwrap();
        client.set_recv_buffer_size(4096).unwrap();
        let _client = client
            .connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let limits = Limits {
            send_buffer,
            ..LIMITS
        };
        let mut ws = WebSocket::new(server, BytesMut::new(), limits);
        let set = socket2::SockRef::from(&ws.out.io)
            .send_buffer_size()
            .unwrap();
        // (Linux doubles what it is asked for, for its bookkeeping.)
        assert!((send_buffer..=2 * send_buffer).contains(&set), "{set}");
        let taken = taken_by_the_kernel(&mut ws);
        // The send buffer, and the little the client's side holds.
        assert!(taken <= 2 * send_buffer + 32 * 1024, "{taken}");
        assert!(taken >= send_buffer / 2, "{taken}");
    }

    #[tokio::test]
    async fn messages_arriving_in_pieces_come_back_whole_and_nothing_is_kept() {
        let (mut ws, mut client) = pair(&[]).await;
        // A text message in three fragments, a byte at a time, then a ping.
        let mut bytes = masked(false, 0x1, br#"{"type":"#);
        bytes.extend(masked(false, 0x0, br#""pi"#));
        bytes.extend(masked(true, 0x0, br#"ng"}"#));
        bytes.extend(masked(true, 0x9, b"hb"));
        let writer = tokio::spawn(async move {
            for byte in bytes {
                client.write_all(&[byte]).await.unwrap();
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            client
        });
        assert_eq!(
            ws.recv().await.unwrap(),
            Message::Text(r#"{"type":"ping"}"#.into())
        );
        assert_eq!(
            ws.recv().await.unwrap(),
            Message::Ping(Bytes::from_static(b"hb"))
        );
        let mut client = writer.await.unwrap();
        ws.pong(Bytes::from_static(b"hb")).unwrap();
        ws.send_text(Bytes::from_static(b"hello")).unwrap();
        assert_eq!(read_frame(&mut client).await, (0x8A, b"hb".to_vec()));
        assert_eq!(read_frame(&mut client).await, (0x81, b"hello".to_vec()));
        // Idle: no read buffer, no fragments, only the small kept queue.
        assert!(
            ws.held_bytes() <= KEPT_QUEUE * std::mem::size_of::<Chunk>(),
            "{} bytes held while idle",
            ws.held_bytes()
        );
        assert!(ws.inbound.is_none() && ws.fragments.is_none());
    }

    #[tokio::test]
    async fn bytes_sent_right_after_the_handshake_are_read_first() {
        let (mut ws, mut client) = pair(&masked(true, 0x1, b"early")).await;
        client.write_all(&masked(true, 0x1, b"late")).await.unwrap();
        assert_eq!(ws.recv().await.unwrap(), Message::Text("early".into()));
        assert_eq!(ws.recv().await.unwrap(), Message::Text("late".into()));
    }

    #[tokio::test]
    async fn each_broken_rule_has_its_close_code() {
        let mut too_big = masked(false, 0x1, &[b'a'; 600]);
        too_big.extend(masked(true, 0x0, &[b'a'; 600]));
        let cases: [(&str, Vec<u8>, u16); 5] = [
            ("unmasked", vec![0x81, 0x02, b'h', b'i'], 1002),
            ("declared too long", masked(true, 0x1, &[b'a'; 2000]), 1009),
            ("fragments too long together", too_big, 1009),
            ("not UTF-8", masked(true, 0x1, &[0xFF, 0xFE]), 1007),
            ("continuation first", masked(true, 0x0, b"x"), 1002),
        ];
        for (name, bytes, code) in cases {
            let (mut ws, mut client) = pair(&[]).await;
            client.write_all(&bytes).await.unwrap();
            let error = ws.recv().await.expect_err(name);
            assert_eq!(error.close_code(), Some(code), "{name}: {error}");
            ws.close(code, &error.to_string(), Duration::from_secs(1))
                .await;
            let (first, payload) = read_frame(&mut client).await;
            assert_eq!(first, 0x88, "{name}");
            assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), code, "{name}");
            let mut rest = Vec::new();
            client.read_to_end(&mut rest).await.unwrap();
            assert!(
                rest.is_empty(),
                "{name}: the write side is shut after the close"
            );
        }
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_is_held_back_then_dropped() {
        let (mut ws, client) = pair(&[]).await;
        let payload = Bytes::from(vec![b'x'; 16 * 1024]);
        let mut sent = 0usize;
        // The kernel takes some; then the backlog grows to the high-water
        // mark (events stop) and past the limit (dropped).
        let error = loop {
            match ws.send_text(payload.clone()) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            assert!(sent < 100_000, "never refused");
            if ws.backlogged() {
                assert!(
                    ws.out.queue.borrow().bytes <= LIMITS.max_backlog + payload.len() + MAX_HEADER
                );
            }
        };
        assert!(matches!(error, WsError::SlowReader { .. }), "{error}");
        assert_eq!(error.close_code(), Some(1008));
        drop(client);
    }

    #[tokio::test]
    async fn a_backlog_the_client_reads_ends_in_drained() {
        let (mut ws, mut client) = pair(&[]).await;
        let payload = Bytes::from(vec![b'y'; 16 * 1024]);
        while !ws.backlogged() {
            ws.send_text(payload.clone()).unwrap();
        }
        let reader = tokio::spawn(async move {
            let mut sink = vec![0u8; 64 * 1024];
            while client.read(&mut sink).await.unwrap_or(0) > 0 {}
        });
        let drained = tokio::time::timeout(Duration::from_secs(10), ws.recv())
            .await
            .expect("drained in time")
            .unwrap();
        assert_eq!(drained, Message::Drained);
        assert!(!ws.backlogged());
        reader.abort();
    }
}
