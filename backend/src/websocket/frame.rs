//! RFC 6455 frames as a server sees them: client frames parsed (masked,
//! bounded before anything is allocated), server frames encoded as a header
//! to write in front of a payload that is shared, never copied, by every
//! connection it goes to.

use bytes::{Buf, BytesMut};

/// Frame opcodes (RFC 6455 section 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Close, ping and pong: never fragmented, at most 125 bytes.
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// Why a client's bytes are not a valid frame; each maps to a close code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Not RFC 6455 (1002): unmasked, reserved bits, unknown opcode, a
    /// fragmented or oversized control frame.
    Protocol(&'static str),
    /// Larger than the limit (1009).
    TooBig { limit: usize },
}

/// A whole client frame, unmasked.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: OpCode,
    pub payload: BytesMut,
}

/// Largest server frame header: 2 bytes, then a 64-bit length.
pub const MAX_HEADER: usize = 10;

/// The header of an unmasked, final server frame of `len` payload bytes;
/// returns the buffer and how many of its bytes are the header.
pub fn header(opcode: OpCode, len: usize) -> ([u8; MAX_HEADER], usize) {
    let mut out = [0u8; MAX_HEADER];
    out[0] = 0x80 | opcode.bits();
    let used = if len < 126 {
        out[1] = len as u8;
        2
    } else if let Ok(short) = u16::try_from(len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    (out, used)
}

/// Takes one whole frame off the front of `buf`, or `None` while it is
/// incomplete. A frame whose declared length exceeds `max_payload` is refused
/// from its header alone, before its payload is read or stored.
pub fn parse(buf: &mut BytesMut, max_payload: usize) -> Result<Option<Frame>, FrameError> {
    let &[first, second, ..] = &buf[..] else {
        return Ok(None);
    };
    if first & 0x70 != 0 {
        return Err(FrameError::Protocol(
            "reserved bits set (no extension was agreed)",
        ));
    }
    let fin = first & 0x80 != 0;
    let opcode = OpCode::from_bits(first & 0x0F).ok_or(FrameError::Protocol("unknown opcode"))?;
    if second & 0x80 == 0 {
        return Err(FrameError::Protocol("client frames must be masked"));
    }
    let (len, mut at) = match second & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut be = [0u8; 8];
                be.copy_from_slice(b);
                (u64::from_be_bytes(be), 10)
            }
            None => return Ok(None),
        },
        short => (u64::from(short), 2),
    };
    if opcode.is_control() && (!fin || len > 125) {
        return Err(FrameError::Protocol(
            "control frames are final and at most 125 bytes",
        ));
    }
    let len = usize::try_from(len)
        .ok()
        .filter(|len| *len <= max_payload)
        .ok_or(FrameError::TooBig { limit: max_payload })?;
    let Some(mask) = buf.get(at..at + 4) else {
        return Ok(None);
    };
    let mask = [mask[0], mask[1], mask[2], mask[3]];
    at += 4;
    if buf.len() < at + len {
        // Room for the rest, now that it is known to be within the limit.
        buf.reserve(at + len - buf.len());
        return Ok(None);
    }
    buf.advance(at);
    let mut payload = buf.split_to(len);
    unmask(&mut payload, mask);
    Ok(Some(Frame {
        fin,
        opcode,
        payload,
    }))
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let value = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame as a browser sends it.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> BytesMut {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut out = BytesMut::new();
        out.extend_from_slice(&[u8::from(fin) << 7 | opcode]);
        match payload.len() {
            n if n < 126 => out.extend_from_slice(&[0x80 | n as u8]),
            n if n <= 0xFFFF => {
                out.extend_from_slice(&[0x80 | 126]);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.extend_from_slice(&[0x80 | 127]);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn frames_of_every_length_form_come_back_unmasked() {
        for len in [0usize, 1, 5, 125, 126, 1000, 65_535, 65_536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut buf = client_frame(true, 0x1, &payload);
            buf.extend_from_slice(&client_frame(true, 0x9, b"next"));
            let frame = parse(&mut buf, 100_000).unwrap().unwrap();
            assert_eq!((frame.fin, frame.opcode), (true, OpCode::Text));
            assert_eq!(&frame.payload[..], &payload[..], "length {len}");
            let next = parse(&mut buf, 100_000).unwrap().unwrap();
            assert_eq!(
                (next.opcode, &next.payload[..]),
                (OpCode::Ping, &b"next"[..])
            );
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn an_incomplete_frame_waits_for_its_bytes() {
        let whole = client_frame(true, 0x1, &[7u8; 300]);
        for cut in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            assert_eq!(parse(&mut buf, 1000).unwrap(), None, "cut at {cut}");
            assert_eq!(buf.len(), cut, "nothing consumed");
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_header() {
        // Only the header of a 1 GiB frame has arrived.
        let mut buf = BytesMut::from(&[0x81, 0x80 | 127, 0, 0, 0, 0, 0x40, 0, 0, 0][..]);
        assert_eq!(
            parse(&mut buf, 16 * 1024),
            Err(FrameError::TooBig { limit: 16 * 1024 })
        );
        assert!(buf.capacity() < 1024, "nothing reserved for it");
    }

    #[test]
    fn what_rfc_6455_forbids_is_a_protocol_error() {
        let unmasked = BytesMut::from(&[0x81, 0x02, b'h', b'i'][..]);
        let reserved = {
            let mut f = client_frame(true, 0x1, b"hi");
            f[0] |= 0x40;
            f
        };
        let unknown = client_frame(true, 0x3, b"");
        let fragmented_ping = client_frame(false, 0x9, b"");
        let long_ping = client_frame(true, 0x9, &[0u8; 126]);
        for (name, mut buf) in [
            ("unmasked", unmasked),
            ("reserved bits", reserved),
            ("unknown opcode", unknown),
            ("fragmented ping", fragmented_ping),
            ("long ping", long_ping),
        ] {
            assert!(
                matches!(parse(&mut buf, 1000), Err(FrameError::Protocol(_))),
                "{name}"
            );
        }
    }

    #[test]
    fn server_headers_use_the_shortest_length_form() {
        assert_eq!(
            header(OpCode::Text, 5),
            ([0x81, 5, 0, 0, 0, 0, 0, 0, 0, 0], 2)
        );
        let (h, n) = header(OpCode::Text, 126);
        assert_eq!(&h[..n], &[0x81, 126, 0, 126]);
        let (h, n) = header(OpCode::Binary, 65_536);
        assert_eq!(&h[..n], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        let (h, n) = header(OpCode::Close, 0);
        assert_eq!(&h[..n], &[0x88, 0]);
    }
}
