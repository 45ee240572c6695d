//! What connecting to a site means for both engines: the one error type for a
//! site's connection settings and its connection, and the site's password, read
//! from the environment variable or file its `duplex.sites` row names (never
//! from the row itself, and never shown in logs or errors).

use crate::control::Site;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("site {site}: conninfo is not a valid libpq connection string: {reason}")]
    BadConninfo { site: String, reason: String },
    #[error("site {site}: conninfo is not a valid MySQL URL (mysql://user@host:port/database): {reason}")]
    BadMysqlUrl { site: String, reason: String },
    #[error("site {site}: conninfo contains a password; remove it and set password_env or password_file in duplex.sites instead")]
    PasswordInConninfo { site: String },
    #[error("site {site}: conninfo names no database; add it as the URL path (mysql://user@host:port/database)")]
    NoDatabase { site: String },
    #[error("site {site}: password_env names ${var}, which is not set in duplex's environment")]
    MissingPasswordEnv { site: String, var: String },
    #[error("site {site}: cannot read password_file {path}: {reason}")]
    PasswordFile {
        site: String,
        path: String,
        reason: String,
    },
    #[error("site {site}: TLS setup: {reason}")]
    Tls { site: String, reason: String },
    /// The server could not be reached or dropped the connection while
    /// duplex negotiated TLS itself (`pg::tls_bridge`): it passes.
    #[error("site {site}: cannot connect ({target}): {reason}")]
    Unreachable {
        site: String,
        target: String,
        reason: String,
    },
    /// The TLS handshake duplex made itself failed: a refused certificate
    /// (the reason says which), or a cut connection.
    #[error("site {site}: TLS handshake with {target}: {reason}")]
    TlsHandshake {
        site: String,
        target: String,
        reason: String,
    },
    #[error("site {site}: cannot connect ({target}): {source}")]
    Connect {
        site: String,
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("site {site}: cannot connect ({target}): {source}")]
    MysqlConnect {
        site: String,
        target: String,
        #[source]
        source: mysql_async::Error,
    },
}

/// Does `conninfo` hold a password, in any form libpq or a URL takes:
/// `password=`, `sslpassword=`, a URL's `?password=` or `user:pw@host`, also
/// in a URL given as `dbname=` (libpq expands it)? The control schema's
/// check (`sites_conninfo_has_no_password`) refuses the same; this catches
/// rows written before it, and keeps the secret out of every message.
pub(crate) fn holds_password(conninfo: &str) -> bool {
    let lower = conninfo.to_ascii_lowercase();
    let as_key = lower
        .match_indices("password")
        .any(|(at, word)| lower[at + word.len()..].trim_start().starts_with('='));
    let in_url = conninfo.match_indices("://").any(|(at, sep)| {
        let authority = conninfo[at + sep.len()..]
            // Up to the path, as libpq reads it: a password may hold `?`
            // or `#` (a parameter after the host that holds an `@` is
            // refused too; a path, `/dbname`, before it avoids that).
            .split(|c: char| c == '/' || c.is_whitespace())
            .next()
            .unwrap_or_default();
        authority
            .split_once('@')
            .is_some_and(|(userinfo, _)| userinfo.contains(':'))
    });
    as_key || in_url
}

/// The site's password: from `password_env` or the first line of
/// `password_file`; `None` when the row names neither.
pub(crate) fn read_password(site: &Site) -> Result<Option<String>, ConnectError> {
    if let Some(var) = &site.password_env {
        return match std::env::var(var) {
            Ok(v) => Ok(Some(v)),
            Err(_) => Err(ConnectError::MissingPasswordEnv {
                site: site.name.clone(),
                var: var.clone(),
            }),
        };
    }
    if let Some(path) = &site.password_file {
        let text = std::fs::read_to_string(path).map_err(|e| ConnectError::PasswordFile {
            site: site.name.clone(),
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        return Ok(Some(text.lines().next().unwrap_or_default().to_string()));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::holds_password;

    #[test]
    fn a_password_is_found_in_every_form() {
        for conninfo in [
            "host=h dbname=app password=x",
            "host=h dbname=app PASSWORD = x",
            "host=h dbname=app sslpassword=x",
            "postgresql://u:pw@h/app",
            "postgresql://u@h/app?password=x",
            "postgresql://u@h/app?sslmode=require&password=x",
            "host=h dbname=postgresql://u:pw@h/app",
            "mysql://u:pw@h:3306/app",
            // Passwords holding what ends a URL's host elsewhere.
            "postgresql://u:p#ss@h/app",
            "postgresql://u:p?ss@h/app",
        ] {
            assert!(holds_password(conninfo), "{conninfo}");
        }
        for conninfo in [
            "host=h port=5432 dbname=app user=duplex",
            "postgresql://u@h:5432/app?sslmode=require",
            "postgresql://[::1]:5432/app",
            "postgresql://h/app",
            // An '@' in a parameter, after a path: not a user's password.
            "postgresql://h:5432/app?user=duplex@corp",
            "mysql://duplex@127.0.0.1:3306/app",
        ] {
            assert!(!holds_password(conninfo), "{conninfo}");
        }
    }
}
