//! `serve`: the Sentiment pages until SIGTERM/SIGINT.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;

use crate::config::Config;

/// How long requests in flight may finish after a stop signal.
const GRACE: Duration = Duration::from_secs(10);

pub fn serve(config: &Config) -> anyhow::Result<()> {
    // Refused before anything connects: a remote bind without TLS or token never listens.
    let settings = crate::view::ServeSettings::from_config(&config.serve)?;
    super::service::runtime()?.block_on(async {
        let sink = crate::sink::ClickHouseSink::connect(config.clickhouse.sink_config()).await?;
        let scheme = if settings.uses_tls() { "https" } else { "http" };
        let server = crate::view::serve(settings, sink).await.context("binding serve.addr")?;
        // The one line on stdout: the address to open (tests and `make run` read it).
        let mut out = std::io::stdout().lock();
        writeln!(out, "Sentiment pages: {scheme}://{}/", server.local_addr())?;
        out.flush()?;
        drop(out);
        crate::worker::wait_for_signal().await;
        server.shutdown(GRACE).await;
        anyhow::Ok(())
    })
}
