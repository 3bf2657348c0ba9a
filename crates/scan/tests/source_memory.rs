//! Layers stream: reading a 96 MiB layer (incompressible) from an OCI layout, a
//! docker-archive and a registry raises this process's peak resident memory by far less than
//! the layer. One test in its own binary, so nothing else moves the high-water mark.
//!
//! Needs umoci, skopeo and docker-registry (scripts/install-test-deps.sh).

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use scan::source::{LocalImage, OpenOptions, RegistryImage, SourceRef};

const LAYER_MIB: u64 = 96;
/// Most the peak may grow while one layer streams.
const BUDGET_MIB: u64 = 24;

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Peak resident set size so far (VmHWM), in KiB.
fn peak_kib() -> u64 {
    let s = fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Streams every layer of `img` and returns how much the peak grew (KiB), and the bytes.
fn stream_local(img: &LocalImage) -> (u64, u64) {
    let before = peak_kib();
    let mut total = 0;
    for l in &img.meta().layers {
        let mut r = img.open_blob(&l.descriptor()).unwrap();
        total += std::io::copy(&mut r, &mut std::io::sink()).unwrap();
    }
    (peak_kib().saturating_sub(before), total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_a_large_layer_keeps_memory_flat() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let lay = root.join("layout");
    let img = format!("{}:big", lay.display());
    run(Command::new("umoci").args(["init", "--layout"]).arg(&lay));
    run(Command::new("umoci").args(["new", "--image", &img]));
    let b = root.join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image", &img])
        .arg(&b));
    // Incompressible content (xorshift), written in 1 MiB pieces.
    let mut f = fs::File::create(b.join("rootfs/blob.bin")).unwrap();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..LAYER_MIB {
        for c in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&buf).unwrap();
    }
    drop(f);
    drop(buf);
    run(Command::new("umoci")
        .args(["repack", "--image", &img])
        .arg(&b));
    run(Command::new("umoci").args([
        "config",
        "--image",
        &img,
        "--os",
        "linux",
        "--architecture",
        "amd64",
    ]));
    fs::remove_dir_all(&b).unwrap();

    let open = |s: String| {
        LocalImage::open(&SourceRef::parse(&s).unwrap(), &OpenOptions::default()).unwrap()
    };
    let oci = open(format!("oci:{img}"));
    let (grew, n) = stream_local(&oci);
    println!("oci layout: {n} bytes streamed, peak grew {grew} KiB");
    assert!(n > LAYER_MIB << 20);
    assert!(grew < BUDGET_MIB << 10, "oci layout: peak grew {grew} KiB");

    let da = root.join("big.docker.tar");
    run(Command::new("skopeo")
        .args(["--insecure-policy", "copy", &format!("oci:{img}")])
        .arg(format!("docker-archive:{}", da.display())));
    let dock = open(format!("docker-archive:{}", da.display()));
    let (grew, n) = stream_local(&dock);
    println!("docker-archive: {n} bytes streamed, peak grew {grew} KiB");
    assert!(
        grew < BUDGET_MIB << 10,
        "docker-archive: peak grew {grew} KiB"
    );

    // A registry: CNCF Distribution on a loopback port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = root.join("config.yml");
    fs::write(&cfg, format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n  secret: scan-test\n",
        root.join("storage").display()
    )).unwrap();
    let mut child = Command::new("docker-registry")
        .arg("serve")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry is not installed");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "docker-registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    run(Command::new("skopeo").args([
        "--insecure-policy",
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{img}"),
        &format!("docker://{addr}/scan/big:1"),
    ]));
    let SourceRef::Registry(r) = SourceRef::parse(&format!("{addr}/scan/big:1")).unwrap() else {
        panic!()
    };
    let client = client::Client::new(client::ClientConfig::default()).unwrap();
    let reg = RegistryImage::open(client, &r, &OpenOptions::default())
        .await
        .unwrap();
    let before = peak_kib();
    let mut n = 0u64;
    for l in &reg.meta().layers {
        let mut r = reg.open_blob(&l.descriptor()).unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let k = tokio::io::AsyncReadExt::read(&mut r, &mut buf)
                .await
                .unwrap();
            if k == 0 {
                break;
            }
            n += k as u64;
        }
    }
    let grew = peak_kib().saturating_sub(before);
    println!("registry: {n} bytes streamed, peak grew {grew} KiB");
    let _ = child.kill();
    let _ = child.wait();
    assert!(n > LAYER_MIB << 20);
    assert!(grew < BUDGET_MIB << 10, "registry: peak grew {grew} KiB");
}
