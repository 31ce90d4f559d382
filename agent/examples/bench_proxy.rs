//! Proxy apply cost for docs/BENCHMARKS.md (run by scripts/bench-proxy.sh, which starts Docker
//! with the nginx test image): for 1, 100 and 1,000 hosts rendered by the real nginx backend
//! plugin, the agent's whole apply (stage, `nginx -t`, swap, reload, wait until the new revision
//! answers, verify the changed host through nginx) against a bare `nginx -t && nginx -s reload`
//! of the same files in the same container, both through `docker exec`. Also the render cost.
//! Needs BENCH_PLUGIN_DIR (target/plugins) and DOCKER_HOST.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use infrapilot_agent::docker::DockerNode;
use infrapilot_agent::proxy::{Proxy, ProxyOptions};
use infrapilot_plugin_runtime::contract::{ProxyHost, SecurityHeaders, Upstream, UpstreamScheme};
use infrapilot_plugin_runtime::egress::{EgressGuard, HttpEgress};
use infrapilot_plugin_runtime::runtime::RuntimeConfig;
use infrapilot_plugin_runtime::services::BasicServices;
use infrapilot_plugin_runtime::{Invocation, Manifest, Runtime};
use infrapilot_plugin_types::capabilities::Capabilities;
use infrapilot_proto::v1::{ApplyProxyConfig, ProxyFile, ProxyHostConfig};

const SAMPLES: usize = 7;

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

