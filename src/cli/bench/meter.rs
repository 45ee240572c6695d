//! What a run costs the machine: CPU seconds of a process (and, for a
//! database server, of all its backends) and the peak resident memory of a
//! process, read from Linux's `/proc`.

use std::path::Path;

/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`), read once.
fn ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|&t| t > 0.0)
            // Linux's USER_HZ is 100 on every common architecture.
            .unwrap_or(100.0)
    })
}

/// The fields of `/proc/<pid>/stat` after the command name (which may hold
/// spaces): index 0 is the state (field 3 of proc(5)).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(
        rest.split_whitespace()
            .map(|f| f.parse::<u64>().unwrap_or(0))
            .collect(),
    )
}

/// proc(5) field numbers, as indexes into [`stat_fields`].
const PPID: usize = 1;
const UTIME: usize = 11;
const STIME: usize = 12;
const CUTIME: usize = 13;
const CSTIME: usize = 14;

/// CPU seconds of `pid` itself, and of its children it has waited for.
pub fn process_cpu(pid: u32) -> f64 {
    stat_fields(pid)
        .map(|f| {
            let t = [UTIME, STIME, CUTIME, CSTIME]
                .iter()
                .map(|&i| f.get(i).copied().unwrap_or(0))
                .sum::<u64>();
            t as f64 / ticks_per_second()
        })
        .unwrap_or(0.0)
}

/// CPU seconds of a server: its main process, the backends it has reaped
/// and the ones still running (PostgreSQL forks a process per connection;
/// MariaDB's threads count in its one process).
pub fn server_cpu(pid: u32) -> f64 {
    let mut total = process_cpu(pid);
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return total;
    };
    for entry in dir.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(f) = stat_fields(child) {
            if f.get(PPID).copied() == Some(u64::from(pid)) {
                total += (f.get(UTIME).copied().unwrap_or(0) + f.get(STIME).copied().unwrap_or(0))
                    as f64
                    / ticks_per_second();
            }
        }
    }
    total
}

/// The pid of a PostgreSQL cluster's postmaster (first line of its pid file).
pub fn postmaster_pid(data_dir: &Path) -> Option<u32> {
    std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Forget `pid`'s peak resident memory so far (it starts again from the
/// current size), where the kernel lets us.
pub fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// `pid`'s peak resident memory (`VmHWM`) in MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU readings of the processes a workload runs on, taken at its start
/// and end.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuReading {
    pub replicator: f64,
    pub servers: f64,
}

impl CpuReading {
    pub fn since(self, start: CpuReading) -> CpuReading {
        CpuReading {
            replicator: self.replicator - start.replicator,
            servers: self.servers - start.servers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_used_some_cpu_and_memory() {
        let pid = std::process::id();
        // Burn a little CPU so the reading cannot be zero by rounding.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(50) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        assert!(x != 1);
        assert!(process_cpu(pid) > 0.0);
        assert!(peak_rss_mib(pid).is_some_and(|m| m > 0.0));
    }
}
