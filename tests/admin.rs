//! The admin API: token checks, the public port never purges, /metrics, ephemeral admin ports.

mod support;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listen_port_zero_is_accepted() {
    let origin = Origin::fixed(b"{}", &[("cache-control", "max-age=60")]).await;
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[origin]\nurl = \"{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        origin.url()
    );
    let cfg = apicache::Config::parse(&text).expect("two ephemeral ports never collide");
    let p = apicache::start(cfg).await.unwrap();
    let admin = p.admin_addr.expect("admin listener");
    assert_ne!(admin, p.addr);
    let st = stats(&p).await;
    assert_eq!(stat(&st, "origin_requests"), 0);
    p.shutdown().await;
}
