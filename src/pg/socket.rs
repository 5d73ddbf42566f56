//! The byte stream to the server: TCP, TLS over TCP, or a unix socket, all on glommio
//! sockets of the current shard.
//!
//! A TCP peer that vanishes without closing (host down, network cut) never sends the FIN
//! that tells the driver the connection is gone. Keepalive probes (for an idle connection,
//! such as the LISTEN one) and `TCP_USER_TIMEOUT` (for a request the server never
//! acknowledged) make the kernel fail the socket after `POSTRUST_DB_TCP_TIMEOUT_MS`, so the
//! driver reports it closed instead of waiting forever. A long query on a healthy server is
//! unaffected: the server acknowledges the request and answers the probes.

use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use futures_rustls::client::TlsStream;
use glommio::net::{TcpStream, UnixStream};

use super::error::Error;
use super::tls::{self, Negotiate};
use super::url::{ConnectConfig, Host};

pub(crate) enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// Writes are buffered in the TLS session until a flush.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Socket {
    /// Connects for one attempt of the URL's `sslmode`: the socket, and over TCP the TLS
    /// request and handshake `negotiate` asks for.
    pub(crate) async fn open(
        config: &ConnectConfig,
        tcp_timeout: Duration,
        negotiate: Negotiate,
    ) -> Result<Socket, Error> {
        let socket = Socket::connect(config, tcp_timeout)
            .await
            .map_err(|e| Error::connect(e.to_string(), None))?;
        match (socket, negotiate) {
            (Socket::Tcp(tcp), Negotiate::IfOffered | Negotiate::Required) => {
                tls::start(tcp, config, negotiate).await
            }
            (socket, _) => Ok(socket),
        }
    }

    /// Channel binding data of a TLS connection (see [`tls::server_end_point`]).
    pub(crate) fn server_end_point(&self) -> Option<Vec<u8>> {
        match self {
            Socket::Tls(stream) => {
                let certificate = stream.get_ref().1.peer_certificates()?.first()?;
                tls::server_end_point(certificate)
            }
            Socket::Tcp(_) | Socket::Unix(_) => None,
        }
    }

    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Socket::Tls(_))
    }

    /// Connects without TLS; `tcp_timeout` (zero: off) bounds how long a silent TCP peer is
    /// trusted.
    async fn connect(config: &ConnectConfig, tcp_timeout: Duration) -> io::Result<Socket> {
        match &config.host {
            Host::Tcp(host) => {
                let stream = connect_any(host, config.port).await?;
                // Requests are small and latency-bound; Nagle would hold a pipeline's tail.
                stream.set_nodelay(true).map_err(io::Error::from)?;
                if let Some(probes) = Probes::for_timeout(tcp_timeout) {
                    probes.apply(stream.as_raw_fd())?;
                }
                Ok(Socket::Tcp(stream))
            }
            Host::Unix(_) => {
                let path = config.socket_path().unwrap_or_default();
                let stream = UnixStream::connect(path).await.map_err(io::Error::from)?;
                Ok(Socket::Unix(stream))
            }
        }
    }
}

/// Tries every address the name resolves to, in order, as libpq does: `localhost` may
/// resolve to `::1` first while the server listens on 127.0.0.1 only.
async fn connect_any(host: &str, port: u16) -> io::Result<TcpStream> {
    use std::net::ToSocketAddrs;
    let mut failure = None;
    for address in (host, port).to_socket_addrs()? {
        match TcpStream::connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(e) => failure = Some(io::Error::from(e)),
        }
    }
    Err(failure.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host} resolves to no address"),
        )
    }))
}

/// Kernel settings that declare a silent TCP peer dead after about one timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Probes {
    /// Seconds of silence before the first keepalive probe.
    idle_secs: i32,
    /// Seconds between probes.
    interval_secs: i32,
    /// Unanswered probes that kill the connection.
    count: i32,
    /// Milliseconds sent data may stay unacknowledged.
    user_timeout_ms: i32,
}

impl Probes {
    fn for_timeout(timeout: Duration) -> Option<Probes> {
        if timeout.is_zero() {
            return None;
        }
        let secs = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX).max(1);
        // Half the budget idle, the other half for three probes.
        let idle_secs = (secs / 2).max(1);
        let count = 3;
        let interval_secs = ((secs - idle_secs) / count).max(1);
        Some(Probes {
            idle_secs,
            interval_secs,
            count,
            user_timeout_ms: i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX),
        })
    }

    fn apply(self, fd: i32) -> io::Result<()> {
        let options = [
            (libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1),
            (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, self.idle_secs),
            (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, self.interval_secs),
            (libc::IPPROTO_TCP, libc::TCP_KEEPCNT, self.count),
            (
                libc::IPPROTO_TCP,
                libc::TCP_USER_TIMEOUT,
                self.user_timeout_ms,
            ),
        ];
        for (level, name, value) in options {
            // SAFETY: `fd` is the open socket of a live TcpStream, and the option value is
            // a c_int read from a valid pointer with its exact size.
            let rc = unsafe {
                libc::setsockopt(
                    fd,
                    level,
                    name,
                    (&value as *const i32).cast(),
                    std::mem::size_of::<i32>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_close(cx),
            Socket::Unix(s) => Pin::new(s).poll_close(cx),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_fit_the_timeout() {
        assert_eq!(Probes::for_timeout(Duration::ZERO), None);
        let p = Probes::for_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!((p.idle_secs, p.interval_secs, p.count), (15, 5, 3));
        assert_eq!(p.user_timeout_ms, 30_000);
        assert!(p.idle_secs + p.interval_secs * p.count <= 30);
        let p = Probes::for_timeout(Duration::from_millis(500)).unwrap();
        assert_eq!(
            (p.idle_secs, p.interval_secs),
            (1, 1),
            "whole seconds, at least one"
        );
        assert_eq!(p.user_timeout_ms, 500);
    }

    #[test]
    fn probes_apply_to_a_tcp_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let socket = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let probes = Probes::for_timeout(Duration::from_secs(12)).unwrap();
        probes.apply(socket.as_raw_fd()).unwrap();
        let mut value: i32 = 0;
        let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
        // SAFETY: reading one c_int option of an open socket into a local of that size.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_USER_TIMEOUT,
                (&mut value as *mut i32).cast(),
                &mut len,
            )
        };
        assert_eq!((rc, value), (0, 12_000));
    }
}
