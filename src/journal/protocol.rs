//! What both journals (conflicts and quarantine) share: the control
//! connection, the entries staged with the open target transaction (see
//! `journal::outbox`), and the settling of records an older duplex left
//! unconfirmed (it wrote them to the control schema before the target
//! committed and confirmed them after).

use crate::control::{ControlDb, ControlEndpoint, ControlError, Sql, P};
use crate::journal::JournalError;

/// Records of one direction (`link`, `source site`) in `table` that an older
/// duplex wrote before a target commit that a crash may have prevented: those of transactions
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

/// Where one direction's journal records go.
#[derive(Debug, Clone)]
pub struct JournalSpec {
    pub control: ControlEndpoint,
    pub link_id: u32,
    pub source_site: u32,
    pub target_site: u32,
}

/// One journal table of the control schema (duplex's own, never configuration).
pub(crate) struct JournalTable {
    /// `duplex.conflicts`, `duplex.quarantine`.
    pub name: &'static str,
    pub id_column: &'static str,
    /// Where a DBA's settlement is noted, and when it was settled.
    pub note_column: &'static str,
    pub settled_column: &'static str,
    /// The status that is no settlement (its settled time is cleared).
    pub open_status: &'static str,
    /// What one record is, for messages ("a conflict").
    pub what: &'static str,
    /// The control connection's application name.
    pub application_name: &'static str,
}

/// One journal of one direction: the control connection (opened on first
/// use, dropped after an error so the next use reconnects) and the entries
/// staged with the open target transaction.
pub(crate) struct JournalConn {
    pub spec: JournalSpec,
    table: &'static JournalTable,
    client: Option<ControlDb>,
    pub staged: crate::journal::outbox::Staged,
    /// The control database did not answer a probe: not tried again before.
    unreachable_until: Option<std::time::Instant>,
}

/// How long a probe of the control database may take.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// How long after a failed probe the next one waits.
const PROBE_BACKOFF: std::time::Duration = std::time::Duration::from_secs(15);

impl JournalConn {
    pub fn new(spec: JournalSpec, table: &'static JournalTable) -> JournalConn {
        JournalConn {
            spec,
            table,
            client: None,
            staged: Default::default(),
            unreachable_until: None,
        }
    }

    /// The control connection, opened if need be.
    pub async fn client(&mut self) -> Result<&mut ControlDb, JournalError> {
        let client = match self.client.take() {
            Some(c) => c,
            None => self
                .spec
                .control
                .connect(self.table.application_name)
                .await
                .map_err(|e| JournalError::Connect {
                    what: self.table.what,
                    source: Box::new(e),
                })?,
        };
        Ok(self.client.insert(client))
    }

    /// Can the control database be reached now? Connects if need be, and
    /// gives up after [`PROBE_TIMEOUT`] (a host that does not answer at all
    /// must not hold up the stream). After a failure it says no without
    /// trying for [`PROBE_BACKOFF`].
    pub async fn reachable(&mut self) -> bool {
        if self
            .unreachable_until
            .is_some_and(|t| std::time::Instant::now() < t)
        {
            return false;
        }
        let probe = async {
            let client = self.client().await.ok()?;
            client
                .exec(Sql::new(
                    "probe the control database",
                    "SELECT 1",
                    "SELECT 1",
                    &[],
                ))
                .await
                .ok()
        };
        let ok = matches!(
            tokio::time::timeout(PROBE_TIMEOUT, probe).await,
            Ok(Some(_))
        );
        if ok {
            self.unreachable_until = None;
        } else {
            self.drop_client();
            self.unreachable_until = Some(std::time::Instant::now() + PROBE_BACKOFF);
        }
        ok
    }

    /// The control database did not answer: drop the connection and let
    /// the next probe wait its backoff.
    pub fn mark_unreachable(&mut self) {
        self.drop_client();
        self.unreachable_until = Some(std::time::Instant::now() + PROBE_BACKOFF);
    }

    /// A connection is open (the last use of it worked).
    pub fn connected(&self) -> bool {
        self.client.is_some()
    }

    /// Drop the connection (after an error it may be unusable).
    pub fn drop_client(&mut self) {
        self.client = None;
    }

    /// At start: settle the records an older duplex left unconfirmed
    /// against the target's resume point (see [`reconcile_unconfirmed`]).
    pub async fn reconcile(&mut self, resume_counter: Option<u64>) -> Result<(), JournalError> {
        let (link, site) = (self.spec.link_id as i32, self.spec.source_site as i32);
        let table = self.table.name;
        let client = self.client().await?;
        reconcile_unconfirmed(client, table, link, site, resume_counter).await?;
        Ok(())
    }

    /// Note what became of a record a DBA acted on: `status` with `note`
    /// (and the time, unless it is back to the open status).
    pub async fn settle(&mut self, id: i64, status: &str, note: &str) -> Result<(), JournalError> {
        let t = self.table;
        let pg = format!(
            "UPDATE {} SET status = $2, {} = $3,
                    {} = CASE WHEN $2 = '{}' THEN NULL ELSE now() END
              WHERE {} = $1",
            t.name, t.note_column, t.settled_column, t.open_status, t.id_column
        );
        let my = format!(
            "UPDATE {} SET status = ?, {} = ?,
                    {} = IF(? = '{}', NULL, UTC_TIMESTAMP(6))
              WHERE {} = ?",
            t.name, t.note_column, t.settled_column, t.open_status, t.id_column
        );
        let client = self.client().await?;
        client
            .exec(
                Sql::new(
                    "note what became of a journal record",
                    &pg,
                    &my,
                    &[P::I64(id), P::Text(Some(status)), P::Text(Some(note))],
                )
                .mysql_order(&[1, 2, 1, 0]),
            )
            .await?;
        Ok(())
    }
}
