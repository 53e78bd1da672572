//! Waiting for the other end of a socket: one poll with a deadline, and the
//! brief polling both sides do before they sleep in `read()`.
//!
//! On virtual machines a thread sleeping on a socket is woken through the
//! hypervisor, which costs tens of microseconds — more than most PKCS#11
//! calls take. Polling for a few tens of microseconds (yielding the CPU
//! between polls) catches an answer or the next request that is already on
//! its way without that wake-up; anything slower falls back to the ordinary
//! blocking wait. The module (`client.rs`, waiting for an answer) and the
//! daemon (`server/conn.rs`, waiting for the next request) share this one
//! copy; each decides on its own how many of its threads may poll at once.

use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};

/// Wait until `fd` is readable (data, end of stream or an error) or `wait`
/// passes (`None`: forever). Returns whether it became readable. A signal
/// interrupting the wait does not end it early.
pub fn poll_readable(fd: impl AsFd, wait: Option<Duration>) -> io::Result<bool> {
    let deadline = wait.map(|w| Instant::now() + w);
    loop {
        let ts = deadline.map(|d| {
            let left = d.saturating_duration_since(Instant::now());
            Timespec::try_from(left).unwrap_or(Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            })
        });
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, ts.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Poll `fd` without sleeping for up to `budget`, yielding the CPU between
/// polls. Returns whether it was seen readable; `false` also when `budget`
/// is zero or the poll failed (the caller's blocking read then reports
/// what is wrong).
pub fn spin_until_readable(fd: impl AsFd, budget: Duration) -> bool {
    if budget.is_zero() {
        return false;
    }
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let start = Instant::now();
    loop {
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, Some(&zero)) {
            Ok(0) => {}
            Ok(_) => return true,
            Err(_) => return false,
        }
        if start.elapsed() >= budget {
            return false;
        }
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn readable_when_data_or_end_of_stream_arrives() {
        let (a, mut b) = UnixStream::pair().expect("pair");
        assert!(!spin_until_readable(&a, Duration::from_micros(200)));
        assert!(!poll_readable(&a, Some(Duration::from_millis(5))).expect("poll"));
        assert!(!spin_until_readable(&a, Duration::ZERO));
        b.write_all(b"x").expect("write");
        assert!(spin_until_readable(&a, Duration::from_millis(50)));
        assert!(poll_readable(&a, None).expect("poll"));
        let (c, d) = UnixStream::pair().expect("pair");
        drop(d);
        assert!(poll_readable(&c, Some(Duration::from_millis(50))).expect("poll"));
    }
}
