//! Unit tests of the runner's pure parts.

use super::*;

#[test]
fn chunk_counts_average_completed_records() {
    let records = vec![
        json!({"chunks": 4, "events": 50, "outcome": "completed"}),
        json!({"chunks": 2, "events": 50, "outcome": "completed"}),
        json!({"chunks": 1, "events": 7, "outcome": "client_cancelled"}),
    ];
    assert_eq!(chunk_counts(&records, 50), (Some(3.0), Some(50.0)));
    // The empty filter's records (chunks only) are not used.
    let empty = vec![json!({"chunks": 10}), json!({"chunks": 20})];
    assert_eq!(chunk_counts(&empty, 50), (None, None));
    assert_eq!(chunk_counts(&[], 50), (None, None));
}

#[test]
fn cdf_points_end_at_one_and_are_bounded() {
    let v: Vec<u64> = (1..=10_000).collect();
    let pts = cdf_points(&v, 100);
    assert!(pts.len() <= 102);
    assert_eq!(pts.last(), Some(&(10_000.0, 1.0)));
    assert!(pts.windows(2).all(|w| w[0].1 <= w[1].1 && w[0].0 <= w[1].0));
    assert!(cdf_points(&[], 10).is_empty());
    assert_eq!(cdf_points(&[0], 10), vec![(1.0, 1.0), (1.0, 1.0)]);
}

#[test]
fn memory_allocated_is_read_from_the_admin_json() {
    let body = r#"{"allocated": "12345678", "heap_size": "20000000", "pageheap_unmapped": "0"}"#;
    assert_eq!(parse_memory_allocated(body), Some(12_345_678));
    assert_eq!(parse_memory_allocated(r#"{"allocated": 42}"#), Some(42));
    assert_eq!(parse_memory_allocated("not json"), None);
}

#[test]
fn summarize_takes_median_and_spread_per_figure() {
    let mut a = Figures::new();
    a.insert("x".into(), 1.0);
    let mut b = Figures::new();
    b.insert("x".into(), 3.0);
    b.insert("y".into(), 5.0);
    let s = summarize(&[a, b]);
    assert_eq!(s["x"]["median"], 2.0);
    assert_eq!(s["x"]["min"], 1.0);
    assert_eq!(s["y"]["max"], 5.0);
}
