//! `berth inspect SERVICE`: the full spec, version and history (YAML unless `-o json`).

use super::Io;
use crate::args::{GlobalArgs, InspectArgs};
use crate::error::CliError;
use crate::exit;
use crate::output::{self, OutputFormat, model::ServiceView};

/// Runs `berth inspect`.
pub async fn run(g: &GlobalArgs, args: &InspectArgs, io: &mut Io<'_>) -> Result<u8, CliError> {
    let client = super::connect(g, io).await?;
    let service = super::get_service(&client, &args.service).await?;
    let view = ServiceView::from(&service);
    let text = match args.output {
        OutputFormat::Json => output::to_json(&view)?,
        OutputFormat::Text | OutputFormat::Yaml => output::to_yaml(&view)?,
    };
    io.print(&text)?;
    Ok(exit::OK)
}
