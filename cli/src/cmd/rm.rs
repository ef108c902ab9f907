//! `berth rm SERVICE...`: removes services (their tasks are stopped by the cluster).
//! Every name is tried; the command fails if any could not be removed.

use berth_proto::v1;

use super::Io;
use crate::args::{GlobalArgs, RmArgs};
use crate::error::CliError;
use crate::exit;

/// Runs `berth rm`.
pub async fn run(g: &GlobalArgs, args: &RmArgs, io: &mut Io<'_>) -> Result<u8, CliError> {
    let client = super::connect(g, io).await?;
    let mut failed = Vec::new();
    for name in &args.services {
        let result = client
            .call(&format!("rm {name}"), |mut c| {
                let request = v1::RemoveServiceRequest {
                    name: name.clone(),
                    expected_version: None,
                };
                async move { c.remove_service(request).await }
            })
            .await;
        match result {
            Ok(_) => io.print(&format!("{name}: removed\n"))?,
            // One service: its error is the command's.
            Err(e) if args.services.len() == 1 => return Err(e.into()),
            Err(e) => {
                io.note(&format!("error: {}\n", crate::error::render(&e)));
                failed.push(name.clone());
            }
        }
    }
    if failed.is_empty() {
        Ok(exit::OK)
    } else {
        Err(CliError::SomeFailed {
            what: "remove",
            names: failed,
        })
    }
}
