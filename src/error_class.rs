//! Error classes: how the direction supervisor treats what stopped a
//! direction. A connection cut or a restarting server passes by itself and is
//! retried with a backoff; a lost slot, a purged binlog, wrong settings or
//! credentials do not, and retrying them every few seconds only fills the log.
//! Those wait for a person, in state `needs_operator`, with what to do.
//!
//! A change the target refuses (a row's data) is neither: the applier
//! quarantines it and goes on, and it never reaches the supervisor.

/// How the supervisor treats an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorClass {
    /// Passes by itself: retried with a backoff.
    Transient,
    /// Needs a person: the direction waits in state `needs_operator` and
    /// looks again now and then (the fix may be made on the site) or when the
    /// link's configuration changes. `fix` says what to do, where the error's
    /// own message does not; `<link>` in it stands for the link's name and
    /// `<slot>` for the direction's slot (PostgreSQL sources).
    Operator { fix: Option<String> },
}

impl ErrorClass {
    fn operator(fix: impl Into<String>) -> ErrorClass {
        ErrorClass::Operator {
            fix: Some(fix.into()),
        }
    }

    /// An operator error whose message says what to do.
    const SELF_EXPLAINED: ErrorClass = ErrorClass::Operator { fix: None };
}

/// The fix for a change duplex cannot read at its position in the source's
/// log: the same position fails the same way at every attempt.
const UNREADABLE: &str = "duplex cannot read the source's log at this position (the error says what it met); it looks again every minute. Where the error names a setting, change it; otherwise report it with the log. To go past it: `duplex resync --link <link> --new-position` (the tables are copied again both ways from a new position)";

/// The SQLSTATE in a message that quotes one (`... (SQLSTATE 55000)`): how
/// the replication client reports a server's error.
pub(crate) fn sqlstate_in(message: &str) -> Option<&str> {
    let at = message.find("SQLSTATE ")? + "SQLSTATE ".len();
    let code = message.get(at..at + 5)?;
    code.bytes()
        .all(|b| b.is_ascii_alphanumeric())
        .then_some(code)
}

/// `e` as a person reads it where a link cannot start (`config_status`):
/// the error's chain, and the fix where only a person can fix it.
pub fn explained(e: &crate::Error, link: &str) -> String {
    let why = crate::error_chain::error_chain(e);
    match e.class() {
        ErrorClass::Operator { fix: Some(fix) } => {
            format!("{why}. Fix: {}", fix_for(&fix, link, None))
        }
        _ => why,
    }
}

/// An operator `fix` for one direction: `<link>` stands for its link's name
/// and `<slot>` for its slot (PostgreSQL sources; kept as it is elsewhere).
pub(crate) fn fix_for(fix: &str, link: &str, slot: Option<&str>) -> String {
    let fix = fix.replace("<link>", link);
    match slot {
        Some(slot) => fix.replace("<slot>", slot),
        None => fix,
    }
}

