//! Length-prefixed postcard frames over any byte stream.
//!
//! A frame is `u32` little-endian payload length, then the payload. A length
//! above [`MAX_FRAME`] is rejected before any allocation; the caller must then
//! drop the connection (the stream is no longer in sync).
//!
//! A length within bounds is still only a claim: the payload buffer grows
//! with the bytes that actually arrive (at most about twice what was
//! received, see [`read_payload`]), so a peer that announces 80 MiB and
//! sends one byte costs a few KiB, not 80 MiB. The first frame of a
//! connection (the handshake) is bounded much tighter, by [`MAX_HELLO`].

use std::io::{self, Read, Write};

use serde::{de::DeserializeOwned, Serialize};

use crate::MAX_FRAME;

/// Largest payload of the handshake frame (`Request::Hello` is about 30
/// bytes). The daemon reads it into a fixed buffer of this size before it
/// has spent anything else on the connection.
pub const MAX_HELLO: usize = 1024;

/// First size the payload buffer grows to; afterwards it at most doubles
/// per step, and only once the bytes already received have filled it.
const FIRST_GROWTH: usize = 4 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("peer closed the connection")]
    Closed,
    #[error("frame of {0} bytes exceeds the maximum of {MAX_FRAME}")]
    TooLarge(usize),
    #[error("handshake frame of {0} bytes exceeds the maximum of {MAX_HELLO}")]
    HelloTooLarge(usize),
    #[error("malformed frame: {0}")]
    Malformed(#[from] postcard::Error),
}

/// Encode `msg` into a complete frame (length prefix included).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    // Size first (a counting pass, no copies), so the frame is written into
    // one allocation of the right size instead of a doubling Vec.
    let size = postcard::experimental::serialized_size(msg)?;
    if size > MAX_FRAME {
        return Err(FrameError::TooLarge(size));
    }
    let mut buf = Vec::with_capacity(4 + size);
    buf.extend_from_slice(&[0u8; 4]);
    let mut buf = postcard::to_extend(msg, buf)?;
    let len = buf.len() - 4;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let prefix = u32::try_from(len)
        .map_err(|_| FrameError::TooLarge(len))?
        .to_le_bytes();
    buf[..4].copy_from_slice(&prefix);
    Ok(buf)
}

/// Decode a frame payload (without the length prefix).
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    Ok(postcard::from_bytes(payload)?)
}

/// Write one message as a frame, in a single `write_all`.
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    let buf = encode(msg)?;
    w.write_all(&buf)?;
    Ok(())
}

/// The payload length announced by a frame's 4-byte prefix, refused when it
/// exceeds `max` ([`MAX_FRAME`] for requests, [`MAX_HELLO`] for the
/// handshake).
pub fn payload_len(prefix: [u8; 4], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len <= max {
        Ok(len)
    } else if max == MAX_HELLO {
        Err(FrameError::HelloTooLarge(len))
    } else {
        Err(FrameError::TooLarge(len))
    }
}

/// Read one frame's payload into `buf` (reused between calls). Returns
/// `FrameError::Closed` on a clean end of stream before the first byte.
/// [`read_len`] then [`read_body`], for callers that look at the length
/// in between.
pub fn read_payload<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> Result<(), FrameError> {
    let len = read_len(r)?;
    read_body(r, buf, len)
}

/// Read a frame's length prefix, refused above [`MAX_FRAME`]. Returns
/// `FrameError::Closed` on a clean end of stream before the first byte.
pub fn read_len<R: Read>(r: &mut R) -> Result<usize, FrameError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut prefix[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    payload_len(prefix, MAX_FRAME)
}

/// Read a payload of `len` bytes into `buf`.
///
/// The announced length is never allocated up front: `buf` grows as bytes
/// arrive, to at most twice the bytes received so far (and at least
/// [`FIRST_GROWTH`]), so its size is paid for by data the peer really sent.
/// A buffer kept from an earlier, larger frame is reused as it is.
pub fn read_body<R: Read>(r: &mut R, buf: &mut Vec<u8>, len: usize) -> Result<(), FrameError> {
    buf.clear();
    let mut filled = 0;
    while filled < len {
        if filled == buf.len() {
            let next = len.min(filled.saturating_mul(2).max(FIRST_GROWTH));
            buf.resize(next, 0);
        }
        match r.read(&mut buf[filled..]) {
            Ok(0) => {
                buf.truncate(filled);
                return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                buf.truncate(filled);
                return Err(e.into());
            }
        }
    }
    buf.truncate(len);
    Ok(())
}

