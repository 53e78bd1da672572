//! Length-prefixed postcard frames over any byte stream.
//!
//! A frame is `u32` little-endian payload length, then the payload. A length
//! above [`MAX_FRAME`] is rejected before any allocation; the caller must then
//! drop the connection (the stream is no longer in sync).

use std::io::{self, Read, Write};

use serde::{de::DeserializeOwned, Serialize};

use crate::MAX_FRAME;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("peer closed the connection")]
    Closed,
    #[error("frame of {0} bytes exceeds the maximum of {MAX_FRAME}")]
    TooLarge(usize),
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

/// Read one frame's payload into `buf` (reused between calls). Returns
/// `FrameError::Closed` on a clean end of stream before the first byte.
pub fn read_payload<R: Read>(r: &mut R, buf: &mut Vec<u8>) -> Result<(), FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf)?;
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
