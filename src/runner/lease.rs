//! Leases for several `duplex run --ha` processes sharing one control
//! schema (`duplex.link_leases`, `duplex.run_processes`): each link is
//! applied by the one process holding its lease.
//!
//! - A lease is taken only once free (expired by the control database's
//!   clock), with the next term; the holder renews it every quarter of its
//!   length, only under the term it took it with.
//! - A holder that finds its term gone stops the link at once. One that
//!   cannot renew (control database unreachable, or a statement hanging:
//!   every call is bounded by the time left) stops it half a lease after its
//!   last renewal began, before the lease can expire and another process
//!   take the link: two processes never apply a link at the same time,
//!   whatever the processes' clocks say. The stop is sent to the link's
//!   directions directly, whatever the configuration watcher is doing.
//! - Leases are renewed until the process has stopped its links and given
//!   them back (a clean stop may wait on an applier for a while).
//! - On the data path a PostgreSQL target fences as well: the replication
//!   origin an applier commits under is held by one session at a time.
//! - Links spread across the live processes: a process takes no more than
//!   its share (links / live processes, rounded up) and gives one back per
//!   round while it holds more.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use crate::control::{ControlDb, ControlEndpoint, Sql, P};
use crate::error_chain::error_chain;

/// `duplex run --ha`.
#[derive(Debug, Clone)]
pub struct HaOptions {
    /// How long a lease lasts without renewal: a dead holder's links are
    /// taken over this long after its last renewal (and one round more).
    pub lease: Duration,
}

