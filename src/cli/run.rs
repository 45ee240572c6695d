//! `duplex run`: replicate every enabled link until interrupted, then stop
//! cleanly (whole transactions committed).

use duplex::pipeline::PipelineTuning;

/// Run every link of the control schema at `control` until SIGINT/SIGTERM,
/// serving metrics at `metrics_listen` when given; with `ha`, only the links
/// whose lease this process holds.
pub async fn run(
    control: &str,
    batch_rows: usize,
    metrics_listen: Option<std::net::SocketAddr>,
    ha: Option<duplex::runner::HaOptions>,
) -> anyhow::Result<()> {
    let tuning = PipelineTuning {
        max_batch_rows: batch_rows,
        ..PipelineTuning::default()
    };
    let mut handle = duplex::runner::start_with(control, tuning, ha)
        .await
        .map_err(|e| anyhow::anyhow!(duplex::error_class::explained(&e, "<link>")))?;
    if let Some(addr) = metrics_listen {
        handle.serve_metrics(addr).await.map_err(|e| {
            anyhow::anyhow!("cannot serve metrics on {addr}: {e} (is the address in use? choose another with --metrics-listen)")
        })?;
    }
    let stop = handle.shutdown_sender();
    tokio::select! {
        _ = shutdown_signal() => {
            tracing::info!("shutting down: committing applied transactions (interrupt again to stop at once)");
            let _ = stop.send(true);
            // An applier waiting on a row lock must not keep the process
            // alive forever: a second signal or 60 s end it. Nothing is
            // lost: uncommitted work is rolled back and re-read on start.
            tokio::select! {
                _ = handle.wait() => {}
                _ = shutdown_signal() => tracing::warn!("second interrupt: stopping without waiting"),
                _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => tracing::warn!("shutdown took over 60 s: stopping without waiting"),
            }
        }
        _ = handle.wait() => {}
    }
    Ok(())
}

/// Resolves at the first SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
