//! The client's only raw system call: reading a terminal's size. Kept here
//! so that, as everywhere in the workspace, `unsafe` lives only in `sys`.

/// The size (rows, columns) of the terminal on `fd`, if it is one.
pub(crate) fn window_size(fd: libc::c_int) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which
    // points to a live, aligned local of that type; on a descriptor that is
    // not a terminal it fails with ENOTTY and writes nothing.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}