impl Default for HaOptions {
    fn default() -> Self {
        HaOptions {
            lease: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Held {
    term: i64,
    /// Stop the link by then unless renewed: half a lease after the last
    /// renewal began.
    deadline: Instant,
}

/// This process's leases, shared between the renewing task and the links.
pub(super) struct Leases {
    me: String,
    lease: Duration,
    held: Mutex<BTreeMap<u32, Held>>,
    /// Links whose lease was lost, for the links' task to forget.
    lost: Mutex<Vec<u32>>,
    lost_signal: Notify,
    /// The stop of each running held link (`LinkRun::stopper`), sent at once
    /// when its lease is lost.
    stoppers: Mutex<BTreeMap<u32, watch::Sender<bool>>>,
    /// Set once the process has given its leases back: renewing ends.
    left: watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Leases {
    pub(super) fn new(options: &HaOptions) -> Arc<Leases> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "host".into());
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        Arc::new(Leases {
            me: format!("{host}:{}:{nonce:08x}", std::process::id()),
            lease: options.lease.max(Duration::from_secs(2)),
            held: Mutex::new(BTreeMap::new()),
            lost: Mutex::new(Vec::new()),
            lost_signal: Notify::new(),
            stoppers: Mutex::new(BTreeMap::new()),
            left: watch::channel(false).0,
        })
    }

    /// This process in `duplex.link_leases.holder`.
    pub(super) fn holder(&self) -> &str {
        &self.me
    }

    /// How often leases are renewed, and free ones looked for.
    pub(super) fn round(&self) -> Duration {
        self.lease / 4
    }

    fn micros(&self) -> i64 {
        i64::try_from(self.lease.as_micros()).unwrap_or(i64::MAX)
    }

    fn deadline(&self, began: Instant) -> Instant {
        began + self.lease / 2
    }

    /// The running link `link_id`'s stop, sent if its lease is lost.
    pub(super) fn watch_link(&self, link_id: u32, stopper: watch::Sender<bool>) {
        lock(&self.stoppers).insert(link_id, stopper);
    }

    pub(super) fn unwatch_link(&self, link_id: u32) {
        lock(&self.stoppers).remove(&link_id);
    }

    /// The term under which this process holds `link_id`'s lease.
    pub(super) fn term(&self, link_id: u32) -> Option<i64> {
        lock(&self.held).get(&link_id).map(|h| h.term)
    }

    pub(super) fn holds(&self, link_id: u32) -> bool {
        lock(&self.held).contains_key(&link_id)
    }

    pub(super) fn held_count(&self) -> usize {
        lock(&self.held).len()
    }

    /// The highest held link id (the one given back first).
    pub(super) fn last_held(&self) -> Option<u32> {
        lock(&self.held).keys().next_back().copied()
    }

    /// Links lost since the last call.
    pub(super) fn take_lost(&self) -> Vec<u32> {
        std::mem::take(&mut *lock(&self.lost))
    }

    /// Wait until a lease is lost.
    pub(super) async fn lost(&self) {
        self.lost_signal.notified().await
    }

    /// The lease of `link_id` under `term` is lost: its directions are told
    /// to stop now, and the links' task forgets it.
    fn mark_lost(&self, link_id: u32, term: i64, why: &str) {
        let mut held = lock(&self.held);
        if held.get(&link_id).is_some_and(|h| h.term == term) {
            held.remove(&link_id);
            drop(held);
            tracing::warn!(
                link = link_id,
                term,
                "lease lost ({why}): the link stops here"
            );
            if let Some(stop) = lock(&self.stoppers).remove(&link_id) {
                let _ = stop.send(true);
            }
            lock(&self.lost).push(link_id);
            self.lost_signal.notify_one();
        }
    }

    /// Take link `link_id`'s lease if it is free. Whether this process now
    /// holds it.
    pub(super) async fn try_acquire(
        &self,
        db: &mut ControlDb,
        link_id: u32,
    ) -> Result<bool, crate::Error> {
        if self.holds(link_id) {
            return Ok(true);
        }
        let began = Instant::now();
        db.exec(Sql::new(
            "create the link's lease row",
            "INSERT INTO duplex.link_leases (link_id, holder, term, expires_at)
             VALUES ($1, '', 0, '-infinity') ON CONFLICT (link_id) DO NOTHING",
            "INSERT IGNORE INTO duplex.link_leases (link_id, holder, term, expires_at)
             VALUES (?, '', 0, '1970-01-01')",
            &[P::I32(link_id as i32)],
        ))
        .await?;
        let taken = db
            .exec(Sql::new(
                "take a free lease",
                "UPDATE duplex.link_leases
                    SET holder = $2, term = term + 1,
                        expires_at = now() + $3::bigint * interval '1 microsecond', acquired_at = now(), renewed_at = now()
                  WHERE link_id = $1 AND expires_at < now()",
                "UPDATE duplex.link_leases
                    SET holder = ?, term = term + 1,
                        expires_at = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND,
                        acquired_at = UTC_TIMESTAMP(6), renewed_at = UTC_TIMESTAMP(6)
                  WHERE link_id = ? AND expires_at < UTC_TIMESTAMP(6)",
                &[
                    P::I32(link_id as i32),
                    P::Text(Some(&self.me)),
                    P::I64(self.micros()),
                ],
            )
            .mysql_order(&[1, 2, 0]))
            .await?;
        if taken == 0 {
            return Ok(false);
        }
        let term: i64 = db
            .row(Sql::new(
                "read the lease's term",
                "SELECT term FROM duplex.link_leases WHERE link_id = $1 AND holder = $2",
                "SELECT term FROM duplex.link_leases WHERE link_id = ? AND holder = ?",
                &[P::I32(link_id as i32), P::Text(Some(&self.me))],
            ))
            .await?
            .map(|r| r.parse("term"))
            .transpose()?
            .ok_or_else(|| crate::Error::Internal("a lease taken is gone".into()))?;
        lock(&self.held).insert(
            link_id,
            Held {
                term,
                deadline: self.deadline(began),
            },
        );
        tracing::info!(link = link_id, term, holder = %self.me, "lease taken: this process applies the link");
        Ok(true)
    }

    /// Give link `link_id` back (stopped first by the caller): free at once
    /// for another process.
    pub(super) async fn release(&self, db: &mut ControlDb, link_id: u32) {
        let Some(held) = lock(&self.held).remove(&link_id) else {
            return;
        };
        let freed = db
            .exec(Sql::new(
                "give a lease back",
                "UPDATE duplex.link_leases SET expires_at = now() - interval '1 microsecond', holder = ''
                  WHERE link_id = $1 AND holder = $2 AND term = $3",
                "UPDATE duplex.link_leases SET expires_at = UTC_TIMESTAMP(6) - INTERVAL 1 MICROSECOND, holder = ''
                  WHERE link_id = ? AND holder = ? AND term = ?",
                &[
                    P::I32(link_id as i32),
                    P::Text(Some(&self.me)),
                    P::I64(held.term),
                ],
            ))
            .await;
        if let Err(e) = freed {
            // It expires by itself.
            tracing::warn!(link = link_id, error = %e, "cannot give the lease back; it expires by itself");
        }
    }

    /// The live processes sharing the control schema (this one included).
    pub(super) async fn live_processes(&self, db: &mut ControlDb) -> Result<usize, crate::Error> {
        let n: i64 = db
            .row(Sql::new(
                "count the live processes",
                "SELECT count(*) AS n FROM duplex.run_processes WHERE expires_at > now()",
                "SELECT COUNT(*) AS n FROM duplex.run_processes WHERE expires_at > UTC_TIMESTAMP(6)",
                &[],
            ))
            .await?
            .map(|r| r.parse("n"))
            .transpose()?
            .unwrap_or(1);
        Ok(usize::try_from(n).unwrap_or(1).max(1))
    }

    /// One round: this process registered as live, every held lease renewed
    /// under its term; leases found taken, or not renewed in time, lost.
    async fn renew_all(&self, db: &mut Option<ControlDb>, control: &ControlEndpoint) {
        let began = Instant::now();
        // Every call is bounded by the time left before the first deadline:
        // a hanging control database must not hold back a lost lease's stop.
        let budget = self
            .until_first_deadline()
            .unwrap_or(self.lease)
            .max(Duration::from_millis(100));
        let renewed = tokio::time::timeout(budget, async {
            if db.is_none() {
                match control.connect("duplex leases").await {
                    Ok(c) => *db = Some(c),
                    Err(e) => {
                        tracing::warn!(error = %error_chain(&e), "cannot reach the control database to renew leases");
                        return;
                    }
                }
            }
            if let Some(conn) = db.as_mut() {
                if let Err(e) = self.renew_on(conn, began).await {
                    tracing::warn!(error = %error_chain(&e), "cannot renew leases");
                    *db = None;
                }
            }
        })
        .await;
        if renewed.is_err() {
            tracing::warn!("the control database did not answer in time to renew leases");
            *db = None;
        }
        self.stop_overdue();
    }

    /// Time left before the earliest deadline of a held lease.
    fn until_first_deadline(&self) -> Option<Duration> {
        lock(&self.held)
            .values()
            .map(|h| h.deadline.saturating_duration_since(Instant::now()))
            .min()
    }

    fn stop_overdue(&self) {
        let overdue: Vec<(u32, i64)> = lock(&self.held)
            .iter()
            .filter(|(_, h)| Instant::now() >= h.deadline)
            .map(|(id, h)| (*id, h.term))
            .collect();
        for (id, term) in overdue {
            self.mark_lost(
                id,
                term,
                "not renewed in time: the control database did not answer",
            );
        }
    }

    async fn renew_on(&self, db: &mut ControlDb, began: Instant) -> Result<(), crate::Error> {
        db.exec(Sql::new(
            "register this process",
            "INSERT INTO duplex.run_processes (holder, expires_at) VALUES ($1, now() + $2::bigint * interval '1 microsecond')
             ON CONFLICT (holder) DO UPDATE SET expires_at = EXCLUDED.expires_at",
            "INSERT INTO duplex.run_processes (holder, expires_at) VALUES (?, UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND)
             ON DUPLICATE KEY UPDATE expires_at = VALUES(expires_at)",
            &[P::Text(Some(&self.me)), P::I64(self.micros())],
        ))
        .await?;
        let held: Vec<(u32, i64)> = lock(&self.held)
            .iter()
            .map(|(id, h)| (*id, h.term))
            .collect();
        for (id, term) in held {
            let renewed = db
                .exec(Sql::new(
                    "renew a lease",
                    "UPDATE duplex.link_leases
                        SET expires_at = now() + $4::bigint * interval '1 microsecond', renewed_at = now()
                      WHERE link_id = $1 AND holder = $2 AND term = $3",
                    "UPDATE duplex.link_leases
                        SET expires_at = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND, renewed_at = UTC_TIMESTAMP(6)
                      WHERE link_id = ? AND holder = ? AND term = ?",
                    &[
                        P::I32(id as i32),
                        P::Text(Some(&self.me)),
                        P::I64(term),
                        P::I64(self.micros()),
                    ],
                )
                .mysql_order(&[3, 0, 1, 2]))
                .await?;
            if renewed == 0 {
                self.mark_lost(id, term, "another process holds it under a later term");
            } else if let Some(h) = lock(&self.held).get_mut(&id).filter(|h| h.term == term) {
                h.deadline = self.deadline(began);
            }
        }
        // Processes gone for long are forgotten.
        db.exec(Sql::new(
            "forget processes gone",
            "DELETE FROM duplex.run_processes WHERE expires_at < now() - interval '1 hour'",
            "DELETE FROM duplex.run_processes WHERE expires_at < UTC_TIMESTAMP(6) - INTERVAL 1 HOUR",
            &[],
        ))
        .await?;
        Ok(())
    }

    /// This process leaves: its registration goes (its leases were given
    /// back as its links stopped).
    /// Renewing ends (the process has stopped its links).
    pub(super) fn stop_renewing(&self) {
        let _ = self.left.send(true);
    }

    pub(super) async fn leave(&self, db: &mut ControlDb) {
        self.stop_renewing();
        let _ = db
            .exec(Sql::new(
                "unregister this process",
                "DELETE FROM duplex.run_processes WHERE holder = $1",
                "DELETE FROM duplex.run_processes WHERE holder = ?",
                &[P::Text(Some(&self.me))],
            ))
            .await;
    }
}

/// Renew this process's leases every round until it has given them back
/// (not at the shutdown signal: stopping its links may take a while, and
/// their leases must not lapse meanwhile), and stop a held link at its
/// deadline whatever the renewal is waiting for.
pub(super) async fn renew_leases(leases: Arc<Leases>, control: ControlEndpoint) {
    let mut left = leases.left.subscribe();
    let mut db = None;
    loop {
        if *left.borrow() {
            return;
        }
        leases.renew_all(&mut db, &control).await;
        let wait = leases
            .until_first_deadline()
            .map_or(leases.round(), |d| d.min(leases.round()));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = left.changed() => {}
        }
        leases.stop_overdue();
    }
}
