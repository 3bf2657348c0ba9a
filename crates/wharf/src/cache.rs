//! `wharf mirror config` and `wharf cache ...`: the pull-through cache's commands, and building
//! the cache from the `[cache]` configuration for `wharf serve`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use crate::config::Config;
use crate::door::{Remote, urlencode};
use crate::versions::human_size;

/// Builds the cache when upstreams are configured (reading password files), committing blobs
/// under `locks` (the registry's).
pub fn build(
    cfg: &cache::CacheConfig,
    blobs: Arc<dyn store::BlobStore>,
    meta: Arc<dyn store::MetaStore>,
    locks: Arc<store::DigestLocks>,
) -> anyhow::Result<Option<cache::Cache>> {
    if cfg.upstreams.is_empty() {
        return Ok(None);
    }
    let mut cfg = cfg.clone();
    for u in &mut cfg.upstreams {
        if let Some(path) = u.password_file.take() {
            let p = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "reading the password of upstream {} from {}",
                    u.host,
                    path.display()
                )
            })?;
            u.password = Some(p.trim_end_matches(['\r', '\n']).to_owned());
        }
    }
    let c = cache::Cache::new(cfg, blobs, meta, locks)
        .map_err(|e| anyhow::anyhow!("pull-through cache configuration: {e}"))?;
    for u in &c.config().upstreams {
        tracing::info!(
            upstream = %u.host, endpoint = %u.endpoint(), local = %u.prefix(),
            enabled = u.enabled, tag_ttl_seconds = u.tag_ttl_seconds,
            "pull-through cache upstream"
        );
    }
    Ok(Some(c))
}

/// `wharf mirror ...`.
#[derive(clap::Subcommand, Debug)]
pub enum MirrorCmd {
    /// Print (or write) the containerd hosts.toml files and the CRI-O registries.conf snippet
    /// that send a node's pulls of each configured upstream through Wharf.
    Config(MirrorConfigArgs),
}

/// Flags of `wharf mirror config`.
#[derive(clap::Args, Debug)]
pub struct MirrorConfigArgs {
    /// Wharf's URL as the nodes reach it, e.g. https://wharf.example.com:5000.
    #[arg(long)]
    pub url: String,
    /// The Wharf configuration file whose `[[cache.upstream]]` entries to use.
    #[arg(long, env = "WHARF_CONFIG")]
    pub config: PathBuf,
    /// Which runtime: containerd, crio, or all.
    #[arg(long, default_value = "all")]
    pub runtime: Runtime,
    /// CA certificate path on the nodes that signs Wharf's certificate.
    #[arg(long)]
    pub ca_file: Option<String>,
    /// Do not verify Wharf's certificate (test clusters only).
    #[arg(long)]
    pub skip_verify: bool,
    /// Write containerd's files as DIR/<host>/hosts.toml (DIR is usually
    /// /etc/containerd/certs.d) and CRI-O's as DIR/50-wharf.conf instead of printing.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Container runtimes `wharf mirror config` writes for.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// containerd's hosts.toml (mirror mode).
    Containerd,
    /// CRI-O's registries.conf (path mode).
    Crio,
    /// Both.
    All,
}

/// Runs `wharf mirror`.
pub fn mirror(cmd: MirrorCmd) -> anyhow::Result<()> {
    let MirrorCmd::Config(a) = cmd;
    if !(a.url.starts_with("https://") || a.url.starts_with("http://")) {
        anyhow::bail!("--url must start with https:// or http://");
    }
    let cfg = Config::load(&a.config)?;
    cache::validate(&cfg.cache).map_err(|e| anyhow::anyhow!("{e}"))?;
    let upstreams: Vec<_> = cfg.cache.upstreams.iter().filter(|u| u.enabled).collect();
    if upstreams.is_empty() {
        anyhow::bail!(
            "{} configures no enabled [[cache.upstream]]: nothing to mirror",
            a.config.display()
        );
    }
    let target = cache::nodeconfig::NodeTarget {
        url: a.url.clone(),
        ca_file: a.ca_file.clone(),
        skip_verify: a.skip_verify,
    };
    let containerd = matches!(a.runtime, Runtime::Containerd | Runtime::All);
    let crio = matches!(a.runtime, Runtime::Crio | Runtime::All);
    if containerd {
        for u in &upstreams {
            let text = cache::nodeconfig::containerd_hosts_toml(u, &target);
            match &a.out_dir {
                Some(dir) => {
                    let d = dir.join(&u.host);
                    std::fs::create_dir_all(&d)
                        .with_context(|| format!("creating {}", d.display()))?;
                    let f = d.join("hosts.toml");
                    std::fs::write(&f, text).with_context(|| format!("writing {}", f.display()))?;
                    eprintln!("wrote {}", f.display());
                }
                None => println!("{text}"),
            }
        }
    }
    if crio {
        let text = cache::nodeconfig::crio_registries_conf(&cfg.cache, &target);
        match &a.out_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let f = dir.join("50-wharf.conf");
                std::fs::write(&f, text).with_context(|| format!("writing {}", f.display()))?;
                eprintln!("wrote {}", f.display());
            }
            None => println!("{text}"),
        }
    }
    Ok(())
}