/// A PostgreSQL server's error, by its SQLSTATE and message.
pub(crate) fn postgres(code: &str, message: &str) -> ErrorClass {
    match code {
        // object_not_in_prerequisite_state: an invalidated slot, or wal_level.
        // PostgreSQL 15-17: "can no longer get changes from replication
        // slot" / "cannot read from logical replication slot"; 18: "can no
        // longer access replication slot" (why, in the DETAIL the
        // replication client drops). A slot in use by another session ("is
        // active for PID") is no loss: it passes.
        "55000" if message.contains("replication slot") && !message.contains("is active") => {
            ErrorClass::operator(
                "the source invalidated replication slot <slot> (it kept more WAL than max_slot_wal_keep_size allows, or it conflicted with recovery): the changes it had not sent yet are gone. \
                 Run `duplex resync --link <link>`: it drops the slot and resets the peer's progress, and the running duplex re-creates the slot and copies the tables both ways \
                 (both sites keep their rows; differences are settled by policy). To keep this from happening again, raise max_slot_wal_keep_size (or set it to -1) on the source",
            )
        }
        "55000" if message.contains("wal_level") => ErrorClass::operator(
            "set wal_level = logical in the source's postgresql.conf and restart PostgreSQL",
        ),
        // undefined_object: the slot or the publication was dropped.
        "42704" if message.contains("replication slot") => ErrorClass::operator(
            "replication slot <slot> was dropped on the source, and with it the changes it had not sent yet. \
             Run `duplex resync --link <link>`: it resets the peer's progress, and the running duplex re-creates the slot and copies the tables both ways \
             (both sites keep their rows; differences are settled by policy)",
        ),
        // A slot cannot decode past the drop of its publication, even once
        // the publication is created again: the slot is as good as lost.
        "42704" if message.contains("publication") => ErrorClass::operator(
            "the link's publication was dropped on the source, and the slot cannot be read past that point even if it is created again. \
             Run `duplex resync --link <link> --new-position`: it drops slot <slot> and resets the peer's progress, and the running duplex re-creates the publication and the slot \
             and copies the tables both ways (both sites keep their rows; differences are settled by policy)",
        ),
        // invalid_authorization_specification, invalid_password.
        "28000" | "28P01" => ErrorClass::operator(
            "the site refused duplex's login: check the role and its password (duplex.sites password_env / password_file) and the server's pg_hba.conf",
        ),
        // insufficient_privilege.
        "42501" => ErrorClass::operator(
            "duplex's role lacks a privilege it needs here: grant it with the site script in sql/roles/ (see the README's setup)",
        ),
        // invalid_catalog_name: the database does not exist.
        "3D000" => ErrorClass::operator("the site's conninfo names a database that does not exist: fix duplex.sites"),
        _ => ErrorClass::Transient,
    }
}

/// A MySQL/MariaDB server's error, by its code and message.
pub(crate) fn mysql(code: u16, message: &str) -> ErrorClass {
    match code {
        // Access denied (login; a table; a privilege such as REPLICATION SLAVE).
        1044 | 1045 | 1142 | 1143 | 1227 | 1698 => ErrorClass::operator(
            "the site refused duplex's role or a privilege it needs: check the password (duplex.sites password_env / password_file) and grant what sql/roles/mysql-site.sql grants",
        ),
        // Unknown database.
        1049 => ErrorClass::operator("the site's conninfo names a database that does not exist: fix duplex.sites"),
        // The binlog reader's fatal error: another replica with duplex's
        // server id (an earlier connection of its own not yet gone, as a
        // rule) passes; a purged file or an unknown position does not; nor
        // does the rest (an event larger than max_allowed_packet), whose
        // message says what.
        1236 if message.contains("same server") => ErrorClass::Transient,
        1236 if !(message.contains("purged")
            || message.contains("first log file")
            || message.to_ascii_lowercase().contains("could not find")) =>
        {
            ErrorClass::SELF_EXPLAINED
        }
        1236 => ErrorClass::operator(
            "the server cannot send its binlog from the position duplex needs (purged, or the binlog was reset): the changes in between are gone. \
             Run `duplex resync --link <link>`: it resets the peer's recorded position, and the running duplex takes the binlog's current position and copies the tables both ways \
             (both sites keep their rows; differences are settled by policy). Keep binlogs longer (binlog_expire_logs_seconds) than duplex may be stopped",
        ),
        _ => ErrorClass::Transient,
    }
}

impl crate::Error {
    /// How the supervisor treats this error.
    pub fn class(&self) -> ErrorClass {
        use crate::Error as E;
        match self {
            E::Connect(c) => c.class(),
            E::Source { source, .. } => source.class(),
            E::Sink { source, .. } => source.class(),
            // Every setup refusal names its fix; a query failing meanwhile
            // is judged by its server's error.
            E::Setup(s) => match s.as_ref() {
                crate::setup::SetupError::Db { source, .. } => pg_error(source),
                crate::setup::SetupError::MysqlDb { source, .. } => mysql_error(source),
                _ => ErrorClass::SELF_EXPLAINED,
            },
            E::Control(_) | E::Parity(_) | E::Internal(_) => ErrorClass::Transient,
        }
    }
}

/// A tokio-postgres error: by the server's SQLSTATE where it sent one; a
/// refused server certificate by what was wrong with it.
pub(crate) fn pg_error(e: &tokio_postgres::Error) -> ErrorClass {
    match e.as_db_error() {
        Some(db) => postgres(db.code().code(), db.message()),
        None => tls_refusal(&crate::error_chain::error_chain(e)).unwrap_or(ErrorClass::Transient),
    }
}

