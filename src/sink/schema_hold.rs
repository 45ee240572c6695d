//! A table whose shape differs between the sites holds only its own
//! changes. Before a change is decided, its columns are checked against the
//! target's table (once per shape: a change of a shape found to fit is not
//! checked again). A column the target does not have (added on the source
//! only, dropped or renamed on the target only), or no such table at all,
//! holds the table in this direction: this change and every later one of
//! the table are kept in order as held quarantine records, with what
//! differs and how to fix it (`journal::schema_holds`), while the rest of
//! the link flows.
//!
//! Worker 0's periodic work reads each held table's description again. Once
//! the target's table has every column of the newest shape the source sent
//! (the DBA added it there, or dropped it on the source too, or excluded or
//! mapped it), the held changes are applied in source order before the
//! stream goes on, and the table flows again. A held change that still
//! carries a column gone from the source since (dropped on both sites) is
//! applied without it.

use std::collections::HashSet;
use std::sync::Arc;

use crate::canonical::{RowChange, SourceForm, TableName};
use crate::mapping::DirectionMapping;
use crate::sink::target::Target;
use crate::sink::{Applier, SinkError};

/// The index in its source transaction of the record of a table held
/// again at a released change (no change of a transaction has it).
const HOLD_AGAIN_INDEX: u32 = i32::MAX as u32;

/// The names of a change's columns (the target's names, once mapped).
fn column_names(change: &RowChange) -> Vec<&str> {
    change
        .table
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .collect()
}

/// The names of a change's columns as its source has them (`source`: the
/// change before the mapping, when the mapping changed it).
fn source_column_names(change: &RowChange, source: &SourceForm) -> Vec<String> {
    match source {
        SourceForm::Mapped(s) => &s.table.columns,
        _ => &change.table.columns,
    }
    .iter()
    .map(|c| c.name.clone())
    .collect()
}

impl<T: Target> Applier<T> {
    /// Hold `change`'s table from this change on when the target's table
    /// does not fit it; for a table held already, record a newer shape (the
    /// one the target must fit). `source`: the change before the mapping.
    pub(crate) async fn check_shape(
        &mut self,
        change: &RowChange,
        source: &SourceForm,
    ) -> Result<(), SinkError> {
        let table = &change.table.table;
        if let Some(fits) = self.fitting.get(table) {
            if Arc::ptr_eq(fits, &change.table) || fits.columns == change.table.columns {
                return Ok(());
            }
        }
        let source_columns = source_column_names(change, source);
        let held = self.spec.schema_holds.get(&table.name);
        if held
            .as_ref()
            .is_some_and(|h| h.source_columns == source_columns)
        {
            return Ok(());
        }
        let reason = match self.shape_differs(change).await? {
            Some(reason) => reason,
            None if held.is_none() => {
                self.fitting.insert(table.clone(), change.table.clone());
                return Ok(());
            }
            // Held, and this newer shape fits: the held changes are applied
            // at the next periodic check, before any later change.
            None => format!(
                "the changes of {table} from site {} have a new shape, which site {} fits: the held changes are applied within seconds",
                self.spec.source_name,
                self.target.site_name()
            ),
        };
        let origin = self.group.next_origin();
        self.quarantine
            .hold_for_schema(table.clone(), source_columns, reason, &origin);
        Ok(())
    }

    /// What differs between `change`'s columns and the target's table, with
    /// how to fix it; `None` when it fits. A column not found is looked for
    /// again in a fresh description (added on the target since).
    async fn shape_differs(&mut self, change: &RowChange) -> Result<Option<String>, SinkError> {
        let table = &change.table.table;
        let columns = column_names(change);
        let mut missing = Vec::new();
        for fresh in [false, true] {
            missing = match self.target.missing_columns(table, &columns, fresh).await {
                Ok(m) => m,
                Err(SinkError::MissingTable { .. }) if fresh => {
                    return Ok(Some(self.no_table_reason(table)));
                }
                Err(SinkError::MissingTable { .. }) => continue,
                Err(e) => return Err(e),
            };
            if missing.is_empty() {
                return Ok(None);
            }
        }
        Ok(Some(self.missing_columns_reason(change, &missing)))
    }

