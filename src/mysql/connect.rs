//! Connections to MySQL/MariaDB sites, built from one `duplex.sites` row. The
//! `conninfo` is a URL without password (`mysql://duplex@db.example:3306/app`);
//! the password comes from the environment variable or file the row names.

use crate::connect::{read_password, ConnectError};
use crate::control::{Site, TlsMode};

/// Everything needed to open connections to one MySQL/MariaDB site.
#[derive(Clone)]
pub struct MysqlEndpoint {
    pub site_name: String,
    opts: mysql_async::Opts,
    database: String,
}

impl std::fmt::Debug for MysqlEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not derived: the options hold the password.
        f.debug_struct("MysqlEndpoint")
            .field("site", &self.site_name)
            .field("target", &self.describe())
            .finish()
    }
}

impl MysqlEndpoint {
    pub fn from_site(site: &Site) -> Result<MysqlEndpoint, ConnectError> {
        let bad = |reason: String| ConnectError::BadMysqlUrl {
            site: site.name.clone(),
            reason,
        };
        if crate::connect::holds_password(&site.conninfo) {
            return Err(ConnectError::PasswordInConninfo {
                site: site.name.clone(),
            });
        }
        let opts = mysql_async::Opts::from_url(&site.conninfo).map_err(|e| bad(e.to_string()))?;
        if opts.pass().is_some() {
            return Err(ConnectError::PasswordInConninfo {
                site: site.name.clone(),
            });
        }
        let database =
            opts.db_name()
                .map(str::to_string)
                .ok_or_else(|| ConnectError::NoDatabase {
                    site: site.name.clone(),
                })?;
        let password = read_password(site)?;
        let ssl = match site.tls_mode {
            // mysql_async has no "prefer": without a CA it encrypts only on request.
            TlsMode::Disable | TlsMode::Prefer => None,
            TlsMode::Require => Some(
                mysql_async::SslOpts::default()
                    .with_danger_accept_invalid_certs(true)
                    .with_danger_skip_domain_validation(true),
            ),
            TlsMode::VerifyCa | TlsMode::VerifyFull => {
                let mut ssl = mysql_async::SslOpts::default();
                if let Some(ca) = &site.tls_ca_file {
                    ssl = ssl.with_root_certs(vec![ca.clone().into()]);
                }
                Some(ssl.with_danger_skip_domain_validation(site.tls_mode == TlsMode::VerifyCa))
            }
        };
        let opts = mysql_async::OptsBuilder::from_opts(opts)
            .pass(password)
            .ssl_opts(ssl)
            // Otherwise mysql_async silently switches a loopback TCP connection
            // to the server's unix socket, as a different account.
            .prefer_socket(false)
            .into();
        Ok(MysqlEndpoint {
            site_name: site.name.clone(),
            opts,
            database,
        })
    }

    /// A URL given directly (the control database's, from the command line or
    /// the environment, so it may carry a password).
    pub fn from_url(name: &str, url: &str) -> Result<MysqlEndpoint, ConnectError> {
        let opts = mysql_async::Opts::from_url(url).map_err(|e| ConnectError::BadMysqlUrl {
            site: name.to_string(),
            reason: e.to_string(),
        })?;
        // duplex's control schema is always database `duplex` (statements
        // name it), as it is always schema `duplex` on PostgreSQL.
        if let Some(db) = opts.db_name().filter(|db| *db != "duplex") {
            return Err(ConnectError::BadMysqlUrl {
                site: name.to_string(),
                reason: format!(
                    "names database '{db}', but the control schema is always database duplex; use mysql://user@host:port/duplex"
                ),
            });
        }
        let database = "duplex".to_string();
        // No default database: `duplex init` connects before it exists.
        let opts = mysql_async::OptsBuilder::from_opts(opts)
            .db_name(None::<String>)
            .prefer_socket(false)
            .into();
        Ok(MysqlEndpoint {
            site_name: name.to_string(),
            opts,
            database,
        })
    }

    /// The database (schema) this site syncs.
    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn describe(&self) -> String {
        format!(
            "{}:{}/{}",
            self.opts.ip_or_hostname(),
            self.opts.tcp_port(),
            self.database
        )
    }

    pub async fn connect(&self) -> Result<mysql_async::Conn, ConnectError> {
        self.connect_with(self.opts.clone()).await
    }

    /// A connection whose UPDATEs report matched rows, not just changed ones:
    /// the applier counts rows it expected but did not find.
    pub async fn connect_found_rows(&self) -> Result<mysql_async::Conn, ConnectError> {
        self.connect_with(
            mysql_async::OptsBuilder::from_opts(self.opts.clone())
                .client_found_rows(true)
                .into(),
        )
        .await
    }

    async fn connect_with(
        &self,
        opts: mysql_async::Opts,
    ) -> Result<mysql_async::Conn, ConnectError> {
        mysql_async::Conn::new(opts)
            .await
            .map_err(|source| ConnectError::MysqlConnect {
                site: self.site_name.clone(),
                target: self.describe(),
                source,
            })
    }
}

/// Quote an identifier for MySQL: backticks, embedded backticks doubled.
/// Every identifier that comes from configuration goes through here.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("plain"), "`plain`");
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(
            quote_ident("x`; DROP TABLE t; --"),
            "`x``; DROP TABLE t; --`"
        );
    }

    proptest! {
        // Whatever the name, the quoted form is one backtick-delimited token:
        // undoubling the inside gives the name back.
        #[test]
        fn quoted_identifiers_round_trip(name in ".{0,40}") {
            let q = quote_ident(&name);
            prop_assert!(q.starts_with('`') && q.ends_with('`'));
            let inner = &q[1..q.len() - 1];
            prop_assert!(!inner.replace("``", "").contains('`'));
            prop_assert_eq!(inner.replace("``", "`"), name);
        }
    }
}
