//! `ImportImage`, `ListImages` and `RemoveImage`: image operations on nodes, each node
//! answering for itself.

use std::time::Duration;

use berth_proto::v1::node_request::Op;
use berth_proto::v1::{
    AttachDown, ImagesResponse, ImportImageRequest, ListImagesRequest, NodeImageImport,
    NodeImageList, NodeImageRemove, NodeImageResult, RemoveImageRequest, attach_down, attach_up,
    import_image_request,
};
use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::{ControlService, failure_status};
use crate::api::control::error::ControlError;
use crate::api::relay::{Attached, Relay, RelayError};
use crate::state::Node;

/// How long a node may take to answer a list or a removal.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node may take to unpack an imported archive once it has all of it.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(600);
/// The largest `data` frame accepted.
pub const MAX_IMPORT_FRAME: usize = 1024 * 1024;

impl ControlService {
    /// `ImportImage`: here when leading, else forwarded with its data.
    pub(in crate::api::control) async fn import_image_rpc(
        &self,
        request: Request<Streaming<ImportImageRequest>>,
    ) -> Result<Response<ImagesResponse>, Status> {
        let forwarded = self.accept(&request, "ImportImage")?;
        let mut input = request.into_inner();
        if let Err(e) = self.ensure_leading() {
            let forward = self.forward_to(e, forwarded)?;
            let frames = tokio_stream::StreamExt::map_while(input, Result::ok);
            let request = self.forwarded_stream(frames);
            return forward
                .call(|mut client| async move { client.import_image(request).await })
                .await;
        }
        let selector = match input.next().await {
            Some(Ok(ImportImageRequest {
                frame: Some(import_image_request::Frame::Start(s)),
            })) => s,
            Some(Err(status)) => return Err(status),
            _ => {
                return Err(ControlError::BadStream(
                    "the first frame of ImportImage must be `start`, naming the nodes".into(),
                )
                .into());
            }
        };
        let relay = self.node_relay()?;
        let nodes = self.select_nodes(&selector.nodes).await?;
        if nodes.is_empty() {
            return Err(Status::failed_precondition(
                "no node is ready to import the image",
            ));
        }
        let mut open = open_all(&relay, &nodes, || Op::ImageImport(NodeImageImport {})).await;
        // Every piece goes to every node; the slowest node paces the upload.
        let mut failed = None;
        while let Some(frame) = input.next().await {
            let data = match frame {
                Ok(ImportImageRequest {
                    frame: Some(import_image_request::Frame::Data(d)),
                }) if d.len() <= MAX_IMPORT_FRAME => d,
                Ok(ImportImageRequest {
                    frame: Some(import_image_request::Frame::Data(d)),
                }) => {
                    failed = Some(Status::invalid_argument(format!(
                        "a data frame of {} bytes is over the {MAX_IMPORT_FRAME} allowed",
                        d.len()
                    )));
                    break;
                }
                Ok(_) => continue,
                Err(s) => {
                    failed = Some(s);
                    break;
                }
            };
            send_all(&mut open, attach_down::Frame::Data(data)).await;
        }
        // Ends the upload: complete, or abandoned (the nodes discard what they got).
        send_all(&mut open, attach_down::Frame::DataEnd(failed.is_none())).await;
        if let Some(status) = failed {
            return Err(status);
        }
        Ok(Response::new(answers(&nodes, open, IMPORT_TIMEOUT).await))
    }

    /// `ListImages`.
    pub(in crate::api::control) async fn list_images_rpc(
        &self,
        request: Request<ListImagesRequest>,
    ) -> Result<Response<ImagesResponse>, Status> {
        let forwarded = self.accept(&request, "ListImages")?;
        let message = request.into_inner();
        if let Err(e) = self.ensure_leading() {
            let forward = self.forward_to(e, forwarded)?;
            let request = self.forwarded(message);
            return forward
                .call(|mut client| async move { client.list_images(request).await })
                .await;
        }
        let selector = message.nodes.unwrap_or_default();
        let answer = self
            .on_nodes(&selector.nodes, || Op::ImageList(NodeImageList {}))
            .await?;
        Ok(Response::new(answer))
    }

