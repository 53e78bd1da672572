//! The daemon survives any byte sequence: garbage frames, an oversized length
//! prefix, a truncated frame or a silent half-open peer cost that connection
//! and nothing else; a real client keeps working throughout.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use cryptoki::mechanism::Mechanism;
use p11kms_e2e::*;

/// Waits until the daemon closes `c` (EOF or reset). A reply frame before the
/// close is allowed (an error answer), so read until the end.
fn closed_by_daemon(mut c: UnixStream, what: &str) {
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    let mut got = 0usize;
    loop {
        match c.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => got += n,
            Err(e)
                if e.kind() == std::io::ErrorKind::ConnectionReset
                    || e.kind() == std::io::ErrorKind::BrokenPipe =>
            {
                return
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("{what}: read error {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the daemon kept the connection open for 10 s ({got} bytes received)"
        );
        assert!(
            got < 1 << 20,
            "{what}: the daemon keeps sending ({got} bytes)"
        );
    }
}

fn connect(d: &Daemon) -> UnixStream {
    UnixStream::connect(d.socket()).expect("connect to the daemon socket")
}

/// The well-behaved client: digest known answer + random through the module.
fn client_works(s: &cryptoki::session::Session, when: &str) {
    let d = s
        .digest(&Mechanism::Sha256, b"abc")
        .unwrap_or_else(|e| panic!("client {when}: C_Digest: {e}"));
    assert_eq!(
        d,
        hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        "client {when}"
    );
    s.generate_random_vec(16)
        .unwrap_or_else(|e| panic!("client {when}: C_GenerateRandom: {e}"));
}

#[test]
fn bad_bytes_cost_only_their_connection() {
    let _g = serial();
    let mut daemon = Daemon::start();
    daemon.export_socket();
    let ctx = context();
    initialize(&ctx);
    let slot = *ctx
        .get_slots_with_token()
        .expect("slots")
        .first()
        .expect("slot");
    let s = ctx.open_ro_session(slot).expect("C_OpenSession");
    client_works(&s, "before");

    // A half-open connection holding a partial frame: must not block anyone.
    let mut idle = connect(&daemon);
    idle.write_all(&[100, 0, 0, 0, 1, 2, 3]).expect("write");

    // 1. Garbage where the handshake should be: a complete frame of junk.
    let mut c = connect(&daemon);
    let mut frame = 64u32.to_le_bytes().to_vec();
    frame.extend_from_slice(&[0xff; 64]);
    c.write_all(&frame).expect("write");
    closed_by_daemon(c, "64-byte frame of 0xff");
    client_works(&s, "after a junk frame");

    // 2. Random bytes.
    let mut c = connect(&daemon);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let junk: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let _ = c.write_all(&junk); // the daemon may close before reading it all
    closed_by_daemon(c, "4 KiB of random bytes");
    client_works(&s, "after random bytes");

    // 3. Oversized length prefix: rejected without allocating.
    for len in [u32::MAX, 0x8000_0000, 80 * 1024 * 1024 + 1] {
        let mut c = connect(&daemon);
        c.write_all(&len.to_le_bytes()).expect("write");
        closed_by_daemon(c, &format!("length prefix {len}"));
    }
    client_works(&s, "after oversized length prefixes");

    // 4. Truncated frame: length 100, 10 bytes, then the writer hangs up.
    let mut c = connect(&daemon);
    c.write_all(&[100, 0, 0, 0]).expect("write");
    c.write_all(&[0u8; 10]).expect("write");
    c.shutdown(std::net::Shutdown::Write).expect("shutdown");
    closed_by_daemon(c, "truncated frame then EOF");

    // 5. Zero-length frame and a frame with trailing bytes after a valid-looking variant.
    let mut c = connect(&daemon);
    c.write_all(&0u32.to_le_bytes()).expect("write");
    closed_by_daemon(c, "zero-length frame");

    // 6. Many connections that connect and vanish.
    for _ in 0..200 {
        drop(connect(&daemon));
    }
    client_works(&s, "after 200 connect/close");

    // 7. A burst of garbage from many threads at once, the client working meanwhile.
    let sock = daemon.socket();
    let noisy: Vec<_> = (0..8)
        .map(|t| {
            let sock = sock.clone();
            std::thread::spawn(move || {
                for i in 0..25u32 {
                    if let Ok(mut c) = UnixStream::connect(&sock) {
                        let n = 1 + ((t * 31 + i * 7) % 50) as usize;
                        let mut f = (n as u32).to_le_bytes().to_vec();
                        f.extend((0..n).map(|j| (j as u32 ^ i ^ t) as u8 | 0x80));
                        let _ = c.write_all(&f);
                        let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                        let mut b = [0u8; 256];
                        while matches!(c.read(&mut b), Ok(n) if n > 0) {}
                    }
                }
            })
        })
        .collect();
    for i in 0..50 {
        client_works(&s, &format!("during the garbage burst ({i})"));
    }
    for n in noisy {
        n.join().expect("noisy thread");
    }

    assert!(daemon.is_running(), "p11kmsd died");
    client_works(&s, "at the end");
    drop(idle);
    drop(s);
    ctx.finalize().expect("C_Finalize");
    assert!(
        daemon.stop(),
        "p11kmsd did not stop cleanly after the abuse"
    );
}
