//! Hot-path benchmarks of the pure OCI rules: every request validates a name and a reference,
//! every push hashes its bytes and parses its manifest.

use divan::{Bencher, black_box, counter::BytesCount};
use oci::{Algorithm, Digest, Manifest, Reference};

fn main() {
    divan::main();
}

const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":1470},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824","size":2818413},{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:98e12f26c1511cdf1aa0ed2ae2ead722b2a3f5d57c57f99e65a44faf9504395c","size":1024}],"annotations":{"org.opencontainers.image.created":"2026-11-26T00:00:00Z"}}"#;

#[divan::bench]
fn parse_manifest() -> Manifest {
    Manifest::parse(
        Some("application/vnd.oci.image.manifest.v1+json"),
        black_box(MANIFEST.as_bytes()),
    )
    .unwrap()
}

#[divan::bench]
fn validate_nested_name() {
    oci::validate_repository(black_box("team-a/platform/api-gateway")).unwrap();
}

#[divan::bench]
fn parse_reference_digest() -> Reference {
    Reference::parse(black_box(
        "sha256:98e12f26c1511cdf1aa0ed2ae2ead722b2a3f5d57c57f99e65a44faf9504395c",
    ))
    .unwrap()
}

#[divan::bench]
fn parse_range() -> oci::ByteRange {
    oci::parse_range(black_box("bytes=1048576-2097151"), 1 << 30).unwrap()
}

#[divan::bench(args = [Algorithm::Sha256, Algorithm::Sha512])]
fn hash_1mib(b: Bencher, alg: Algorithm) {
    let data = vec![7u8; 1 << 20];
    b.counter(BytesCount::new(data.len()))
        .bench(|| Digest::of(alg, black_box(&data)));
}
