//! The end-to-end scenarios, one file per subject. Each runs against real throwaway
//! servers started through `crate::support`; where a scenario holds for every engine
//! pair, its file runs one body per pair so that a failure names the pair.

mod apply_contention;
mod apply_rounds;
mod binlog_statements;
mod cli;
mod conflicts;
mod control_mysql;
mod control_outage;
mod convergence;
mod cross_engine_types;
mod equal_version_times;
mod false_conflicts;
mod generators;
mod ha;
mod initial_sync;
mod initial_sync_pagila;
mod key_generators;
mod least_privilege;
mod live_config;
mod localdb;
mod metrics;
mod multi_row_cases;
mod multi_row_writes;
mod mysql_durability;
mod mysql_sync;
mod mysql_types;
mod operator_errors;
mod parallel_apply;
mod parity;
mod pg_auth_tls;
mod pg_big_txn;
mod pg_codec;
mod pg_crash;
mod pg_edge_cases;
mod pg_pg_sync;
mod pg_types;
mod quarantine_values;
mod resync;
mod retention_guardrails;
mod same_key_conflicts;
mod same_key_txn;
mod sample_schema;
mod schema_changes;
mod status_history;
mod table_refusals;
