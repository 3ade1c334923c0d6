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
    // On-demand classification loads the plugin (and its snapshot) like `analyze`.
    let classifier = match config.serve.classify {
        true => {
            let (engine, slot) = super::local::slot(config)?;
            let s = &config.serve;
            let cache = config.result_cache()?;
            Some(crate::view::Classifier::new(engine, slot, cache, config.pipeline.options(), s.classify_per_minute, s.classify_per_hour))
        }
        false => None,
    };
    super::service::runtime()?.block_on(async {
        let sink = crate::sink::ClickHouseSink::connect(config.clickhouse.sink_config()).await?;
        let scheme = if settings.uses_tls() { "https" } else { "http" };
        let server = crate::view::serve(settings, sink, classifier).await.context("binding serve.addr")?;
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
