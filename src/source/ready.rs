//! The events a source has decoded and not yet handed on, and the rule both
//! sources follow for a transaction's `Begin`: it is handed on just before the
//! transaction's first event, so a transaction of which nothing passes (an echo,
//! or changes of tables the link does not sync) is never begun.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::canonical::{ChangeEvent, Op, Row, RowChange, TableSchema, TxnMeta};
use crate::marker::Marker;

#[derive(Debug, Default)]
pub(crate) struct Ready(VecDeque<ChangeEvent>);

impl Ready {
    /// The oldest event not yet handed on.
    pub(crate) fn pop(&mut self) -> Option<ChangeEvent> {
        self.0.pop_front()
    }

    pub(crate) fn push(&mut self, event: ChangeEvent) {
        self.0.push_back(event);
    }

    /// Queue the transaction's `Begin` unless `begun` says it was queued
    /// already; true when it was queued now.
    pub(crate) fn begin_once(&mut self, begun: &mut bool, meta: &TxnMeta) -> bool {
        if *begun {
            return false;
        }
        *begun = true;
        self.0.push_back(ChangeEvent::Begin(meta.clone()));
        true
    }

    /// Queue a row change with the version it carries.
    pub(crate) fn change(
        &mut self,
        table: Arc<TableSchema>,
        op: Op,
        before: Option<Row>,
        after: Option<Row>,
        marker: Marker,
    ) {
        self.0.push_back(ChangeEvent::Change(RowChange {
            table,
            op,
            before,
            after,
            marker,
        }));
    }
}