    /// `RemoveImage`.
    pub(in crate::api::control) async fn remove_image_rpc(
        &self,
        request: Request<RemoveImageRequest>,
    ) -> Result<Response<ImagesResponse>, Status> {
        let forwarded = self.accept(&request, "RemoveImage")?;
        let message = request.into_inner();
        if let Err(e) = self.ensure_leading() {
            let forward = self.forward_to(e, forwarded)?;
            let request = self.forwarded(message);
            return forward
                .call(|mut client| async move { client.remove_image(request).await })
                .await;
        }
        if message.reference.is_empty() {
            return Err(Status::invalid_argument(
                "name the image to remove (a reference or an id)",
            ));
        }
        let selector = message.nodes.unwrap_or_default();
        let reference = message.reference;
        let answer = self
            .on_nodes(&selector.nodes, || {
                Op::ImageRemove(NodeImageRemove {
                    reference: reference.clone(),
                })
            })
            .await?;
        Ok(Response::new(answer))
    }

    /// Sends `op` to the selected nodes and gathers their answers.
    async fn on_nodes(
        &self,
        selector: &[String],
        op: impl Fn() -> Op,
    ) -> Result<ImagesResponse, ControlError> {
        let relay = self.node_relay()?;
        let nodes = self.select_nodes(selector).await?;
        let open = open_all(&relay, &nodes, op).await;
        Ok(answers(&nodes, open, ANSWER_TIMEOUT).await)
    }
}

/// Opens `op` on every node at once.
async fn open_all(
    relay: &Relay,
    nodes: &[Node],
    op: impl Fn() -> Op,
) -> Vec<Result<Attached, String>> {
    futures::future::join_all(nodes.iter().map(|n| {
        let op = op();
        async move {
            relay
                .open(&n.id, op)
                .await
                .map_err(|e: RelayError| e.to_string())
        }
    }))
    .await
}

/// Sends `frame` to every node still in the call; a node that went away is marked failed.
async fn send_all(open: &mut [Result<Attached, String>], frame: attach_down::Frame) {
    let sends = open.iter_mut().map(|o| {
        let frame = frame.clone();
        async move {
            if let Ok(a) = o
                && a.down
                    .send(AttachDown { frame: Some(frame) })
                    .await
                    .is_err()
            {
                // Its answer (a failure frame) says why; keep reading it.
            }
        }
    });
    futures::future::join_all(sends).await;
}

/// Each node's final frame, as a result per node.
async fn answers(
    nodes: &[Node],
    open: Vec<Result<Attached, String>>,
    timeout: Duration,
) -> ImagesResponse {
    let reads = nodes.iter().zip(open).map(|(n, o)| async move {
        let mut result = NodeImageResult {
            node_id: n.id.clone(),
            hostname: n.hostname.clone(),
            images: vec![],
            error: String::new(),
        };
        let mut a = match o {
            Ok(a) => a,
            Err(e) => {
                result.error = e;
                return result;
            }
        };
        let answer = tokio::time::timeout(timeout, async {
            while let Some(frame) = a.up.next().await {
                match frame.map(|f| f.frame) {
                    Ok(Some(attach_up::Frame::Images(list))) => return Ok(list.images),
                    Ok(Some(attach_up::Frame::Failure(f))) => {
                        return Err(failure_status(&n.hostname, &f).message().to_owned());
                    }
                    Ok(_) => continue,
                    Err(s) => return Err(s.message().to_owned()),
                }
            }
            Err("the node ended the call without an answer".to_owned())
        })
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
        match answer {
            Ok(images) => result.images = images,
            Err(e) => result.error = e,
        }
        result
    });
    ImagesResponse {
        nodes: futures::future::join_all(reads).await,
    }
}
