//! The load shapes of the phases: moderate (latency), paced (CPU per event) and saturation (throughput).

use crate::*;

pub(crate) fn moderate_workload(target: std::net::SocketAddr) -> Workload {
    Workload {
        target,
        connections: MODERATE_CONNECTIONS,
        shape: CallShape::with_events(EVENTS_PER_CALL, MODERATE_INTERVAL_MS),
        stop: Stop::CallsPerConnection(MODERATE_CALLS_PER_CONNECTION),
        record: true,
        stagger: Duration::from_millis(MODERATE_INTERVAL_MS),
    }
}

pub(crate) fn saturation_workload(
    target: std::net::SocketAddr,
    settings: &Settings,
    duration: Duration,
) -> Workload {
    Workload {
        target,
        connections: settings.saturation_connections,
        shape: CallShape {
            chunking: settings.saturation_chunking.clone(),
            ..CallShape::with_events(EVENTS_PER_CALL, 0)
        },
        stop: Stop::After(duration),
        record: false,
        stagger: Duration::ZERO,
    }
}

pub(crate) fn paced_workload(target: std::net::SocketAddr) -> Workload {
    Workload {
        target,
        connections: PACED_CONNECTIONS,
        shape: CallShape::with_events(EVENTS_PER_CALL, PACED_INTERVAL_MS),
        stop: Stop::CallsPerConnection(PACED_CALLS_PER_CONNECTION),
        record: true,
        stagger: Duration::from_millis(PACED_INTERVAL_MS),
    }
}

pub(crate) fn check_errors(what: &str, report: &LoadReport) -> Result<(), String> {
    if report.errors > 0 {
        return Err(format!(
            "{what}: {} errors, the first: {}",
            report.errors,
            report.first_error.as_deref().unwrap_or("?")
        ));
    }
    Ok(())
}
