//! Timelines of a simulated run.
//!
//! [`chrome_trace_json`] writes the report's events in the runtime's
//! timeline format ([`crate::trace`], the one writer both use), so
//! predicted and measured timelines load side by side in Perfetto.
//!
//! [`svg_gantt`] draws a Gantt chart: one row per device queue (compute,
//! and copy where the device receives copies), kernels in blue, backward
//! kernels in green, copies in orange.

use super::report::SimReport;
use std::fmt::Write;

/// The report's events as Chrome trace / Perfetto JSON: one process per
/// device of the report (in name order), times in microseconds.
pub fn chrome_trace_json(r: &SimReport) -> String {
    let devices: Vec<&str> = r.device_names.iter().map(String::as_str).collect();
    crate::trace::chrome_trace_json_for(&devices, &r.trace_events())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The report as an SVG Gantt chart (see the module docs).
pub fn svg_gantt(r: &SimReport) -> String {
    const W: f64 = 1200.0;
    const LABEL: f64 = 140.0;
    const ROW: f64 = 22.0;
    const TOP: f64 = 30.0;
    let p = r.device_names.len();
    let mut has_copy = vec![false; p];
    for e in &r.events {
        if e.queue == "copy" && e.dur > 0.0 {
            has_copy[e.device] = true;
        }
    }
    // Row of (device, queue).
    let mut rows: Vec<(usize, &str)> = Vec::new();
    for (d, &c) in has_copy.iter().enumerate() {
        rows.push((d, "compute"));
        if c {
            rows.push((d, "copy"));
        }
    }
    let row_of = |d: usize, q: &str| rows.iter().position(|&(rd, rq)| rd == d && rq == q);
    let height = TOP + ROW * rows.len() as f64 + 30.0;
    let span = if r.makespan > 0.0 { r.makespan } else { 1.0 };
    let sx = (W - LABEL - 10.0) / span;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<rect x="0" y="0" width="{W}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="4" y="16">makespan {:.4} {} · {} micro-batch(es) · blue: kernels, green: backward, orange: copies</text>"#,
        r.makespan,
        esc(&r.unit),
        r.microbatches
    );
    for (i, &(d, q)) in rows.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        let fill = if i % 2 == 0 { "#f4f4f4" } else { "#ffffff" };
        let _ = writeln!(
            s,
            r#"<rect x="0" y="{y}" width="{W}" height="{ROW}" fill="{fill}"/>"#
        );
        let _ = writeln!(
            s,
            r#"<text x="4" y="{}">{} {q}</text>"#,
            y + ROW * 0.7,
            esc(&r.device_names[d])
        );
    }
    for e in &r.events {
        let Some(row) = row_of(e.device, e.queue) else {
            continue;
        };
        if e.dur <= 0.0 {
            continue;
        }
        let color = match (e.cat, e.name.ends_with("(bwd)")) {
            ("copy", _) => "#f28e2b",
            (_, true) => "#59a14f",
            _ => "#4e79a7",
        };
        let x = LABEL + e.start * sx;
        let w = (e.dur * sx).max(0.5);
        let y = TOP + ROW * row as f64 + 3.0;
        let _ = writeln!(
            s,
            r##"<rect x="{x:.2}" y="{y:.1}" width="{w:.2}" height="{:.1}" fill="{color}" stroke="#333" stroke-width="0.2"><title>{} mb {} [{:.4} .. {:.4}]</title></rect>"##,
            ROW - 6.0,
            esc(&e.name),
            e.mb,
            e.start,
            e.start + e.dur
        );
    }
    // Time axis: five ticks.
    let ya = TOP + ROW * rows.len() as f64 + 14.0;
    for k in 0..=4 {
        let t = span * k as f64 / 4.0;
        let x = LABEL + t * sx;
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#999" stroke-width="0.5"/><text x="{x:.1}" y="{ya:.1}" text-anchor="middle">{t:.3}</text>"##,
            ya - 10.0
        );
    }
    s.push_str("</svg>\n");
    s
}
