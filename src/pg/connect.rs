//! Connections to PostgreSQL sites: ordinary SQL sessions (tokio-postgres) and
//! replication sessions (pgwire-replication), both built from one `duplex.sites`
//! row. Passwords come from the environment variable or file the row names,
//! never from the row itself, and never appear in logs or errors.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, Config};

use crate::connect::{read_password, ConnectError};
use crate::control::{Site, TlsMode};

/// Everything needed to open connections to one PostgreSQL site.
#[derive(Clone)]
pub struct PgEndpoint {
    pub site_name: String,
    config: Config,
    password: Option<String>,
    tls_mode: TlsMode,
    tls_ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for PgEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Deliberately not deriving Debug: the password must never be printed.
        f.debug_struct("PgEndpoint")
            .field("site", &self.site_name)
            .field("target", &self.describe())
            .finish()
    }
}

impl PgEndpoint {
    pub fn from_site(site: &Site) -> Result<PgEndpoint, ConnectError> {
        if crate::connect::holds_password(&site.conninfo) {
            return Err(ConnectError::PasswordInConninfo {
                site: site.name.clone(),
            });
        }
        let config = Config::from_str(&site.conninfo).map_err(|e| ConnectError::BadConninfo {
            site: site.name.clone(),
            reason: e.to_string(),
        })?;
        if config.get_password().is_some() {
            return Err(ConnectError::PasswordInConninfo {
                site: site.name.clone(),
            });
        }
        Ok(PgEndpoint {
            site_name: site.name.clone(),
            config,
            password: read_password(site)?,
            tls_mode: site.tls_mode,
            tls_ca_file: site.tls_ca_file.clone(),
        })
    }

    /// A connection string given directly (the control database URL, which may
    /// carry a password since it comes from the command line or environment).
    pub fn from_url(name: &str, url: &str) -> Result<PgEndpoint, ConnectError> {
        let config = Config::from_str(url).map_err(|e| ConnectError::BadConninfo {
            site: name.into(),
            reason: e.to_string(),
        })?;
        let tls_mode = match config.get_ssl_mode() {
            SslMode::Disable => TlsMode::Disable,
            SslMode::Require => TlsMode::Require,
            _ => TlsMode::Prefer,
        };
        Ok(PgEndpoint {
            site_name: name.into(),
            config,
            password: None,
            tls_mode,
            tls_ca_file: None,
        })
    }

