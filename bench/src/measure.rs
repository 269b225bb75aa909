//! One round of one variant through every phase, and the paired latency runs.

use crate::*;

pub(crate) fn run_variant(
    rt: &tokio::runtime::Runtime,
    upstream: &MockUpstream,
    variant: Variant,
    round: usize,
    settings: &Settings,
    tck: f64,
) -> Result<RoundRun, String> {
    let mut figures = Figures::new();
    let collector = Collector::start().map_err(|e| format!("collector: {e}"))?;
    let envoy = match variant.filter() {
        None => None,
        Some(filter) => Some(Envoy::start(
            &EnvoyOptions::new(upstream.addr, collector.addr)
                .with_filter(filter)
                .with_plugin_config(&settings.streamtap_config),
        )?),
    };
    let target = envoy.as_ref().map_or(upstream.addr, |e| e.listener);
    let pid = envoy.as_ref().and_then(Envoy::pid);
    let what = |phase: &str| format!("{} round {round}, {phase}", variant.label());
    let put = |figures: &mut Figures, k: &str, v: Option<f64>| {
        if let Some(v) = v.filter(|x| x.is_finite()) {
            figures.insert(k.to_string(), v);
        }
    };
    let pf = |v: &[u64], q: f64| percentile(v, q).map(|x| x as f64);

    // Warm-up: connections, Envoy's pools, the Wasm VM's compiled tiers.
    let warm = rt.block_on(loadgen::run(&saturation_workload(target, settings, WARMUP)));
    check_errors(&what("warm-up"), &warm)?;
    thread::sleep(Duration::from_millis(200));

    // 1. Moderate load: latency.
    let calls_before = collector.calls().len();
    let start = CpuSnapshot::take(pid);
    let moderate = rt.block_on(loadgen::run(&moderate_workload(target)));
    let end = CpuSnapshot::take(pid);
    check_errors(&what("moderate load"), &moderate)?;
    put_cpu_figures(&mut figures, "moderate", &start, &end, moderate.events, tck);
    let mut ttft = moderate.ttft_us.clone();
    ttft.sort_unstable();
    let mut delays = moderate.delays_us.clone();
    delays.sort_unstable();
    put(&mut figures, "moderate_calls", Some(moderate.calls as f64));
    put(
        &mut figures,
        "moderate_events",
        Some(moderate.events as f64),
    );
    put(&mut figures, "ttft_p50_us", pf(&ttft, 0.50));
    put(&mut figures, "ttft_p99_us", pf(&ttft, 0.99));
    put(&mut figures, "delay_p50_us", pf(&delays, 0.50));
    put(&mut figures, "delay_p90_us", pf(&delays, 0.90));
    put(&mut figures, "delay_p99_us", pf(&delays, 0.99));
    put(
        &mut figures,
        "delay_max_us",
        delays.last().map(|&x| x as f64),
    );
    thread::sleep(EXPORT_SETTLE);
    let exported = collector.calls();
    let (chunks, events) = chunk_counts(
        exported.get(calls_before..).unwrap_or_default(),
        EVENTS_PER_CALL,
    );
    put(&mut figures, "moderate_envoy_chunks_per_call", chunks);
    put(
        &mut figures,
        "moderate_envoy_events_per_chunk",
        opt_div(events, chunks),
    );

    // Timeline of one slow call (first round only).
    let timeline_us = if round == 0 && variant.in_timeline() {
        let shape = CallShape {
            tokens: TIMELINE_TOKENS,
            ..CallShape::with_events(0, TIMELINE_INTERVAL_MS)
        };
        Some(rt.block_on(loadgen::timeline(target, &shape))?)
    } else {
        None
    };

    // 2. Paced high load: every event its own chunk; CPU per event.
    if pid.is_some() {
        let calls_before = collector.calls().len();
        let start = CpuSnapshot::take(pid);
        let paced = rt.block_on(loadgen::run(&paced_workload(target)));
        let end = CpuSnapshot::take(pid);
        check_errors(&what("paced load"), &paced)?;
        put(&mut figures, "paced_events", Some(paced.events as f64));
        put(
            &mut figures,
            "paced_events_per_s",
            Some(paced.events_per_second()),
        );
        let mut d = paced.delays_us;
        d.sort_unstable();
        put(&mut figures, "paced_delay_p50_us", pf(&d, 0.50));
        put(&mut figures, "paced_delay_p99_us", pf(&d, 0.99));
        put_cpu_figures(&mut figures, "paced", &start, &end, paced.events, tck);
        thread::sleep(EXPORT_SETTLE);
        let exported = collector.calls();
        let (chunks, events) = chunk_counts(
            exported.get(calls_before..).unwrap_or_default(),
            EVENTS_PER_CALL,
        );
        put(
            &mut figures,
            "paced_envoy_events_per_chunk",
            opt_div(events, chunks),
        );
    }

    // 3. Saturation: throughput.
    let calls_before = collector.calls().len();
    let stats_before = envoy.as_ref().and_then(|e| e.stats().ok());
    let start = CpuSnapshot::take(pid);
    let sat = rt.block_on(loadgen::run(&saturation_workload(
        target,
        settings,
        settings.saturation,
    )));
    let end = CpuSnapshot::take(pid);
    check_errors(&what("saturation"), &sat)?;
    put(&mut figures, "sat_seconds", Some(sat.elapsed.as_secs_f64()));
    put(&mut figures, "sat_calls", Some(sat.calls as f64));
    put(&mut figures, "sat_events", Some(sat.events as f64));
    put(
        &mut figures,
        "sat_events_per_s",
        Some(sat.events_per_second()),
    );
    put(
        &mut figures,
        "sat_calls_per_s",
        Some(sat.calls_per_second()),
    );
    put(
        &mut figures,
        "sat_client_events_per_read",
        opt_div(Some(sat.events as f64), Some(sat.reads as f64)),
    );
    put_cpu_figures(&mut figures, "sat", &start, &end, sat.events, tck);
    if let Some(pid) = pid {
        put(
            &mut figures,
            "envoy_rss_mb",
            procfs::process_rss(pid).map(|b| b as f64 / 1048576.0),
        );
    }
    thread::sleep(EXPORT_SETTLE);
    let all = collector.calls();
    let exported = all.get(calls_before..).unwrap_or_default();
    let (chunks, events) = chunk_counts(exported, EVENTS_PER_CALL);
    put(&mut figures, "sat_envoy_chunks_per_call", chunks);
    put(
        &mut figures,
        "sat_envoy_events_per_chunk",
        opt_div(events, chunks),
    );
    put(
        &mut figures,
        "sat_summaries_received",
        Some(exported.len() as f64),
    );
    if let (Some(envoy), Some(before)) = (envoy.as_ref(), stats_before) {
        if let Ok(after) = envoy.stats() {
            let delta = |k: &str| {
                after
                    .get(k)
                    .map(|a| a.saturating_sub(*before.get(k).unwrap_or(&0)) as f64)
            };
            put(
                &mut figures,
                "sat_envoy_downstream_rq",
                delta("http.ingress_http.downstream_rq_completed"),
            );
            if variant == Variant::Streamtap {
                for (k, stat) in [
                    ("sat_streamtap_stream_events", "stream_events"),
                    ("sat_streamtap_calls", "calls"),
                    ("sat_streamtap_summaries_exported", "summaries_exported"),
                    ("sat_streamtap_summaries_dropped", "summaries_dropped"),
                ] {
                    put(
                        &mut figures,
                        k,
                        delta(&format!("wasmcustom.streamtap.{stat}")),
                    );
                }
                put(
                    &mut figures,
                    "streamtap_parse_errors_total",
                    after
                        .get("wasmcustom.streamtap.parse_errors")
                        .map(|&x| x as f64),
                );
            }
        }
    }
    drop(envoy);
    drop(collector);
    Ok(RoundRun {
        figures,
        delays_us: moderate.delays_us,
        timeline_us,
    })
}

