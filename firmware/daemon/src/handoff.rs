//! The channel a daemon hands itself over to its successor through (a
//! relay upgrade): a `SOCK_SEQPACKET` Unix socket pair, one end inherited by
//! the new process, carrying whole messages, each with up to
//! [`MAX_FDS`] file descriptors (SCM_RIGHTS). Blocking, with a timeout on
//! every call: run it on a blocking thread.
//!
//! What the messages mean is the daemon's business; this module only moves
//! them, and never leaves a received descriptor unowned.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, setsockopt,
    sockopt,
};

/// Most descriptors in one message (the kernel allows 253).
pub const MAX_FDS: usize = 200;

/// Largest message: well under the socket's buffer.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// One end of a handover channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// A connected pair: this end (close-on-exec), and the end for the new
    /// process — inheritable across `exec`, to be closed here once the new
    /// process is started.
    pub fn pair() -> std::io::Result<(Channel, OwnedFd)> {
        let (ours, theirs) = nix::sys::socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::empty(),
        )?;
        nix::fcntl::fcntl(
            &ours,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )?;
        Ok((Channel { fd: ours }, theirs))
    }

    /// The end a predecessor passed as descriptor `fd` (its number given on
    /// the command line). It must be a Unix `SOCK_SEQPACKET` socket.
    #[allow(unsafe_code)]
    pub fn inherited(fd: RawFd) -> std::io::Result<Channel> {
        if fd < 3 {
            return Err(std::io::Error::other(format!(
                "descriptor {fd} is a standard stream, not a handover channel"
            )));
        }
        // The descriptor must exist before it is owned.
        nix::fcntl::fcntl(
            // SAFETY: borrowed only for this call; `fcntl` fails with EBADF
            // on a closed descriptor.
            unsafe { BorrowedFd::borrow_raw(fd) },
            nix::fcntl::FcntlArg::F_GETFD,
        )
        .map_err(|e| std::io::Error::other(format!("descriptor {fd}: {e}")))?;
        // SAFETY: the descriptor is open (checked above) and was passed to
        // this process for it alone: nothing else owns or closes it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let ty = nix::sys::socket::getsockopt(&fd, sockopt::SockType)
            .map_err(|e| std::io::Error::other(format!("not a socket: {e}")))?;
        if ty != SockType::SeqPacket {
            return Err(std::io::Error::other(
                "not a handover channel (a SOCK_SEQPACKET socket)",
            ));
        }
        nix::fcntl::fcntl(
            &fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )?;
        Ok(Channel { fd })
    }

    /// Every later call fails after `t` without progress.
    pub fn set_timeout(&self, t: Duration) -> std::io::Result<()> {
        let tv = nix::sys::time::TimeVal::new(
            t.as_secs() as nix::sys::time::time_t,
            t.subsec_micros() as nix::sys::time::suseconds_t,
        );
        setsockopt(&self.fd, sockopt::ReceiveTimeout, &tv)?;
        setsockopt(&self.fd, sockopt::SendTimeout, &tv)?;
        Ok(())
    }

    /// Sends one message with `fds` (at most [`MAX_FDS`]).
    pub fn send(&self, msg: &[u8], fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
        if fds.len() > MAX_FDS || msg.len() > MAX_MESSAGE || msg.is_empty() {
            return Err(std::io::Error::other(format!(
                "message of {} bytes with {} descriptors is out of bounds",
                msg.len(),
                fds.len()
            )));
        }
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let cmsgs = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsgs };
        let n = nix::sys::socket::sendmsg::<()>(
            self.fd.as_raw_fd(),
            &[IoSlice::new(msg)],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )?;
        if n != msg.len() {
            return Err(std::io::Error::other("message sent in part"));
        }
        Ok(())
    }

    /// Receives one message and the descriptors that came with it (owned,
    /// close-on-exec). The peer closing is `UnexpectedEof`.
    #[allow(unsafe_code)]
    pub fn recv(&self) -> std::io::Result<(Vec<u8>, Vec<OwnedFd>)> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
        let (len, truncated, fds) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = nix::sys::socket::recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )?;
            let mut fds = Vec::new();
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::ScmRights(raw) = c {
                        // SAFETY: the kernel just installed these
                        // descriptors in this process for this message;
                        // nothing else knows of them.
                        fds.extend(
                            raw.into_iter()
                                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                        );
                    }
                }
            }
            let truncated =
                msg.flags.contains(MsgFlags::MSG_TRUNC) || msg.flags.contains(MsgFlags::MSG_CTRUNC);
            (msg.bytes, truncated, fds)
        };
        if truncated {
            return Err(std::io::Error::other("message or descriptors truncated"));
        }
        if len == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.truncate(len);
        Ok((buf, fds))
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn messages_carry_descriptors_that_stay_usable() {
        let (a, b) = Channel::pair().unwrap();
        let b = Channel { fd: b };
        let (mut x, y) = std::os::unix::net::UnixStream::pair().unwrap();
        a.send(b"sockets", &[y.as_fd()]).unwrap();
        drop(y);
        let (msg, fds) = b.recv().unwrap();
        assert_eq!(msg, b"sockets");
        assert_eq!(fds.len(), 1);
        let mut y = std::os::unix::net::UnixStream::from(fds.into_iter().next().unwrap());
        x.write_all(b"still open").unwrap();
        let mut got = [0u8; 10];
        y.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"still open");
        // Message boundaries are kept.
        a.send(b"one", &[]).unwrap();
        a.send(b"two", &[]).unwrap();
        assert_eq!(b.recv().unwrap().0, b"one");
        assert_eq!(b.recv().unwrap().0, b"two");
        drop(a);
        assert_eq!(
            b.recv().unwrap_err().kind(),
            std::io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn a_silent_peer_times_out_and_bad_descriptors_are_refused() {
        let (a, _b) = Channel::pair().unwrap();
        a.set_timeout(Duration::from_millis(50)).unwrap();
        assert!(a.recv().is_err());
        assert!(Channel::inherited(1).is_err());
        let (s, _t) = std::os::unix::net::UnixStream::pair().unwrap();
        let raw = s.as_raw_fd();
        std::mem::forget(s);
        let e = Channel::inherited(raw).unwrap_err();
        assert!(e.to_string().contains("SOCK_SEQPACKET"), "{e}");
        assert!(a.send(&[], &[]).is_err());
    }
}