/// Read and decode one frame.
pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<T, FrameError> {
    let mut buf = Vec::new();
    read_payload(r, &mut buf)?;
    decode(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Request, Response};

    #[test]
    fn frame_roundtrip() {
        let mut wire = Vec::new();
        write_frame(
            &mut wire,
            &Request::GenerateRandom {
                session: 5,
                len: 32,
            },
        )
        .expect("write");
        write_frame(&mut wire, &Response::Bytes(vec![9; 32])).expect("write");
        let mut r = &wire[..];
        let a: Request = read_frame(&mut r).expect("read");
        let b: Response = read_frame(&mut r).expect("read");
        assert_eq!(
            a,
            Request::GenerateRandom {
                session: 5,
                len: 32
            }
        );
        assert_eq!(b, Response::Bytes(vec![9; 32]));
        assert!(matches!(
            read_frame::<_, Request>(&mut r),
            Err(FrameError::Closed)
        ));
    }

    #[test]
    fn oversized_length_rejected_without_allocation() {
        let wire = u32::MAX.to_le_bytes();
        let mut r = &wire[..];
        assert!(matches!(
            read_frame::<_, Request>(&mut r),
            Err(FrameError::TooLarge(_))
        ));
    }

    /// A reader that yields its bytes and then fails as a socket whose peer
    /// went quiet would (timeout), remembering nothing else.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            let n = out.len().min(self.0.len()).min(1);
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// Finding 2 of issue 10: an 80 MiB announcement followed by one byte
    /// used to allocate (and zero) the whole 80 MiB.
    #[test]
    fn announced_length_is_not_allocated_before_the_bytes_arrive() {
        let mut wire = ((80 * 1024 * 1024) as u32).to_le_bytes().to_vec();
        wire.push(7);
        let mut buf = Vec::new();
        let r = read_payload(&mut Trickle(&wire), &mut buf);
        assert!(matches!(r, Err(FrameError::Io(ref e)) if e.kind() == io::ErrorKind::TimedOut));
        assert!(
            buf.capacity() <= 2 * FIRST_GROWTH,
            "one byte received, {} bytes reserved",
            buf.capacity()
        );
    }

    #[test]
    fn buffer_grows_to_at_most_twice_what_arrived() {
        let mut wire = (1_000_000u32).to_le_bytes().to_vec();
        wire.extend(std::iter::repeat_n(1u8, 100_000));
        let mut buf = Vec::new();
        assert!(read_payload(&mut &wire[..], &mut buf).is_err());
        assert!(buf.len() <= 100_000);
        assert!(
            buf.capacity() <= 2 * 100_000 + FIRST_GROWTH,
            "100 kB received, {} bytes reserved",
            buf.capacity()
        );
        // A complete large frame still arrives whole.
        let big = Request::GenerateRandom { session: 3, len: 1 };
        let mut wire = Vec::new();
        write_frame(&mut wire, &Response::Bytes(vec![5; 3 * 1024 * 1024])).expect("write");
        write_frame(&mut wire, &big).expect("write");
        let mut r = &wire[..];
        let mut buf = Vec::new();
        read_payload(&mut r, &mut buf).expect("big frame");
        assert_eq!(
            decode::<Response>(&buf).expect("decode"),
            Response::Bytes(vec![5; 3 * 1024 * 1024])
        );
        read_payload(&mut r, &mut buf).expect("next frame");
        assert_eq!(decode::<Request>(&buf).expect("decode"), big);
    }

    #[test]
    fn hello_bound_is_checked_on_the_prefix() {
        assert_eq!(payload_len(30u32.to_le_bytes(), MAX_HELLO).ok(), Some(30));
        assert!(matches!(
            payload_len(((MAX_HELLO + 1) as u32).to_le_bytes(), MAX_HELLO),
            Err(FrameError::HelloTooLarge(_))
        ));
        assert!(matches!(
            payload_len(u32::MAX.to_le_bytes(), MAX_FRAME),
            Err(FrameError::TooLarge(_))
        ));
    }

    #[test]
    fn truncated_and_garbage_frames_are_errors() {
        let mut wire = Vec::new();
        write_frame(&mut wire, &Request::Status).expect("write");
        wire.truncate(wire.len() - 1);
        wire.extend_from_slice(&[]);
        let full = encode(&Request::GenerateRandom { session: 1, len: 1 }).expect("enc");
        let mut r = &full[..full.len() - 1];
        assert!(read_frame::<_, Request>(&mut r).is_err());
        let garbage = [3u8, 0, 0, 0, 0xff, 0xff, 0xff];
        let mut r = &garbage[..];
        assert!(matches!(
            read_frame::<_, Request>(&mut r),
            Err(FrameError::Malformed(_))
        ));
    }
}