/// Where the server is, for `wharf cache ...`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// The running server (the cache lives in it).
    #[arg(long, env = "WHARF_SERVER", default_value = "http://127.0.0.1:5000")]
    pub server: String,
    /// Administrator login; the password comes from standard input with
    /// --as-password-stdin, else from WHARF_PASSWORD, else it is asked on the terminal.
    #[arg(long = "as", env = "WHARF_USER")]
    pub login_as: Option<String>,
    /// Read the password of --as from standard input's first line (not from WHARF_PASSWORD or
    /// the terminal); an empty line is an error.
    #[arg(long)]
    pub as_password_stdin: bool,
}

/// `wharf cache ...`.
#[derive(clap::Subcommand, Debug)]
pub enum CacheCmd {
    /// List cached images, least recently pulled first.
    Ls {
        #[command(flatten)]
        output: crate::output::OutputArg,
        /// Print JSON (the same as `--output json`).
        #[arg(long, hide = true)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Fetch images into the cache now (e.g. docker.io/library/alpine:3.20).
    Warm {
        /// Images, as clients name them (docker.io/library/alpine:3.20, ghcr.io/org/app@sha256:...).
        #[arg(required = true)]
        images: Vec<String>,
        /// Only this platform of multi-platform images (os/arch[/variant]); all by default.
        #[arg(long)]
        platform: Option<String>,
        /// No progress bar (bytes of the image done, as the server reports them; it shows only
        /// on a terminal anyway).
        #[arg(long, short = 'q')]
        quiet: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Keep matching images whatever the size limit (docker.io/library/alpine:3.*, ghcr.io/org/*).
    Pin {
        /// Image pattern.
        image: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Remove a pin made with `wharf cache pin`.
    Unpin {
        /// Image pattern, as pinned.
        image: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Enforce the size limit now (least recently pulled images first).
    Evict {
        /// Report only.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        output: crate::output::OutputArg,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// The longest line of a streamed warm-up answer the CLI reads (a result line of one image is
/// a few hundred bytes).
const MAX_LINE: usize = 1 << 20;

/// `POST /api/v1/cache/warm` with `Accept: application/x-ndjson`: draws the bytes done of
/// `image` as the server reports them, and returns the result line's array (the plain answer's).
async fn warm_with_bar(
    remote: &Remote,
    image: &str,
    body: &api::cache::WarmRequest,
) -> anyhow::Result<Vec<serde_json::Value>> {
    use futures_util::StreamExt;
    const PATH: &str = "/api/v1/cache/warm";
    let resp = remote
        .open(reqwest::Method::POST, PATH, Some(body), Some(api::NDJSON))
        .await?;
    let bar = crate::output::bytes_bar(false, 0, &format!("warming {image}"));
    let mut stream = resp.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let result = 'read: loop {
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let v: serde_json::Value = serde_json::from_slice(&line)
                .with_context(|| format!("POST {PATH}: unexpected line from the server"))?;
            if let Some(r) = v.get("result") {
                break 'read serde_json::from_value::<Vec<serde_json::Value>>(r.clone())
                    .with_context(|| format!("POST {PATH}: unexpected result from the server"))?;
            }
            if let Some(e) = v.get("errors") {
                bar.finish_and_clear();
                anyhow::bail!(
                    "POST {PATH}: {}",
                    e[0]["message"].as_str().unwrap_or("the warm-up failed")
                );
            }
            if let (Some(done), Some(total)) = (v["done"].as_u64(), v["total"].as_u64()) {
                bar.set_length(total);
                bar.set_position(done);
            }
        }
        match stream.next().await {
            Some(chunk) => {
                buf.extend_from_slice(&chunk.with_context(|| format!("POST {PATH}"))?);
                anyhow::ensure!(
                    buf.len() <= MAX_LINE,
                    "POST {PATH}: a line of the answer is longer than {MAX_LINE} bytes"
                );
            }
            None => {
                bar.finish_and_clear();
                anyhow::bail!("POST {PATH}: the server ended the answer before the result");
            }
        }
    };
    bar.finish_and_clear();
    Ok(result)
}

fn remote(s: &ServerArgs) -> anyhow::Result<Remote> {
    let d = crate::admin::DataDir {
        data_dir: PathBuf::new(),
        server: Some(s.server.clone()),
        login_as: s.login_as.clone(),
        as_password_stdin: s.as_password_stdin,
        create: false,
    };
    Ok(Remote::of(&d)?.expect("server is set"))
}

/// Runs `wharf cache`.
pub fn cache(cmd: CacheCmd) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        use reqwest::Method;
        match cmd {
            CacheCmd::Ls {
                output,
                json,
                server,
            } => {
                let v: api::cache::CacheListing<serde_json::Value> =
                    remote(&server)?.get("/api/v1/cache").await?;
                if json || output.output == crate::output::Output::Json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                    return Ok(());
                }
                if v.images.is_empty() {
                    eprintln!("no cached images");
                    return Ok(());
                }
                println!(
                    "{:<48} {:<24} {:>10} {:<12} {:<20} PINNED",
                    "REPOSITORY", "TAGS", "SIZE", "DIGEST", "LAST PULL"
                );
                for i in &v.images {
                    let tags: Vec<&str> = i["tags"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t.as_str())
                        .collect();
                    let digest = i["digest"].as_str().unwrap_or("");
                    let short = digest.get(7..19).unwrap_or(digest);
                    let last = i["last_pull"]
                        .as_u64()
                        .map(crate::versions::utc)
                        .unwrap_or_else(|| "never".into());
                    println!(
                        "{:<48} {:<24} {:>10} {:<12} {:<20} {}",
                        i["repo"].as_str().unwrap_or(""),
                        if tags.is_empty() {
                            "<none>".to_owned()
                        } else {
                            tags.join(",")
                        },
                        human_size(i["bytes"].as_u64().unwrap_or(0)),
                        short,
                        last,
                        if i["pinned"].as_bool() == Some(true) {
                            "yes"
                        } else {
                            ""
                        }
                    );
                }
                let max = v.max_bytes;
                println!(
                    "total {} (limit: {})",
                    human_size(v.image_bytes),
                    if max == 0 {
                        "none".to_owned()
                    } else {
                        human_size(max)
                    }
                );
            }
            CacheCmd::Warm {
                images,
                platform,
                quiet,
                server,
            } => {
                let remote = remote(&server)?;
                let mut failed = 0;
                // One image per request, so each shows its own progress and result as it ends.
                for image in images {
                    let body = api::cache::WarmRequest {
                        images: vec![image.clone()],
                        platform: platform.clone(),
                    };
                    // A progress bar from the server's streamed answer on a terminal; the plain
                    // answer otherwise (scripts, --quiet).
                    let r = if crate::output::shows_progress(quiet) {
                        warm_with_bar(&remote, &image, &body).await
                    } else {
                        remote
                            .with_body(Method::POST, "/api/v1/cache/warm", &body)
                            .await
                    };
                    for i in &r? {
                        if let Some(e) = i["error"].as_str() {
                            eprintln!("{}: {e}", i["image"].as_str().unwrap_or(""));
                            failed += 1;
                            continue;
                        }
                        println!(
                            "{} -> {} ({} manifests, {} blobs, {} fetched)",
                            i["image"].as_str().unwrap_or(""),
                            i["digest"].as_str().unwrap_or(""),
                            i["manifests"],
                            i["blobs"],
                            human_size(i["bytes_fetched"].as_u64().unwrap_or(0))
                        );
                    }
                }
                if failed > 0 {
                    anyhow::bail!("{failed} image(s) could not be warmed");
                }
            }
            CacheCmd::Pin { image, server } => {
                let pin = api::cache::PinRequest {
                    image: image.clone(),
                };
                let _: api::cache::PinRequest = remote(&server)?
                    .with_body(Method::POST, "/api/v1/cache/pins", &pin)
                    .await?;
                println!("pinned {image}");
            }
            CacheCmd::Unpin { image, server } => {
                remote(&server)?
                    .bare::<()>(
                        Method::DELETE,
                        &format!("/api/v1/cache/pins?image={}", urlencode(&image)),
                    )
                    .await?;
                println!("unpinned {image}");
            }
            CacheCmd::Evict {
                dry_run,
                output,
                server,
            } => {
                let r: serde_json::Value = remote(&server)?
                    .with_body(
                        Method::POST,
                        "/api/v1/cache/evict",
                        &api::cache::EvictRequest { dry_run },
                    )
                    .await?;
                crate::output::record(&r, output.output, |r| {
                    let evicted: Vec<&str> = r["evicted"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|e| e.as_str())
                        .collect();
                    for e in &evicted {
                        println!("{}{e}", if dry_run { "would evict " } else { "evicted " });
                    }
                    let max = r["max_bytes"].as_u64().unwrap_or(0);
                    eprintln!(
                        "{} {} image(s); {} held{}; {} released (freed by the next gc)",
                        if dry_run { "would evict" } else { "evicted" },
                        evicted.len(),
                        human_size(r["cached_bytes"].as_u64().unwrap_or(0)),
                        if max == 0 {
                            " (no size limit)".to_owned()
                        } else {
                            format!(" of {}", human_size(max))
                        },
                        human_size(r["bytes_released"].as_u64().unwrap_or(0))
                    );
                    Ok(())
                })?;
            }
        }
        Ok(())
    })
}
