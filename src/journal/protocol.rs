//! The write-confirm-reconcile protocol both journals (conflicts and
//! quarantine) follow in the control database: records are written
//! unconfirmed before the target commits, confirmed after, and on restart
//! the unconfirmed ones are settled against the target's resume point.

use crate::control::{ControlDb, ControlError, Sql, P};

/// Records of one direction (`link`, `source site`) in `table` written before
/// a target commit that a crash may have prevented: those of transactions
/// before the target's resume point committed (confirm them), the others are
/// replayed and recorded again (delete them). A record's position is its
/// transaction's start, strictly below that transaction's end. `table` is one
/// of duplex's own tables, never configuration.
pub(crate) async fn reconcile_unconfirmed(
    client: &mut ControlDb,
    table: &str,
    link: i32,
    site: i32,
    resume_counter: Option<u64>,
) -> Result<(), ControlError> {
    let resume = resume_counter.unwrap_or(0).to_string();
    let params = [P::I32(link), P::I32(site), P::Text(Some(&resume))];
    client
        .exec(Sql::new(
            "confirm records of committed transactions",
            &format!(
                "UPDATE {table} SET confirmed = true
                  WHERE link_id = $1 AND source_site = $2 AND NOT confirmed AND position_counter < $3::text::numeric"
            ),
            &format!(
                "UPDATE {table} SET confirmed = TRUE
                  WHERE link_id = ? AND source_site = ? AND NOT confirmed AND position_counter < CAST(? AS DECIMAL(20, 0))"
            ),
            &params,
        ))
        .await?;
    client
        .exec(Sql::new(
            "remove records of rolled-back transactions",
            &format!(
                "DELETE FROM {table}
                  WHERE link_id = $1 AND source_site = $2 AND NOT confirmed AND position_counter >= $3::text::numeric"
            ),
            &format!(
                "DELETE FROM {table}
                  WHERE link_id = ? AND source_site = ? AND NOT confirmed AND position_counter >= CAST(? AS DECIMAL(20, 0))"
            ),
            &params,
        ))
        .await?;
    Ok(())
}

/// Mark records `ids` of `table` (keyed by `id_column`; both duplex's own,
/// never configuration) confirmed.
pub(crate) async fn confirm_ids(
    client: &mut ControlDb,
    table: &str,
    id_column: &str,
    ids: &[i64],
) -> Result<(), ControlError> {
    for chunk in ids.chunks(1000) {
        // Integers written by duplex itself: safe to inline, and the same
        // text on both engines.
        let list = chunk
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("UPDATE {table} SET confirmed = TRUE WHERE {id_column} IN ({list})");
        client
            .exec(Sql::new("confirm records", &sql, &sql, &[]))
            .await?;
    }
    Ok(())
}
