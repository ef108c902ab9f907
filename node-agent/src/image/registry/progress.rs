//! Pull progress, layer by layer, for a caller to show (`berth ps`, the agent's command line).

/// What is happening to one layer of a pull.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerState {
    /// The store has the layer: nothing to fetch.
    Cached,
    /// This pull is fetching it; `done` of `total` bytes so far.
    Downloading,
    /// This pull fetched it: `done` bytes came over the network, verified.
    Downloaded,
    /// Another pull in this process is fetching it; `done` is that pull's progress.
    Waiting,
    /// Another pull fetched it (or committed it to the store) for this one.
    Shared,
}

/// One progress event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerProgress {
    /// The layer blob's digest, `sha256:<hex>`.
    pub digest: String,
    /// What is happening.
    pub state: LayerState,
    /// Bytes so far.
    pub done: u64,
    /// The blob's size.
    pub total: u64,
}

/// The callback a pull reports to. It is called from the pull's task: it should be quick.
pub type ProgressFn<'a> = dyn Fn(&LayerProgress) + Send + Sync + 'a;
