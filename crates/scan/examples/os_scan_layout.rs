//! Walks every layer of an OCI image layout's first manifest with the OS analysers and prints
//! the combined inventory's size and the time taken: the scanner's side of the
//! trivy/syft comparison (`/usr/bin/time -v target/ci/examples/os_scan_layout DIR`).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::time::Instant;

use scan::ImageInventory;
use scan::analyze::os_analyzers;
use scan::layer::analyze_layer;

fn json(path: &Path) -> serde_json::Value {
    let f = File::open(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_reader(BufReader::new(f)).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn blob(layout: &Path, digest: &str) -> std::path::PathBuf {
    let (alg, hex) = digest.split_once(':').expect("algorithm:hex");
    layout.join("blobs").join(alg).join(hex)
}

fn main() {
    let layout = std::env::args()
        .nth(1)
        .expect("usage: os_scan_layout OCI-LAYOUT-DIR");
    let layout = Path::new(&layout);
    let start = Instant::now();
    let index = json(&layout.join("index.json"));
    let manifest = json(&blob(
        layout,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ));
    let analyzers = os_analyzers();
    let mut layers = Vec::new();
    for l in manifest["layers"].as_array().expect("layers") {
        let digest = l["digest"].as_str().unwrap();
        let f = File::open(blob(layout, digest)).expect("layer blob");
        let inv = analyze_layer(digest, l["mediaType"].as_str(), f, &analyzers)
            .unwrap_or_else(|e| panic!("{e}"));
        layers.push(inv);
    }
    let inv = ImageInventory::combine(&layers);
    println!(
        "{} layers, {} packages, os {:?}, {:.3} s",
        layers.len(),
        inv.packages.len(),
        inv.os.as_ref().and_then(|o| o.pretty_name.as_deref()),
        start.elapsed().as_secs_f64()
    );
}