/// A server certificate the TLS library refused (rustls' words in
/// `message`), with what to change: the same certificate is refused at
/// every attempt.
pub(crate) fn tls_refusal(message: &str) -> Option<ErrorClass> {
    let fix = if message.contains("CaUsedAsEndEntity") {
        "the server's certificate is self-signed and marked as a CA (basicConstraints CA:TRUE, as `openssl req -x509` makes it), which duplex's TLS library does not accept as a server certificate (libpq does). \
         Give the server a certificate signed by a separate CA (a CA key and certificate, then the server's certificate signed with it: the README's TLS recipe) and set duplex.sites tls_ca_file to the CA's certificate; \
         or set tls_mode = 'require' to encrypt without verifying the server"
    } else if message.contains("UnknownIssuer") || message.contains("BadSignature") {
        "the server's certificate is not signed by a CA in duplex.sites tls_ca_file: point tls_ca_file at the PEM of the CA that signed it (the whole chain up to a root)"
    } else if message.contains("NotValidForName") {
        "the server's certificate does not name the host duplex connects to: connect by a name the certificate holds (its subjectAltName or CN) in the site's conninfo, or set tls_mode = 'verify-ca' to check the chain only"
    } else if message.contains("Expired") || message.contains("NotValidYet") {
        "the server's certificate is outside its validity period (expired, or not valid yet: check the clocks): renew it"
    } else {
        return None;
    };
    Some(ErrorClass::operator(fix))
}

/// A mysql_async error: by the server's code where it sent one.
pub(crate) fn mysql_error(e: &mysql_async::Error) -> ErrorClass {
    match e {
        mysql_async::Error::Server(s) => mysql(s.code, &s.message),
        _ => ErrorClass::Transient,
    }
}

impl crate::connect::ConnectError {
    pub fn class(&self) -> ErrorClass {
        use crate::connect::ConnectError as C;
        match self {
            // A server that is down or restarting comes back.
            C::Connect { source, .. } => pg_error(source),
            C::MysqlConnect { source, .. } => mysql_error(source),
            // The configuration or duplex's environment: each names its fix.
            C::BadConninfo { .. }
            | C::BadMysqlUrl { .. }
            | C::PasswordInConninfo { .. }
            | C::NoDatabase { .. }
            | C::MissingPasswordEnv { .. }
            | C::PasswordFile { .. } => ErrorClass::SELF_EXPLAINED,
            C::Tls { reason, .. } => tls_refusal(reason).unwrap_or(ErrorClass::SELF_EXPLAINED),
            C::Unreachable { .. } => ErrorClass::Transient,
            C::TlsHandshake { reason, .. } => tls_refusal(reason).unwrap_or(ErrorClass::Transient),
        }
    }
}

impl crate::source::SourceError {
    pub fn class(&self) -> ErrorClass {
        use crate::source::SourceError as S;
        match self {
            S::PgStream(e) => match e {
                pgwire_replication::PgWireError::Server(message) => sqlstate_in(message)
                    .map(|code| postgres(code, message))
                    .unwrap_or(ErrorClass::Transient),
                pgwire_replication::PgWireError::Auth(_) => ErrorClass::operator(
                    "the source refused duplex's replication login: check the password (duplex.sites password_env / password_file) and that pg_hba.conf allows replication connections for duplex's role",
                ),
                pgwire_replication::PgWireError::MessageTooLarge { .. } => {
                    ErrorClass::operator(UNREADABLE)
                }
                pgwire_replication::PgWireError::Tls(message) => tls_refusal(message)
                    .unwrap_or_else(|| ErrorClass::operator(
                        "the TLS handshake with the source failed: check duplex.sites tls_mode and tls_ca_file against the server's certificate",
                    )),
                pgwire_replication::PgWireError::Io(message) if tls_refusal(&message.to_string()).is_some() => {
                    tls_refusal(&message.to_string()).unwrap_or(ErrorClass::Transient)
                }
                _ => ErrorClass::Transient,
            },
            S::Catalog { source, .. } => pg_error(source),
            S::Binlog(e) => mysql_error(e),
            S::Purged { .. } => mysql(1236, "purged"),
            S::NotResumable { .. } => ErrorClass::operator(
                "the source's position is lost, so nothing is copied from it: run `duplex resync --link <link>`, which takes a new position and copies then",
            ),
            S::Settings { .. } | S::Table { .. } => ErrorClass::SELF_EXPLAINED,
            // The same log at the same position fails the same way again:
            // retrying every half minute only fills the log.
            S::Protocol(_) | S::UnknownRelation(_) | S::Event { .. } | S::BadValue { .. } => {
                ErrorClass::operator(UNREADABLE)
            }
        }
    }
}

