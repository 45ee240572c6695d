//! A replication session's TLS, made by duplex itself. pgwire-replication
//! verifies a server's certificate its own way (webpki alone: it refuses a
//! self-signed certificate marked as a CA as the server's, which libpq and
//! duplex's SQL sessions accept), so under `verify-ca` / `verify-full` it
//! connects in plain text to a Unix socket of duplex's, and this bridge
//! carries its bytes over a TLS session duplex opened and verified with the
//! site's one TLS configuration (`PgEndpoint::client_tls_config`).
//!
//! - The server is reached, and its certificate verified, before the socket
//!   exists: a refusal fails the connection here, in duplex's words.
//! - The socket lives in a directory only duplex's user may enter (0700),
//!   takes one connection, for 30 s at most, and is removed once taken:
//!   no other user can reach the session or what pgwire-replication sends
//!   over it (its password among it).
//! - A server that cannot be reached, or a connection cut while TLS is
//!   negotiated, passes (`ConnectError::Unreachable`, `TlsHandshake`); a
//!   refused certificate is the operator's (`error_class::tls_refusal`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener};

use crate::connect::ConnectError;

/// PostgreSQL's SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// The whole negotiation with the server (TCP, TLS request, handshake).
const NEGOTIATE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long pgwire-replication gets to connect to the socket.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The port pgwire-replication is told: it only names the socket's file
/// (`{dir}/.s.PGSQL.{port}`).
pub(crate) const SOCKET_PORT: u16 = 5432;

/// Open a verified TLS session to `host:port` for site `site`, and a Unix
/// socket directory whose one connection is carried over it: connect to
/// `{dir}/.s.PGSQL.{SOCKET_PORT}`.
pub(crate) async fn open(
    site: &str,
    host: &str,
    port: u16,
    config: rustls::ClientConfig,
) -> Result<PathBuf, ConnectError> {
    let target = format!("{host}:{port}");
    let unreachable = |reason: String| ConnectError::Unreachable {
        site: site.to_string(),
        target: target.clone(),
        reason,
    };
    let negotiated = tokio::time::timeout(NEGOTIATE_TIMEOUT, async {
        let mut tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        tcp.write_all(&SSL_REQUEST)
            .await
            .map_err(|e| unreachable(format!("asking for TLS: {e}")))?;
        let mut answer = [0u8; 1];
        tcp.read_exact(&mut answer)
            .await
            .map_err(|e| unreachable(format!("no answer to the TLS request: {e}")))?;
        match answer[0] {
            b'S' => {}
            b'N' => {
                return Err(ConnectError::Tls {
                    site: site.to_string(),
                    reason: format!(
                        "the server at {target} does not take TLS connections: set ssl = on in its postgresql.conf, or tls_mode = 'disable' in duplex.sites"
                    ),
                })
            }
            // An ErrorResponse (an old or overloaded server): passes.
            _ => {
                let mut rest = vec![0u8; 512];
                let n = tcp.read(&mut rest).await.unwrap_or(0);
                let text: String = String::from_utf8_lossy(&rest[..n])
                    .chars()
                    .filter(|c| !c.is_control())
                    .collect();
                return Err(unreachable(format!(
                    "the server answered the TLS request with an error: {text}"
                )));
            }
        }
        let name = ServerName::try_from(host.to_string()).map_err(|e| ConnectError::Tls {
            site: site.to_string(),
            reason: format!("{host} is not a name TLS can verify: {e}"),
        })?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| ConnectError::TlsHandshake {
                site: site.to_string(),
                target: target.clone(),
                reason: crate::error_chain::error_chain(&e),
            })
    })
    .await
    .map_err(|_| unreachable(format!("no TLS session within {} s", NEGOTIATE_TIMEOUT.as_secs())))??;

    let local_err = |e: std::io::Error| ConnectError::Tls {
        site: site.to_string(),
        reason: format!("cannot make the replication session's local socket: {e}"),
    };
    let dir = private_dir().map_err(local_err)?;
    let path = dir.join(format!(".s.PGSQL.{SOCKET_PORT}"));
    let listener = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            let _ = std::fs::remove_dir(&dir);
            return Err(local_err(e));
        }
    };
    let cleanup = (path, dir.clone());
    tokio::spawn(async move {
        let accepted = tokio::time::timeout(ACCEPT_TIMEOUT, listener.accept()).await;
        drop(listener);
        let _ = std::fs::remove_file(&cleanup.0);
        let _ = std::fs::remove_dir(&cleanup.1);
        if let Ok(Ok((mut plain, _))) = accepted {
            let mut tls = negotiated;
            // Ends when either side closes: the session is over.
            let _ = tokio::io::copy_bidirectional(&mut plain, &mut tls).await;
        }
    });
    Ok(dir)
}

/// A new directory only this user may enter, under the temporary directory.
fn private_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    for attempt in 0u32..16 {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default()
            ^ attempt.wrapping_mul(0x9e37_79b9);
        let dir = base.join(format!("duplex-tls-{}-{nonce:08x}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "no free directory name",
    ))
}
