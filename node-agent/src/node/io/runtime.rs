//! The real runtime's side of client requests: each kind to its handler.

use std::sync::Arc;

use berth_proto::v1::node_request::Op;
use futures::future::BoxFuture;

use super::{Down, Up};
use crate::node::runtime::RuntimeExecutor;

impl RuntimeExecutor {
    /// Serves one relayed request.
    pub(crate) fn serve(self: Arc<Self>, op: Op, down: Down, up: Up) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            match op {
                Op::Logs(r) => super::logs::serve(self, r, up).await,
                Op::Exec(r) => super::exec::serve(self, r, down, up).await,
                Op::ImageImport(_) => super::images::import(self, down, up).await,
                Op::ImageList(_) => super::images::list(self, up).await,
                Op::ImageRemove(r) => super::images::remove(self, r, up).await,
            }
        })
    }
}
