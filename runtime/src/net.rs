//! The little networking the runtime itself does: loopback up in a new network namespace.
//! Bridges, veths and addresses belong to the agent's networking (over netlink).

/// Sets `lo` up in the calling process's network namespace.
pub fn loopback_up() -> std::io::Result<()> {
    // SAFETY: socket() has no memory-safety preconditions; the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq naming an interface and outlives both ioctls; `fd` is an
    // open socket. The union field read is the one SIOCGIFFLAGS fills in.
    let res = unsafe {
        let mut r = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if r == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            r = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        }
        r
    };
    let result = if res < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    };
    // SAFETY: `fd` is ours and still open.
    unsafe { libc::close(fd) };
    result
}