    fn missing_columns_reason(&self, change: &RowChange, missing: &[String]) -> String {
        let (source, target) = (&self.spec.source_name, self.target.site_name());
        let table = &change.table.table;
        let own: Vec<&String> = missing
            .iter()
            .filter(|m| self.target.own_columns().contains(&m.as_str()))
            .collect();
        if !own.is_empty() {
            return format!(
                "table {table} on site {target} lacks duplex's own column{} {} (the table was created again?): its changes from site {source} are held in order. \
                 Have duplex prepare the table again and copy what it lost: duplex resync --link {} --table {}; the held changes are then applied",
                if own.len() == 1 { "" } else { "s" },
                own.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                self.spec.link_name,
                table.name
            );
        }
        let typed: Vec<String> = missing
            .iter()
            .map(|m| {
                let ty = change
                    .table
                    .columns
                    .iter()
                    .find(|c| &c.name == m)
                    .map(|c| c.type_name.as_str())
                    .unwrap_or("?");
                format!("{m} {ty}")
            })
            .collect();
        let them = if missing.len() == 1 { "it" } else { "them" };
        format!(
            "the changes of {table} from site {source} carry column{} {} that site {target}'s table does not have (added on site {source}, or dropped or renamed on site {target}). \
             They are held in order, nothing is lost, and the rest of the link flows. \
             Make the tables match: add {them} on site {target} (as on site {source}: {}), or drop {them} on site {source} too, \
             or keep {them} on site {source} only (a duplex.column_mappings row of site {source} with synced = false); \
             the held changes are then applied by themselves, in order",
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", "),
            typed.join(", "),
        )
    }

    fn no_table_reason(&self, table: &TableName) -> String {
        let (source, target) = (&self.spec.source_name, self.target.site_name());
        format!(
            "table {table} does not exist on site {target} (dropped or renamed there): its changes from site {source} are held in order, nothing is lost, and the rest of the link flows. \
             Create it on site {target} again (or rename it back), or remove it from the link (duplex.link_tables) and discard its held changes; \
             once the table is there, the held changes are applied by themselves, in order"
        )
    }

    /// Between source transactions (worker 0, every group committed): the
    /// held tables that the target fits now are released, their held
    /// changes applied in source order before the stream goes on. The
    /// target fits when it has every column of the newest shape the source
    /// sent, or of the source's table as its catalog has it now (a column
    /// dropped there since is not waited for).
    pub(crate) async fn release_fitting_tables(
        &mut self,
        mapping: &mut DirectionMapping,
    ) -> Result<(), SinkError> {
        let holds = self.spec.schema_holds.all();
        // The hold records must be in the control schema before they are
        // settled there.
        if holds.is_empty() || !self.ship_journal().await? {
            return Ok(());
        }
        let mut released = Vec::new();
        for h in holds {
            // The columns the mapping fills on insert must be there too.
            let filled = mapping.filled_columns(&h.table.name);
            let mut columns = mapping.target_columns(&h.table.name, &h.source_columns);
            columns.extend(filled.iter().cloned());
            if self.fits(&h.table, &columns).await? {
                released.push(h);
                continue;
            }
            match self.source_catalog.columns(&h.table).await {
                Ok(Some(now)) => {
                    let mut columns = mapping.target_columns(&h.table.name, &now);
                    columns.extend(filled.iter().cloned());
                    if self.fits(&h.table, &columns).await? {
                        released.push(h);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(table = %h.table, error = %e, "cannot read the source's catalog now")
                }
            }
        }
        if released.is_empty() {
            return Ok(());
        }
        for h in &released {
            self.quarantine.end_schema_hold(&h.table).await?;
            self.fitting.remove(&h.table);
            tracing::info!(table = %h.table, "the target's table fits the changes now: applying the held ones, in order");
        }
        self.release_held(mapping).await
    }

    /// Has the target's table (described again) every one of `columns`?
    async fn fits(&mut self, table: &TableName, columns: &[String]) -> Result<bool, SinkError> {
        let names: Vec<&str> = columns.iter().map(String::as_str).collect();
        match self.target.missing_columns(table, &names, true).await {
            Ok(m) => Ok(m.is_empty()),
            Err(SinkError::MissingTable { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A held or quarantined change applied again, fitted to the target's
    /// table: without the columns the target does not have that the source
    /// has dropped since (the sites match without them). `Err` with what
    /// differs when it carries a column the target lacks and the source
    /// still has (or whose source cannot be read now).
    pub(crate) async fn fit_retry(
        &mut self,
        change: RowChange,
        mapping: &DirectionMapping,
    ) -> Result<Result<RowChange, (RowChange, String)>, SinkError> {
        let columns = column_names(&change);
        let missing = match self
            .target
            .missing_columns(&change.table.table, &columns, false)
            .await
        {
            Ok(m) => m,
            Err(SinkError::MissingTable { .. }) => {
                let why = self.no_table_reason(&change.table.table);
                return Ok(Err((change, why)));
            }
            Err(e) => return Err(e),
        };
        if missing.is_empty() {
            return Ok(Ok(change));
        }
        if missing
            .iter()
            .any(|m| self.target.own_columns().contains(&m.as_str()))
        {
            let why = self.missing_columns_reason(&change, &missing);
            return Ok(Err((change, why)));
        }
        let table = change.table.table.clone();
        let on_source: HashSet<String> = match self.source_catalog.columns(&table).await {
            Ok(Some(now)) => mapping
                .target_columns(&table.name, &now)
                .into_iter()
                .collect(),
            _ => {
                let why = self.missing_columns_reason(&change, &missing);
                return Ok(Err((change, why)));
            }
        };
        // Still on the source (the target lacks it), or a column the change
        // does not carry appeared on the source meanwhile (it may be the
        // same column renamed: its values would be lost).
        let carried: HashSet<&str> = columns.iter().copied().collect();
        if missing.iter().any(|m| on_source.contains(m))
            || on_source.iter().any(|c| !carried.contains(c.as_str()))
        {
            let why = self.missing_columns_reason(&change, &missing);
            return Ok(Err((change, why)));
        }
        tracing::debug!(%table, dropped = ?missing, "applying a held change without the columns dropped since");
        Ok(Ok(crate::mapping::without_columns(change, |c| {
            missing.iter().any(|m| m == c)
        })))
    }

    /// Hold `change`'s table again from `origin` (a held change released
    /// that the target does not fit after all), in a target transaction of
    /// its own that writes the hold's record.
    pub(crate) async fn hold_again(
        &mut self,
        change: &RowChange,
        origin: crate::canonical::ChangeOrigin,
        reason: String,
    ) -> Result<(), SinkError> {
        let source_columns = source_column_names(change, &origin.source);
        // Keyed apart from the held change's own record, which has the
        // change's place in the stream (a record is keyed by its place: the
        // same one would have been written over it).
        let mut at = origin;
        at.index = HOLD_AGAIN_INDEX;
        self.target.begin().await?;
        self.quarantine
            .hold_for_schema(change.table.table.clone(), source_columns, reason, &at);
        self.commit_target(None, false).await
    }

    /// Of the tables a TRUNCATE names, those the target has. A table held
    /// because the target has no such table cannot be truncated there: it
    /// stops in this direction instead (its rows on the other site are
    /// gone; a resync brings the target's table back to equal once it is
    /// there), rather than failing the direction for ever.
    pub(crate) async fn truncatable(
        &mut self,
        tables: Vec<Arc<crate::canonical::TableSchema>>,
    ) -> Result<Vec<Arc<crate::canonical::TableSchema>>, SinkError> {
        let mut kept = Vec::with_capacity(tables.len());
        for t in tables {
            if !self.spec.schema_holds.contains(&t.table.name) {
                kept.push(t);
                continue;
            }
            match self.target.missing_columns(&t.table, &[], true).await {
                Ok(_) => kept.push(t),
                Err(SinkError::MissingTable { .. }) => {
                    let origin = self.group.next_origin();
                    let position = origin.position;
                    self.quarantine.stop(
                        &t.table,
                        origin,
                        &crate::canonical::Unreplicable {
                            tables: vec![t.table.clone()],
                            statement: format!("TRUNCATE {}", t.table),
                            position,
                            reason: format!(
                                "TRUNCATE of {} on site {} cannot be applied: site {} has no such table. Once it has it again, resync it (duplex repair --from {} --table {}) and discard this record",
                                t.table,
                                self.spec.source_name,
                                self.target.site_name(),
                                self.spec.source_name,
                                t.table.name
                            ),
                        },
                    );
                }
                Err(e) => return Err(e),
            }
        }
        Ok(kept)
    }
}