/// Latency side by side: plain Envoy and Envoy + streamtap started together,
/// the moderate workload run against both at the same time (the second half an
/// interval out of phase), so that both see the same machine noise. Per
/// repetition: delay p50/p99 and TTFT p50 of each, and the differences.
pub(crate) fn paired_latency(
    rt: &tokio::runtime::Runtime,
    upstream: &MockUpstream,
    reps: usize,
    streamtap_config: &str,
) -> Result<Value, String> {
    let mut out = Vec::new();
    let mut pooled: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for rep in 0..reps {
        let collector = Collector::start().map_err(|e| format!("collector: {e}"))?;
        let start = |f: FilterVariant| {
            Envoy::start(
                &EnvoyOptions::new(upstream.addr, collector.addr)
                    .with_filter(f)
                    .with_plugin_config(streamtap_config),
            )
        };
        let plain = start(FilterVariant::NoFilter)?;
        let tap = start(FilterVariant::Streamtap)?;
        let pids = [plain.pid(), tap.pid()];
        for target in [plain.listener, tap.listener] {
            let mut warm = moderate_workload(target);
            warm.stop = Stop::CallsPerConnection(1);
            warm.shape.interval_ms = 1;
            check_errors("paired warm-up", &rt.block_on(loadgen::run(&warm)))?;
        }
        let cpu0 = procfs::system_cpu().unwrap_or_default();
        let busy0: Vec<u64> = pids
            .iter()
            .map(|p| p.and_then(procfs::process_cpu).unwrap_or_default().total())
            .collect();
        let bench0 = bench_cpu().total.total();
        let (wa, wb) = (
            moderate_workload(plain.listener),
            moderate_workload(tap.listener),
        );
        let (a, b) = rt.block_on(async {
            let half = Duration::from_millis(MODERATE_INTERVAL_MS) / 2;
            tokio::join!(loadgen::run(&wa), async {
                tokio::time::sleep(half).await;
                loadgen::run(&wb).await
            })
        });
        let cpu1 = procfs::system_cpu().unwrap_or_default();
        let busy1: u64 = pids
            .iter()
            .map(|p| p.and_then(procfs::process_cpu).unwrap_or_default().total())
            .sum();
        let sys = cpu1.since(&cpu0);
        let other_ticks = sys.busy() as f64
            - sys.softirq as f64
            - (busy1 as f64 - busy0.iter().sum::<u64>() as f64)
            - (bench_cpu().total.total() as f64 - bench0 as f64);
        check_errors("paired latency, plain Envoy", &a)?;
        check_errors("paired latency, streamtap", &b)?;
        let stats = |r: &LoadReport| {
            let mut d = r.delays_us.clone();
            d.sort_unstable();
            let mut t = r.ttft_us.clone();
            t.sort_unstable();
            (
                percentile(&d, 0.50).unwrap_or(0) as f64,
                percentile(&d, 0.99).unwrap_or(0) as f64,
                percentile(&t, 0.50).unwrap_or(0) as f64,
            )
        };
        let (p50a, p99a, ta) = stats(&a);
        let (p50b, p99b, tb) = stats(&b);
        println!(
            "  rep {rep}: plain Envoy delay p50/p99 {p50a:.0}/{p99a:.0} µs, streamtap {p50b:.0}/{p99b:.0} µs: \
             added {:+.0}/{:+.0} µs",
            p50b - p50a,
            p99b - p99a
        );
        pooled.entry("plain_envoy").or_default().extend(a.delays_us);
        pooled.entry("streamtap").or_default().extend(b.delays_us);
        out.push(json!({
            "plain_envoy": {"delay_p50_us": p50a, "delay_p99_us": p99a, "ttft_p50_us": ta},
            "streamtap": {"delay_p50_us": p50b, "delay_p99_us": p99b, "ttft_p50_us": tb},
            "added_p50_us": p50b - p50a,
            "added_p99_us": p99b - p99a,
            "added_ttft_p50_us": tb - ta,
            "other_cores": (other_ticks / procfs::clock_ticks_per_second() as f64
                / a.elapsed.as_secs_f64().max(1e-9)).max(0.0),
        }));
    }
    let col = |k: &str| -> Vec<f64> { out.iter().filter_map(|r| r[k].as_f64()).collect() };
    let mut pooled_p = Map::new();
    for (k, mut v) in pooled {
        v.sort_unstable();
        pooled_p.insert(
            k.to_string(),
            json!({
                "samples": v.len(),
                "delay_p50_us": percentile(&v, 0.50),
                "delay_p99_us": percentile(&v, 0.99),
                "delay_p999_us": percentile(&v, 0.999),
            }),
        );
    }
    let pooled_added = |k: &str| -> Option<f64> {
        Some(pooled_p.get("streamtap")?[k].as_f64()? - pooled_p.get("plain_envoy")?[k].as_f64()?)
    };
    let pooled_added_p50 = pooled_added("delay_p50_us");
    let pooled_added_p99 = pooled_added("delay_p99_us");
    Ok(json!({
        "method": "plain Envoy and Envoy + streamtap running at the same time, the moderate workload against both at once",
        "pooled_added_p50_us": pooled_added_p50,
        "pooled_added_p99_us": pooled_added_p99,
        "repetitions": out,
        "added_p50_us": spread_json(&col("added_p50_us")),
        "added_p99_us": spread_json(&col("added_p99_us")),
        "added_ttft_p50_us": spread_json(&col("added_ttft_p50_us")),
        "pooled": pooled_p,
    }))
}
