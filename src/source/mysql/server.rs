//! What the binlog reader needs of the server, checked up front in one place
//! ([`check_binlog_settings`]), and where a new link starts reading
//! ([`current_position`]).

use super::binlog::binlog_file_seq;
use crate::canonical::SourcePosition;
use crate::source::SourceError;
use mysql_async::prelude::Queryable;

/// Check every server setting the reader depends on; one error lists them all.
pub async fn check_binlog_settings(conn: &mut mysql_async::Conn) -> Result<(), SourceError> {
    let version: String = conn
        .query_first("SELECT VERSION()")
        .await?
        .unwrap_or_default();
    let mariadb = version.to_lowercase().contains("mariadb");
    let get = |name: &'static str| format!("SELECT CAST(@@GLOBAL.{name} AS CHAR)");
    let mut problems = Vec::new();
    let want = |problems: &mut Vec<String>,
                name: &str,
                current: Option<String>,
                expected: &str,
                fix: &str| {
        let cur = current.unwrap_or_else(|| "(unset)".into());
        if !cur.eq_ignore_ascii_case(expected) {
            problems.push(format!("  {name} is {cur}, needs {expected}:  {fix}"));
        }
    };
    let on_off = |v: Option<String>| {
        v.map(|v| match v.as_str() {
            "1" => "ON".to_string(),
            "0" => "OFF".to_string(),
            _ => v,
        })
    };
    let log_bin: Option<String> = conn.query_first(get("log_bin")).await?;
    want(
        &mut problems,
        "log_bin",
        on_off(log_bin),
        "ON",
        "log_bin = mysql-bin",
    );
    let format: Option<String> = conn.query_first(get("binlog_format")).await?;
    want(
        &mut problems,
        "binlog_format",
        format,
        "ROW",
        "binlog_format = ROW",
    );
    let image: Option<String> = conn.query_first(get("binlog_row_image")).await?;
    want(
        &mut problems,
        "binlog_row_image",
        image,
        "FULL",
        "binlog_row_image = FULL",
    );
    let meta: Option<String> = conn.query_first(get("binlog_row_metadata")).await?;
    want(
        &mut problems,
        "binlog_row_metadata",
        meta,
        "FULL",
        "binlog_row_metadata = FULL",
    );
    let server_id: Option<String> = conn.query_first(get("server_id")).await?;
    if server_id.as_deref() == Some("0") || server_id.is_none() {
        problems.push(format!(
            "  server_id is {}, needs a unique non-zero value:  server_id = 1",
            server_id.unwrap_or_default()
        ));
    }
    if !mariadb {
        // MySQL 8: compressed transaction payloads carry log_pos 0 inside and
        // are unpacked whole in memory: positions and bounded memory break.
        let compress: Option<String> = conn
            .query_first("SELECT CAST(@@GLOBAL.binlog_transaction_compression AS CHAR)")
            .await
            .unwrap_or(None);
        if let Some(c) = compress {
            want(
                &mut problems,
                "binlog_transaction_compression",
                on_off(Some(c)),
                "OFF",
                "binlog_transaction_compression = OFF",
            );
        }
    }
    if mariadb {
        let compress: Option<String> = conn.query_first(get("log_bin_compress")).await?;
        want(
            &mut problems,
            "log_bin_compress",
            on_off(compress),
            "OFF",
            "log_bin_compress = OFF",
        );
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SourceError::Settings {
            problems: problems.join("\n"),
        })
    }
}

/// The server's current binlog position (where a new link starts reading).
pub async fn current_position(conn: &mut mysql_async::Conn) -> Result<SourcePosition, SourceError> {
    let row: Option<mysql_async::Row> = match conn.query_first("SHOW MASTER STATUS").await {
        Ok(r) => r,
        // MySQL 8.4 renamed it.
        Err(_) => conn.query_first("SHOW BINARY LOG STATUS").await?,
    };
    let (file, pos) = row
        .and_then(|r| Some((r.get::<String, _>(0)?, r.get::<u64, _>(1)?)))
        .ok_or_else(|| SourceError::Settings {
            problems: "  log_bin is OFF (SHOW MASTER STATUS is empty):  log_bin = mysql-bin".into(),
        })?;
    let file_seq = binlog_file_seq(&file).ok_or_else(|| SourceError::Settings {
        problems: format!("  binlog file name {file} has no numeric suffix"),
    })?;
    let pos = u32::try_from(pos).map_err(|_| SourceError::Settings {
        problems: format!(
            "  binlog offset {pos} in {file} is beyond 4 GiB, which duplex cannot address"
        ),
    })?;
    Ok(SourcePosition::Binlog { file_seq, pos })
}
