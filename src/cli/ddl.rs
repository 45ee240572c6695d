//! `duplex ddl`: one ALTER TABLE applied to both sites of a link in a safe
//! order (`runner::coordinated_ddl`), each step printed as it is done.

use super::control::connect;

/// Run `statement` on both sites of link `link` (id or name). Returns
/// whether it was done (a refusal or a failed step says why, on stderr).
pub async fn ddl(
    control: &str,
    link: &str,
    request: duplex::runner::DdlRequest<'_>,
) -> anyhow::Result<()> {
    let mut client = connect(control, "duplex ddl").await?;
    let lc = super::control::link_config(&mut client, link).await?;
    duplex::runner::coordinated_ddl(&mut client, &lc, request, &mut |line| println!("{line}"))
        .await?;
    Ok(())
}
