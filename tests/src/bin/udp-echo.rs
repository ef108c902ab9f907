//! `udp-echo PORT`: answers every UDP datagram with `echo: ` and the datagram. Run inside
//! test containers (with the host's libraries bind-mounted) to check UDP port mappings, since
//! busybox has no UDP server.

use std::net::UdpSocket;

fn main() {
    let port = std::env::args()
        .nth(1)
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| {
            eprintln!("usage: udp-echo PORT");
            std::process::exit(2)
        });
    let sock = UdpSocket::bind(("0.0.0.0", port)).unwrap_or_else(|e| {
        eprintln!("udp-echo: bind port {port}: {e}");
        std::process::exit(1)
    });
    println!("listening on udp port {port}");
    let mut buf = [0u8; 2048];
    loop {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                let mut reply = b"echo: ".to_vec();
                reply.extend_from_slice(&buf[..n]);
                let _ = sock.send_to(&reply, from);
            }
            Err(e) => eprintln!("udp-echo: {e}"),
        }
    }
}