    /// `host:port/dbname` for messages (no user secrets).
    pub fn describe(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}/{}", self.config.get_dbname().unwrap_or(""))
    }

    pub fn dbname(&self) -> String {
        self.config
            .get_dbname()
            .or(self.config.get_user())
            .unwrap_or("postgres")
            .to_string()
    }

    fn sql_config(&self) -> Config {
        let mut c = self.config.clone();
        if let Some(p) = &self.password {
            c.password(p.as_bytes());
        }
        c.ssl_mode(match self.tls_mode {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        });
        if c.get_connect_timeout().is_none() {
            c.connect_timeout(Duration::from_secs(10));
        }
        c
    }

    /// Open an ordinary SQL session. The connection task is spawned on the
    /// current runtime and ends when the client is dropped.
    pub async fn connect(&self, application_name: &str) -> Result<Client, ConnectError> {
        let mut config = self.sql_config();
        config.application_name(application_name);
        let tls = self.rustls_connector()?;
        let (client, connection) =
            config
                .connect(tls)
                .await
                .map_err(|source| ConnectError::Connect {
                    site: self.site_name.clone(),
                    target: self.describe(),
                    source,
                })?;
        let site = self.site_name.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(site = %site, error = %e, "SQL connection closed");
            }
        });
        Ok(client)
    }

    /// Open a session that LISTENs on `channel`: each notification (its
    /// payload) arrives on the returned receiver, which closes when the
    /// connection does.
    pub async fn connect_listening(
        &self,
        application_name: &str,
        channel: &str,
    ) -> Result<(Client, tokio::sync::mpsc::UnboundedReceiver<String>), ConnectError> {
        let mut config = self.sql_config();
        config.application_name(application_name);
        let tls = self.rustls_connector()?;
        let connect_err = |source| ConnectError::Connect {
            site: self.site_name.clone(),
            target: self.describe(),
            source,
        };
        let (client, mut connection) = config.connect(tls).await.map_err(connect_err)?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let site = self.site_name.clone();
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = futures_util::StreamExt::next(&mut messages).await {
                match message {
                    Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                        if tx.send(n.payload().to_string()).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(site = %site, error = %e, "listening connection closed");
                        break;
                    }
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {}", quote_ident(channel)))
            .await
            .map_err(connect_err)?;
        Ok((client, rx))
    }

    fn rustls_connector(&self) -> Result<tokio_postgres_rustls::MakeRustlsConnect, ConnectError> {
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(
            self.client_tls_config()?,
        ))
    }

    /// The TLS client configuration of `tls_mode`, for every connection to
    /// the site (SQL sessions, and replication sessions through
    /// `pg::tls_bridge`): one way to verify the server.
    pub(crate) fn client_tls_config(&self) -> Result<rustls::ClientConfig, ConnectError> {
        let tls_err = |reason: String| ConnectError::Tls {
            site: self.site_name.clone(),
            reason,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(e.to_string()))?;
        let config = match self.tls_mode {
            TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => {
                // libpq semantics: encrypt, but do not verify the certificate.
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
                    .with_no_client_auth()
            }
            TlsMode::VerifyCa | TlsMode::VerifyFull => {
                let (roots, pinned) = root_store(self.tls_ca_file.as_deref()).map_err(tls_err)?;
                let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| tls_err(e.to_string()))?;
                let check_name = self.tls_mode == TlsMode::VerifyFull;
                let chain: Arc<dyn ServerCertVerifier> = if check_name {
                    webpki
                } else {
                    Arc::new(IgnoreHostname(webpki))
                };
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(PinnedOrChain {
                        pinned,
                        chain,
                        check_name,
                    }))
                    .with_no_client_auth()
            }
        };
        Ok(config)
    }

    /// Configuration for a logical replication session on this site. Under
    /// `verify-ca` / `verify-full` over TCP, the session's TLS is duplex's
    /// own, verified as the SQL sessions' is (`pg::tls_bridge`): the
    /// configuration then points at the bridge's loopback port.
    pub async fn replication_config(
        &self,
        slot: &str,
        publication: &str,
    ) -> Result<pgwire_replication::ReplicationConfig, ConnectError> {
        use pgwire_replication::{ReplicationConfig, SslMode as RSsl, TlsConfig};
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let user = self.config.get_user().unwrap_or("postgres").to_string();
        let password = self.password.clone().unwrap_or_default();
        let (host, tcp) = match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => (h.clone(), true),
            Some(Host::Unix(p)) => (p.display().to_string(), false),
            None => ("localhost".into(), true),
        };
        if tcp && matches!(self.tls_mode, TlsMode::VerifyCa | TlsMode::VerifyFull) {
            let socket_dir =
                super::tls_bridge::open(&self.site_name, &host, port, self.client_tls_config()?)
                    .await?;
            return Ok(ReplicationConfig::new(
                socket_dir.display().to_string(),
                user,
                password,
                self.dbname(),
                slot,
                publication,
            )
            .with_port(super::tls_bridge::SOCKET_PORT)
            .with_tls(TlsConfig::disabled()));
        }
        let mut rc = ReplicationConfig::new(host, user, password, self.dbname(), slot, publication)
            .with_port(port);
        let tls = match self.tls_mode {
            TlsMode::Disable => TlsConfig::disabled(),
            TlsMode::Prefer => TlsConfig {
                mode: RSsl::Prefer,
                ..TlsConfig::default()
            },
            TlsMode::Require => TlsConfig::require(),
            TlsMode::VerifyCa => TlsConfig::verify_ca(self.tls_ca_file.clone()),
            TlsMode::VerifyFull => {
                // pgwire-replication refuses an IP host in verify-full unless the
                // name to verify is given explicitly; rustls then checks the
                // certificate's IP address SAN, as libpq does.
                let tls = TlsConfig::verify_full(self.tls_ca_file.clone());
                let host = rc.host.clone();
                if host.parse::<std::net::IpAddr>().is_ok() {
                    tls.with_sni_hostname(host)
                } else {
                    tls
                }
            }
        };
        rc = rc.with_tls(tls);
        Ok(rc)
    }
}

/// The trust anchors of `tls_ca_file` (the web's roots without one), and
/// the file's certificates themselves: a server presenting one of them is
/// trusted as it is (see [`PinnedOrChain`]).
fn root_store(
    ca_file: Option<&Path>,
) -> Result<(rustls::RootCertStore, Vec<CertificateDer<'static>>), String> {
    let mut roots = rustls::RootCertStore::empty();
    let mut pinned = Vec::new();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read tls_ca_file {}: {e}", path.display()))?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| format!("tls_ca_file {}: {e}", path.display()))?;
                pinned.push(cert.clone());
                roots
                    .add(cert)
                    .map_err(|e| format!("tls_ca_file {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "tls_ca_file {} holds no PEM certificate",
                    path.display()
                ));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok((roots, pinned))
}

/// `verify-ca` / `verify-full` as libpq (OpenSSL) does them: a server whose
/// certificate is itself one of `tls_ca_file`'s (PostgreSQL's own recipe: a
/// self-signed certificate, marked as a CA, given to the clients as their
/// root) is trusted as that trust anchor, its name checked under
/// `verify-full`; any other certificate must chain to one of them. webpki
/// alone refuses such a certificate (`CaUsedAsEndEntity`).
#[derive(Debug)]
struct PinnedOrChain {
    pinned: Vec<CertificateDer<'static>>,
    chain: Arc<dyn ServerCertVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for PinnedOrChain {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            if self.check_name {
                let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_name(&parsed, server_name)?;
            }
            return Ok(ServerCertVerified::assertion());
        }
        self.chain
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// Encrypts without authenticating the server (`sslmode=require`). Handshake
/// signatures are still checked, so the session is bound to the presented key.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to a trusted root; the name may differ.
#[derive(Debug)]
struct IgnoreHostname(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for IgnoreHostname {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Quote an identifier for PostgreSQL. Every identifier that comes from
/// configuration goes through here: configuration is input too.
pub fn quote_ident(name: &str) -> String {
    postgres_protocol::escape::escape_identifier(name)
}

/// `"schema"."table"`.
pub fn quote_table(table: &crate::canonical::TableName) -> String {
    format!(
        "{}.{}",
        quote_ident(&table.schema),
        quote_ident(&table.name)
    )
}
