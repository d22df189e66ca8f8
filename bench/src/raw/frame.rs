//! The few bits of RFC 6455 framing a raw member needs: whole server
//! frames out of a buffer (unmasked, unfragmented), and masked client
//! frames.

use std::io;

pub const OP_TEXT: u8 = 0x1;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// A server frame, borrowed from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Text(&'a [u8]),
    Ping(&'a [u8]),
    Close,
    Other,
}

/// The header of the frame at the start of `buf`: (opcode, header length,
/// payload length), or `None` if the header has not fully arrived.
pub fn header(buf: &[u8]) -> io::Result<Option<(u8, usize, usize)>> {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    if b0 & 0x80 == 0 || b0 & 0x0F == 0 {
        return Err(invalid("fragmented messages are not supported"));
    }
    if b1 & 0x80 != 0 {
        return Err(invalid("a masked frame from the server"));
    }
    let (head, len) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (4, usize::from(u16::from_be_bytes([b[0], b[1]]))),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut n = [0u8; 8];
                n.copy_from_slice(b);
                let len = usize::try_from(u64::from_be_bytes(n))
                    .map_err(|_| invalid("frame too large"))?;
                (10, len)
            }
            None => return Ok(None),
        },
        n => (2, usize::from(n)),
    };
    Ok(Some((b0 & 0x0F, head, len)))
}

/// Calls `on_frame` for every whole frame at the start of `buf`; how many
/// bytes they took.
pub fn frames(buf: &[u8], on_frame: &mut impl FnMut(Frame<'_>)) -> io::Result<usize> {
    let mut at = 0;
    while let Some((opcode, head, len)) = header(&buf[at..])? {
        let end = len
            .checked_add(at + head)
            .ok_or_else(|| invalid("frame too large"))?;
        let Some(payload) = buf.get(at + head..end) else {
            break;
        };
        on_frame(match opcode {
            OP_TEXT => Frame::Text(payload),
            OP_PING => Frame::Ping(payload),
            OP_CLOSE => Frame::Close,
            _ => Frame::Other,
        });
        at = end;
    }
    Ok(at)
}

pub fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_owned())
}

/// A client frame: FIN, `opcode`, masked with a fresh key as RFC 6455
/// requires of clients.
pub fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let uuid = uuid::Uuid::new_v4();
    let key = &uuid.as_bytes()[..4];
    out.extend_from_slice(key);
    out.extend(payload.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server frame (unmasked).
    fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        if payload.len() < 126 {
            f.push(payload.len() as u8);
        } else {
            f.push(126);
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn frames_are_split_and_partial_ones_wait() {
        let long = vec![b'x'; 300];
        let mut buf = server_frame(OP_TEXT, b"one");
        buf.extend(server_frame(OP_PING, b"p"));
        buf.extend(server_frame(OP_TEXT, &long));
        let whole = buf.len();
        buf.extend(&server_frame(OP_TEXT, b"cut")[..3]);
        let mut seen = Vec::new();
        let used = frames(&buf, &mut |f| {
            seen.push(match f {
                Frame::Text(t) => format!("text {}", t.len()),
                other => format!("{other:?}"),
            })
        })
        .unwrap();
        assert_eq!(used, whole);
        assert_eq!(seen, ["text 3", "Ping([112])", "text 300"]);
    }

    #[test]
    fn client_frames_unmask_to_their_payload() {
        let f = masked(OP_TEXT, b"hello");
        assert_eq!(f[0], 0x81);
        assert_eq!(f[1], 0x80 | 5);
        let key = &f[2..6];
        let payload: Vec<u8> = f[6..]
            .iter()
            .zip(key.iter().cycle())
            .map(|(b, k)| b ^ k)
            .collect();
        assert_eq!(payload, b"hello");
    }
}
