//! Terminal sizes, for `exec` with a terminal: the client reads its own, the node sets its
//! pseudo-terminal's.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// A terminal's size in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// The size of the terminal `fd` is, or `None` when it is not a terminal (or has no size).
pub fn window_size(fd: BorrowedFd<'_>) -> Option<WindowSize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize to the pointer, which is valid for the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0).then_some(WindowSize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}

/// Sets the size of the terminal `fd` (its foreground process group gets SIGWINCH).
pub fn set_window_size(fd: BorrowedFd<'_>, size: WindowSize) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is valid for the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn a_pty_takes_the_size_it_is_given_and_a_file_has_none() {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let size = WindowSize {
            rows: 33,
            cols: 101,
        };
        set_window_size(pty.master.as_fd(), size).expect("set");
        assert_eq!(window_size(pty.slave.as_fd()), Some(size));
        let f = tempfile::tempfile().expect("tempfile");
        assert_eq!(window_size(f.as_fd()), None);
    }
}
