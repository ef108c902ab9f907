//! Test images: a busybox layer (from Debian's busybox-static) and small distinct layers,
//! imported into a store from an OCI layout.

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::super::super::ImageStore;
use super::super::super::tests::fixtures::{
    Built, ImageSpec, LayerSpec, LayerTar, Naming, write_oci,
};
use super::super::{LayerProgress, LayerState};

/// A layer tar holding busybox with a link per applet.
pub(crate) fn busybox_layer() -> Option<Vec<u8>> {
    let dir = tempfile::tempdir().ok()?;
    berth_tests::busybox_rootfs(dir.path()).ok()?;
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Deterministic);
    b.append_dir_all(".", dir.path()).ok()?;
    b.into_inner().ok()
}

/// A small layer with one file of its own.
pub(crate) fn small_layer(name: &str) -> Vec<u8> {
    LayerTar::new()
        .dir("data", 0o755)
        .file(
            &format!("data/{name}"),
            format!("layer {name}\n").repeat(200).as_bytes(),
            0o644,
        )
        .finish()
}

/// Two images sharing their first four layers: A = base + l2..l5, B = base + l2..l4 + l6.
pub(crate) struct Pair {
    pub a: Built,
    pub b: Built,
    pub a_spec: ImageSpec,
    pub b_spec: ImageSpec,
}

pub(crate) fn pair(base: Vec<u8>) -> Pair {
    let shared: Vec<LayerSpec> = std::iter::once(base)
        .chain(["l2", "l3", "l4"].iter().map(|n| small_layer(n)))
        .map(LayerSpec::gzip)
        .collect();
    let mut a_layers = shared.clone();
    a_layers.push(LayerSpec::gzip(small_layer("l5")));
    let mut b_layers = shared;
    b_layers.push(LayerSpec::gzip(small_layer("l6")));
    let mut a_spec = ImageSpec::new(&["test/a:v1"], a_layers);
    a_spec.config =
        serde_json::json!({"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "Labels": {"image": "a"}});
    let mut b_spec = ImageSpec::new(&["test/b:v1"], b_layers);
    b_spec.config =
        serde_json::json!({"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "Labels": {"image": "b"}});
    Pair {
        a: a_spec.build(),
        b: b_spec.build(),
        a_spec,
        b_spec,
    }
}

/// Imports `specs` into `store` through an OCI layout in `dir`.
pub(crate) fn import(store: &ImageStore, dir: &Path, specs: &[ImageSpec]) {
    let layout = dir.join(format!("layout-{}", specs.len()));
    write_oci(&layout, specs, Naming::RefName);
    store.import(&layout).expect("import test images");
    std::fs::remove_dir_all(&layout).expect("remove layout");
}

/// Progress events, collected.
#[derive(Clone, Default)]
pub(crate) struct Events(Arc<Mutex<Vec<LayerProgress>>>);

impl Events {
    pub(crate) fn callback(&self) -> impl Fn(&LayerProgress) + Send + Sync + 'static {
        let events = self.0.clone();
        move |p: &LayerProgress| events.lock().unwrap().push(p.clone())
    }

    pub(crate) fn all(&self) -> Vec<LayerProgress> {
        self.0.lock().unwrap().clone()
    }

    /// Digests that reached `state`, in order.
    pub(crate) fn with_state(&self, state: LayerState) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|p| p.state == state)
            .map(|p| p.digest)
            .collect()
    }

    /// Bytes this pull received over the network (the `Downloaded` events).
    pub(crate) fn bytes_received(&self) -> u64 {
        self.all()
            .iter()
            .filter(|p| p.state == LayerState::Downloaded)
            .map(|p| p.done)
            .sum()
    }
}
