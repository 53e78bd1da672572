//! Socket set-up (issue 10, finding 9, daemon side): the daemon never
//! deletes what is not a stale socket of its own, and the socket is never
//! reachable with other permissions than the configured ones. (Replacing a
//! stale socket of our own after a crash is covered by `restart.rs`.)

mod support;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::time::Duration;

use support::*;

#[test]
fn regular_file_at_the_socket_path_is_refused_and_kept() {
    let mut d = ConfDaemon::prepare("");
    std::fs::write(d.socket(), b"precious data").expect("write");
    d.spawn();
    let st = d.wait_exit().expect("the daemon exits instead of serving");
    assert!(!st.success(), "exit status {st}");
    assert!(
        d.log().contains("regular file") && d.log().contains("refusing to replace it"),
        "log says why:\n{}",
        d.log()
    );
    assert_eq!(
        std::fs::read(d.socket()).expect("file kept"),
        b"precious data"
    );
}

#[test]
fn socket_of_another_uid_is_not_replaced() {
    let mut d = ConfDaemon::prepare("");
    // A stale socket (nobody listens) that belongs to uid 65534.
    drop(std::os::unix::net::UnixListener::bind(d.socket()).expect("bind"));
    std::os::unix::fs::chown(d.socket(), Some(NOBODY), Some(NOBODY)).expect("chown");
    d.spawn();
    let st = d.wait_exit().expect("the daemon exits instead of serving");
    assert!(!st.success(), "exit status {st}");
    assert!(d.log().contains("owned by uid 65534"), "log:\n{}", d.log());
    let m = std::fs::symlink_metadata(d.socket()).expect("socket kept");
    assert!(m.file_type().is_socket());
    assert_eq!(m.uid(), NOBODY);
}

/// The socket's permissions are final when it appears at its path: inotify
/// on the directory sees the name arrive (bound elsewhere and moved in) and
/// never sees its attributes change afterwards — the old code bound at the
/// path and chmod-ed after, leaving a moment with the umask's mode.
#[test]
fn socket_appears_with_its_final_mode() {
    let mut d = ConfDaemon::prepare("socket_mode = \"0600\"\n");
    let path = d.socket();
    let name = path.file_name().expect("name").to_os_string();
    let watch = Inotify::watch(d.dir());
    d.spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&path).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "daemon did not listen:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let events: Vec<u32> = watch
        .events()
        .into_iter()
        .filter(|(n, _)| *n == name)
        .map(|(_, mask)| mask)
        .collect();
    assert!(
        events
            .iter()
            .any(|m| m & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0),
        "the socket never appeared: {events:x?}"
    );
    assert!(
        events.iter().all(|m| m & libc::IN_ATTRIB == 0),
        "the socket's attributes changed after it appeared (events {events:x?})"
    );
    let mode = std::fs::symlink_metadata(&path).expect("socket").mode() & 0o7777;
    assert_eq!(mode, 0o600);
}

/// A minimal inotify reader on one directory.
struct Inotify(std::os::fd::OwnedFd);

impl Inotify {
    fn watch(dir: &std::path::Path) -> Inotify {
        use std::os::fd::FromRawFd;
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: plain syscalls; the fd is owned by the returned value.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0, "inotify_init1");
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).expect("path");
        let mask = libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_ATTRIB;
        // SAFETY: valid fd and NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), mask) };
        assert!(wd >= 0, "inotify_add_watch");
        Inotify(owned)
    }

    /// Every (name, mask) event queued so far.
    fn events(&self) -> Vec<(std::ffi::OsString, u32)> {
        use std::os::fd::AsRawFd;
        use std::os::unix::ffi::OsStrExt;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: reading into our buffer of its length.
            let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return out;
            }
            let mut off = 0usize;
            let hdr = std::mem::size_of::<libc::inotify_event>();
            while off + hdr <= n as usize {
                // SAFETY: the kernel wrote a whole event header at `off`.
                let ev: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
                let name = &buf[off + hdr..off + hdr + ev.len as usize];
                let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
                out.push((
                    std::ffi::OsStr::from_bytes(&name[..end]).to_os_string(),
                    ev.mask,
                ));
                off += hdr + ev.len as usize;
            }
        }
    }
}