impl crate::sink::SinkError {
    pub fn class(&self) -> ErrorClass {
        use crate::sink::SinkError as K;
        match self {
            K::Connect(c) => c.class(),
            K::Pg { source, .. } | K::CopyStart { source, .. } => pg_error(source),
            K::Mysql { source, .. } => mysql_error(source),
            K::MissingTable { .. }
            | K::MissingColumn { .. }
            | K::NoPrimaryKey { .. }
            | K::KeyMismatch { .. } => ErrorClass::SELF_EXPLAINED,
            // Another process holds the origin: it may be ending.
            K::OriginBusy { .. } | K::Fenced { .. } | K::SessionBusy { .. } => {
                ErrorClass::Transient
            }
            K::Value { .. }
            | K::Journal(_)
            | K::LocalValue { .. }
            | K::WorkersDeadlocked
            | K::WorkerGone { .. } => ErrorClass::Transient,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replication_error_is_judged_by_its_sqlstate() {
        let lost = "ERROR: can no longer get changes from replication slot \"duplex_l1_s1\" (SQLSTATE 55000)";
        assert_eq!(sqlstate_in(lost), Some("55000"));
        let ErrorClass::Operator { fix: Some(fix) } = postgres("55000", lost) else {
            panic!("an invalidated slot needs an operator");
        };
        // As the direction shows it: its link's and its slot's names.
        let fix = fix_for(&fix, "ab", Some("duplex_l1_s1"));
        assert!(
            fix.contains("duplex_l1_s1") && fix.contains("`duplex resync --link ab`"),
            "{fix}"
        );
        let dropped = "replication slot \"duplex_l1_s2\" does not exist";
        let ErrorClass::Operator { fix: Some(fix) } = postgres("42704", dropped) else {
            panic!("a dropped slot needs an operator");
        };
        let fix = fix_for(&fix, "ab", Some("duplex_l1_s2"));
        assert!(
            fix.contains("duplex_l1_s2") && fix.contains("`duplex resync --link ab`"),
            "{fix}"
        );
        // A server shutting down, a cut connection: they pass.
        assert_eq!(
            postgres(
                "57P01",
                "terminating connection due to administrator command"
            ),
            ErrorClass::Transient
        );
        // PostgreSQL 18's words for the same.
        let lost18 = "can no longer access replication slot \"duplex_l1_s1\" (SQLSTATE 55000)";
        assert!(matches!(
            postgres("55000", lost18),
            ErrorClass::Operator { fix: Some(_) }
        ));
        // A slot another session still holds passes.
        let busy = "replication slot \"duplex_l1_s1\" is active for PID 4242";
        assert_eq!(postgres("55006", busy), ErrorClass::Transient);
        assert_eq!(postgres("55000", busy), ErrorClass::Transient);
        assert_eq!(sqlstate_in("connection reset by peer"), None);
        assert_eq!(sqlstate_in("(SQLSTATE 55"), None);
    }

    #[test]
    fn mysql_errors_by_code() {
        let purged = "Could not find first log file name in binary log index file";
        assert!(matches!(
            mysql(1236, purged),
            ErrorClass::Operator { fix: Some(_) }
        ));
        assert!(matches!(
            mysql(1045, ""),
            ErrorClass::Operator { fix: Some(_) }
        ));
        // Another connection with duplex's server id, not gone yet: it passes.
        let twin =
            "A slave with the same server_uuid/server_id as this slave has connected to the master";
        assert_eq!(mysql(1236, twin), ErrorClass::Transient);
        // Other binlog errors say what they are, without a purge's fix.
        let packet =
            "log event entry exceeded max_allowed_packet; Increase max_allowed_packet on master";
        assert_eq!(mysql(1236, packet), ErrorClass::Operator { fix: None });
        // Server gone away, lock wait timeout.
        assert_eq!(mysql(2006, ""), ErrorClass::Transient);
        assert_eq!(mysql(1205, ""), ErrorClass::Transient);
    }
}
