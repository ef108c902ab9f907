//! `berth inspect SERVICE`: the full spec, version and history (YAML unless `-o json`).

use berth_proto::v1;

use super::Io;
use crate::args::{GlobalArgs, InspectArgs};
use crate::error::CliError;
use crate::exit;
use crate::output::{self, OutputFormat, model::ServiceView};

/// Runs `berth inspect`.
pub async fn run(g: &GlobalArgs, args: &InspectArgs, io: &mut Io<'_>) -> Result<u8, CliError> {
    let client = super::connect(g, io).await?;
    let name = args.service.clone();
    let service = client
        .call(&format!("inspect {name}"), |mut c| {
            let name = name.clone();
            async move {
                c.get_service(v1::GetServiceRequest { name, stale: false })
                    .await
            }
        })
        .await?
        .service
        .unwrap_or_default();
    let view = ServiceView::from(&service);
    let text = match args.output {
        OutputFormat::Json => output::to_json(&view)?,
        OutputFormat::Text | OutputFormat::Yaml => output::to_yaml(&view)?,
    };
    io.print(&text)?;
    Ok(exit::OK)
}
