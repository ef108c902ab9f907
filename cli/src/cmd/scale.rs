//! `berth scale web=5 api=3`: a new replica count for each service, one after the other.

use berth_proto::v1;

use super::Io;
use crate::args::{GlobalArgs, ScaleArgs};
use crate::error::CliError;
use crate::exit;

/// Runs `berth scale`.
pub async fn run(g: &GlobalArgs, args: &ScaleArgs, io: &mut Io<'_>) -> Result<u8, CliError> {
    let client = super::connect(g, io).await?;
    for (name, replicas) in &args.targets {
        let response = client
            .call(&format!("scale {name}"), |mut c| {
                let request = v1::ScaleServiceRequest {
                    name: name.clone(),
                    replicas: *replicas,
                    expected_version: None,
                };
                async move { c.scale_service(request).await }
            })
            .await?;
        let version = response.service.map_or(0, |s| s.version);
        io.print(&format!(
            "{name}: scaled to {replicas} (version {version})\n"
        ))?;
    }
    Ok(exit::OK)
}