fn host(i: usize, revision: u64) -> ProxyHost {
    ProxyHost {
        id: format!("00000000-0000-4000-8000-{i:012}"),
        domains: vec![
            format!("app{i}.bench.test"),
            format!("www.app{i}.bench.test"),
        ],
        upstream: Upstream {
            scheme: UpstreamScheme::Http,
            host: "127.0.0.1".into(),
            // The changed host differs in its port from one revision to the next.
            port: if i == 0 {
                10_000 + (revision % 1000) as u16
            } else {
                8080
            },
        },
        websockets: i.is_multiple_of(2),
        locations: vec![],
        tls: None,
        headers: SecurityHeaders {
            hsts_max_age_seconds: None,
            hsts_include_subdomains: false,
            content_security_policy: None,
            frame_options: Some("DENY".into()),
            content_type_nosniff: true,
            referrer_policy: Some("no-referrer".into()),
        },
        rate_limit: None,
        max_body_bytes: Some(10 << 20),
        access: vec![],
        acme_webroot: Some("/etc/infrapilot/acme".into()),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let plugins = PathBuf::from(std::env::var("BENCH_PLUGIN_DIR")?);
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let manifest = Manifest::parse(&std::fs::read(
        plugins.join("infrapilot_proxy_nginx.manifest.json"),
    )?)?;
    let component =
        runtime.compile(&std::fs::read(plugins.join("infrapilot_proxy_nginx.wasm"))?)?;
    let backend = runtime.load::<infrapilot_plugin_runtime::ProxyBackendPlugin>(
        &manifest,
        &component,
        &Capabilities::default(),
    )?;
    let invocation = Invocation {
        settings: serde_json::json!({}),
        secrets: Default::default(),
        services: Arc::new(BasicServices::new(
            HttpEgress::new(
                EgressGuard::parse_allow_list("").map_err(anyhow::Error::msg)?,
                1 << 20,
            )
            .map_err(anyhow::Error::msg)?,
        )),
    };
    // The agent keeps its proxy tree under its state directory (/var/lib/…); BENCH_DIR picks
    // where the bench's goes (default /var/tmp: on this machine /tmp writes small files about
    // ten times slower than the rest of the same disk).
    let dir = PathBuf::from(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()))
        .join(format!("ipbench-proxy-{}", std::process::id()));
    let http_port = std::env::var("BENCH_HTTP_PORT").unwrap_or_else(|_| "18480".into());
    let container = format!("ipbench-nginx-{}", std::process::id());
    let options = ProxyOptions {
        dir: dir.clone(),
        image: "infrapilot-test/nginx:latest".into(),
        container: container.clone(),
        network: container.clone(),
        http_port: http_port.parse()?,
        https_port: http_port.parse::<u16>()? + 1,
        bind_address: "127.0.0.1".into(),
        verify_timeout: Duration::from_secs(30),
        acme: Default::default(),
        status_every: Duration::from_secs(3600),
    };
    let proxy = Arc::new(Proxy::new(DockerNode::new(), options));
    let docker = bollard::Docker::connect_with_local_defaults()?
        .negotiate_version()
        .await?;

    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()?;
    println!(
        "| hosts | render (ms) | agent apply p50 (ms) | bare `nginx -t && nginx -s reload` p50 (ms) | ratio | bare, until the new config answers, p50 (ms) | ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut revision = 0u64;
    for n in [1usize, 100, 1000] {
        let mut render = Vec::new();
        let mut apply = Vec::new();
        let mut bare = Vec::new();
        let mut effect = Vec::new();
        for _ in 0..SAMPLES {
            revision += 1;
            let hosts: Vec<ProxyHost> = (0..n).map(|i| host(i, revision)).collect();
            let started = Instant::now();
            let rendered = backend.render(&invocation, &hosts, revision).await?;
            render.push(started.elapsed().as_secs_f64() * 1000.0);
            let config = ApplyProxyConfig {
                revision,
                shared: rendered
                    .shared
                    .into_iter()
                    .map(|f| ProxyFile {
                        path: f.path,
                        contents: f.contents.into_bytes(),
                    })
                    .collect(),
                hosts: hosts
                    .iter()
                    .zip(rendered.hosts)
                    .enumerate()
                    .map(|(i, (h, files))| ProxyHostConfig {
                        id: h.id.clone(),
                        domains: h.domains.clone(),
                        files: files
                            .unwrap()
                            .into_iter()
                            .map(|f| ProxyFile {
                                path: f.path,
                                contents: f.contents.into_bytes(),
                            })
                            .collect(),
                        containers: vec![],
                        changed: i == 0,
                        tls: None,
                    })
                    .collect(),
            };
            let started = Instant::now();
            let report = proxy
                .apply(&config)
                .await
                .map_err(|e| anyhow::anyhow!(e.message))?;
            apply.push(started.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(report.state == "applied", "apply: {report:?}");
            // The same files, the bare way: a new revision number in nginx.conf (so the switch
            // can be seen), `nginx -t`, `nginx -s reload`; then until the new config answers.
            let conf = dir.join("current/nginx.conf");
            let text = std::fs::read_to_string(&conf)?;
            let marker = format!("{revision}b");
            std::fs::write(
                &conf,
                text.replace(
                    &format!("return 200 \"{revision}\\n\""),
                    &format!("return 200 \"{marker}\\n\""),
                ),
            )?;
            let started = Instant::now();
            for cmd in [
                vec![
                    "nginx",
                    "-t",
                    "-q",
                    "-c",
                    "/etc/infrapilot/current/nginx.conf",
                ],
                vec![
                    "nginx",
                    "-c",
                    "/etc/infrapilot/current/nginx.conf",
                    "-s",
                    "reload",
                ],
            ] {
                let exec = docker
                    .create_exec(
                        &container,
                        bollard::exec::CreateExecOptions {
                            cmd: Some(cmd),
                            attach_stdout: Some(true),
                            attach_stderr: Some(true),
                            ..Default::default()
                        },
                    )
                    .await?;
                if let bollard::exec::StartExecResults::Attached { mut output, .. } =
                    docker.start_exec(&exec.id, None).await?
                {
                    use futures_util::StreamExt;
                    while output.next().await.is_some() {}
                }
                anyhow::ensure!(docker.inspect_exec(&exec.id).await?.exit_code == Some(0));
            }
            bare.push(started.elapsed().as_secs_f64() * 1000.0);
            loop {
                let answer = client
                    .get(format!(
                        "http://127.0.0.1:{http_port}/.well-known/infrapilot/revision"
                    ))
                    .header("host", "bench-verify.invalid")
                    .send()
                    .await;
                if let Ok(r) = answer
                    && r.text().await.unwrap_or_default().trim() == marker
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            effect.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        let (a, b, e) = (median(&mut apply), median(&mut bare), median(&mut effect));
        println!(
            "| {n} | {:.1} | {a:.0} | {b:.0} | {:.2}× | {e:.0} | {:.2}× |",
            median(&mut render),
            a / b,
            a / e
        );
    }
    let _ = docker
        .remove_container(
            &container,
            Some(bollard::query_parameters::RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await;
    let _ = docker.remove_network(&container).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
