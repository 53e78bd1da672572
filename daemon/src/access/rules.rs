//! Who may connect and who may administer, decided from the peer's
//! credentials (`SO_PEERCRED`) before anything else happens on a
//! connection (DESIGN §4, docs/security.md "Who may connect and
//! administer").
//!
//! - connect: this daemon's effective uid, root, `allowed_uids`, and
//!   members of `allowed_gids` (default: the socket file's group);
//! - administer (`Request::Admin`, `C_InitToken`, `C_Login(CKU_SO)`,
//!   `Request::Status`): this daemon's effective uid, root, `admin_uids`,
//!   and members of `admin_gids` (default: none).
//!
//! Group membership is the peer's effective gid from `SO_PEERCRED`, or one
//! of its supplementary groups read from `/proc/<pid>/status`, which is
//! only consulted when the uid alone does not decide, and only trusted when
//! the same file still shows the peer's uid (a recycled pid of another user
//! proves nothing).

use std::io::Read;

use super::Peer;
use crate::config::Config;

/// This daemon's effective uid.
pub fn daemon_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Whether `peer` may connect. `socket_gid` is the group of the socket file
/// (the default `allowed_gids`).
pub fn may_connect(c: &Config, peer: &Peer, socket_gid: u32) -> bool {
    if peer.uid == 0 || peer.uid == daemon_uid() {
        return true;
    }
    if c.allowed_uids
        .as_ref()
        .is_some_and(|u| u.contains(&peer.uid))
    {
        return true;
    }
    match &c.allowed_gids {
        Some(gids) => in_groups(peer, gids),
        None => in_groups(peer, &[socket_gid]),
    }
}

/// Whether `peer` may administer.
pub fn may_administer(c: &Config, peer: &Peer) -> bool {
    peer.uid == 0
        || peer.uid == daemon_uid()
        || c.admin_uids.contains(&peer.uid)
        || in_groups(peer, &c.admin_gids)
}

fn in_groups(peer: &Peer, gids: &[u32]) -> bool {
    if gids.is_empty() {
        return false;
    }
    if gids.contains(&peer.gid) {
        return true;
    }
    supplementary_groups(peer).is_some_and(|g| g.iter().any(|x| gids.contains(x)))
}

/// Reads at most this much of a `/proc/<pid>` file (status is ~1.5 KiB).
const PROC_READ: usize = 4096;

/// Read a small `/proc/<pid>/<file>` into a fixed buffer.
fn read_proc(pid: u32, file: &str, buf: &mut [u8; PROC_READ]) -> Option<usize> {
    if pid == 0 {
        return None;
    }
    let mut f = std::fs::File::open(format!("/proc/{pid}/{file}")).ok()?;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(n)
}

/// The supplementary groups of the peer's process, if `/proc` still shows
/// that process running as the peer's uid.
pub fn supplementary_groups(peer: &Peer) -> Option<Vec<u32>> {
    let mut buf = [0u8; PROC_READ];
    let n = read_proc(peer.pid, "status", &mut buf)?;
    parse_status_groups(std::str::from_utf8(&buf[..n]).ok()?, peer.uid)
}

/// `Groups:` of a `/proc/<pid>/status` text whose effective uid (second
/// field of `Uid:`) is `uid`.
fn parse_status_groups(text: &str, uid: u32) -> Option<Vec<u32>> {
    let mut uid_ok = false;
    let mut groups = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Uid:") {
            uid_ok = rest.split_whitespace().nth(1) == Some(uid.to_string().as_str());
        } else if let Some(rest) = line.strip_prefix("Groups:") {
            groups = Some(
                rest.split_whitespace()
                    .filter_map(|g| g.parse().ok())
                    .collect(),
            );
        }
    }
    groups.filter(|_| uid_ok)
}

/// The start time of process `pid` (field 22 of `/proc/<pid>/stat`, clock
/// ticks since boot). Together with the pid it names one process for its
/// whole life, which is how the daemon tells that an application whose
/// connections were closed for idleness is still there.
pub fn process_start(pid: u32) -> Option<u64> {
    let mut buf = [0u8; PROC_READ];
    let n = read_proc(pid, "stat", &mut buf)?;
    parse_stat_start(std::str::from_utf8(&buf[..n]).ok()?)
}

fn parse_stat_start(stat: &str) -> Option<u64> {
    // "pid (comm) state ppid ..."; comm may hold spaces and parentheses,
    // so count fields after the last ')'. Field 3 (state) is the first.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(22 - 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let c: Config =
            toml::from_str(&format!("data_dir = \"/d\"\nsocket = \"/s\"\n{extra}")).expect("parse");
        c
    }

    fn peer(uid: u32, gid: u32) -> Peer {
        // pid 0: no /proc lookup, so only the effective gid counts.
        Peer { uid, gid, pid: 0 }
    }

    #[test]
    fn defaults_admit_daemon_uid_root_and_the_socket_group() {
        let c = config("");
        let me = daemon_uid();
        assert!(may_connect(&c, &peer(0, 0), 4242));
        assert!(may_connect(&c, &peer(me, 12345), 4242));
        assert!(may_connect(&c, &peer(65534, 4242), 4242), "socket group");
        assert!(!may_connect(&c, &peer(65534, 65534), 4242));
        assert!(may_administer(&c, &peer(0, 0)));
        assert!(may_administer(&c, &peer(me, 1)));
        assert!(!may_administer(&c, &peer(65534, 4242)));
    }

    #[test]
    fn configured_lists_replace_the_group_default() {
        let c = config(
            "allowed_uids = [1000]\nallowed_gids = [77]\nadmin_uids = [1000]\nadmin_gids = [88]\n",
        );
        assert!(may_connect(&c, &peer(1000, 1), 4242));
        assert!(may_connect(&c, &peer(2000, 77), 4242));
        assert!(
            !may_connect(&c, &peer(2000, 4242), 4242),
            "socket group no longer implied"
        );
        assert!(may_administer(&c, &peer(1000, 1)));
        assert!(may_administer(&c, &peer(2000, 88)));
        assert!(!may_administer(&c, &peer(2000, 77)));
        let only_uids = config("allowed_uids = [1000]\nallowed_gids = []\n");
        assert!(!may_connect(&only_uids, &peer(2000, 4242), 4242));
    }

    #[test]
    fn proc_parsing() {
        let status =
            "Name:\tx\nUid:\t1000\t1000\t1000\t1000\nGid:\t100\t100\t100\t100\nGroups:\t4 24 27 \n";
        assert_eq!(parse_status_groups(status, 1000), Some(vec![4, 24, 27]));
        assert_eq!(
            parse_status_groups(status, 1001),
            None,
            "another uid's process"
        );
        let stat =
            "123 (a b) c) S 1 123 123 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_stat_start(stat), Some(987_654));
        let me = std::process::id();
        assert!(process_start(me).is_some());
        assert_eq!(process_start(me), process_start(me));
        let own = supplementary_groups(&Peer {
            uid: daemon_uid(),
            gid: 0,
            pid: me,
        });
        assert!(own.is_some(), "our own /proc status is readable");
    }
}
