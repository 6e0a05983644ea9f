//! Small operating-system helpers every side needs: a free UDP port for SRT, and room for many
//! sockets.

use std::net::{IpAddr, SocketAddr, UdpSocket};

/// A UDP port free right now on `ip`. The socket is closed again at once: the port is for SRT,
/// which must bind it itself (a UDP port cannot be shared, see `docs/srt-notes.md`).
pub fn free_udp_port(ip: IpAddr) -> Result<u16, String> {
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0))
        .map_err(|e| format!("cannot find a free UDP port on {ip}: {e}"))?;
    socket
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free UDP port on {ip}: {e}"))
}

/// Lets one process hold many sockets: raises the soft open-file limit to the hard limit.
pub fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_port_can_be_bound() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let port = free_udp_port(ip).unwrap();
        assert_ne!(port, 0);
        UdpSocket::bind((ip, port)).expect("the port is free");
    }
}
