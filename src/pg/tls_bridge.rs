//! A replication session's TLS, made by duplex itself. pgwire-replication
//! verifies a server's certificate its own way (webpki alone: it refuses a
//! self-signed certificate marked as a CA as the server's, which libpq and
//! duplex's SQL sessions accept), so under `verify-ca` / `verify-full` it
//! connects in plain text to a listener on the loopback that takes one
//! connection, and this bridge carries its bytes over a TLS session duplex
//! opened and verified with the site's one TLS configuration
//! (`PgEndpoint::client_tls_config`).
//!
//! The server is reached, and its certificate verified, before the listener
//! exists: a refusal fails the connection here, in duplex's words. The
//! listener takes the first connection only, and for 30 s at most; whoever
//! reached it first would hold a TLS session to the server without a
//! password, never duplex's.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::connect::ConnectError;

/// PostgreSQL's SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// How long the server and then pgwire-replication get to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Open a verified TLS session to `host:port` for site `site`, and a
/// loopback port whose one connection is carried over it.
pub(crate) async fn open(
    site: &str,
    host: &str,
    port: u16,
    config: rustls::ClientConfig,
) -> Result<u16, ConnectError> {
    let tls_err = |reason: String| ConnectError::Tls {
        site: site.to_string(),
        reason,
    };
    let io_err = |what: &str, e: std::io::Error| tls_err(format!("{what} {host}:{port}: {e}"));
    let mut tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port)))
        .await
        .map_err(|_| tls_err(format!("{host}:{port} did not answer within 10 s")))?
        .map_err(|e| io_err("cannot connect to", e))?;
    let _ = tcp.set_nodelay(true);
    tcp.write_all(&SSL_REQUEST)
        .await
        .map_err(|e| io_err("cannot ask for TLS at", e))?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer)
        .await
        .map_err(|e| io_err("no answer to the TLS request from", e))?;
    if answer[0] != b'S' {
        return Err(tls_err(format!(
            "the server at {host}:{port} does not take TLS connections: set ssl = on in its postgresql.conf, or tls_mode = 'disable' in duplex.sites"
        )));
    }
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| tls_err(format!("{host} is not a name TLS can verify: {e}")))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| io_err("TLS handshake with", e))?;
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| tls_err(format!("cannot listen on the loopback: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| tls_err(format!("cannot listen on the loopback: {e}")))?
        .port();
    tokio::spawn(async move {
        let accepted = tokio::time::timeout(ACCEPT_TIMEOUT, listener.accept()).await;
        drop(listener);
        if let Ok(Ok((mut plain, _))) = accepted {
            let _ = plain.set_nodelay(true);
            let mut tls = tls;
            // Ends when either side closes: the session is over.
            let _ = tokio::io::copy_bidirectional(&mut plain, &mut tls).await;
        }
    });
    Ok(local)
}
