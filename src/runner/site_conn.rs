//! A connection to a site for setup work (planning and preparing a link),
//! by engine, and the errors met on it.

use crate::control::{Site, SiteEngine};
use crate::mysql::MysqlEndpoint;
use crate::pg::PgEndpoint;

pub(super) fn endpoint(site: &Site) -> Result<PgEndpoint, crate::Error> {
    Ok(PgEndpoint::from_site(site)?)
}

/// A MySQL/MariaDB site's error during setup, with what duplex was doing.
pub(super) fn mysql_error<'a>(
    site: &'a str,
    context: &'a str,
) -> impl FnOnce(mysql_async::Error) -> crate::Error + 'a {
    move |e| crate::setup::mysql_db_error(site, context.into(), e)
}

/// A connection for setup, by engine.
pub(super) enum SetupConn {
    Pg(tokio_postgres::Client),
    Mysql(mysql_async::Conn, MysqlEndpoint),
}

pub(super) async fn setup_conn(site: &Site) -> Result<SetupConn, crate::Error> {
    Ok(match site.engine {
        SiteEngine::Postgres => SetupConn::Pg(endpoint(site)?.connect("duplex setup").await?),
        SiteEngine::Mysql => {
            let ep = MysqlEndpoint::from_site(site)?;
            SetupConn::Mysql(ep.connect().await?, ep)
        }
    })
}
