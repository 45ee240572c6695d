//! The control database from the command line: connecting to it, and
//! `duplex init`, `duplex upgrade` and `duplex config check`.

use anyhow::Context;
use duplex::control::ControlDb;

pub async fn connect(control: &str, application_name: &str) -> anyhow::Result<ControlDb> {
    let ep = duplex::control::ControlEndpoint::from_url(control)?;
    let mut client = ep
        .connect(application_name)
        .await
        .context("connect to the control database")?;
    duplex::control::check_version(&mut client).await?;
    Ok(client)
}
