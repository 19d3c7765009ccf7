//! The result format: named figures per workload plus the server's resource use, as JSON and
//! as a human-readable table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::stats::Summary;

/// Whether a larger value of a figure is better (throughput) or worse (latency, memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
}

/// One figure, e.g. `p99` = 12.5 `ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    pub unit: String,
    pub value: f64,
    pub better: Better,
}

/// The outcome of one workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadReport {
    pub workload: String,
    /// The sizes it ran with.
    pub params: BTreeMap<String, Value>,
    pub metrics: Vec<Metric>,
    /// Failed requests, lost deliveries and timeouts during the measured phase.
    pub errors: u64,
    /// The first few error messages, for diagnosis.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_samples: Vec<String>,
    /// Wall time of the whole workload, set-up included, in seconds.
    pub wall_s: f64,
}

impl WorkloadReport {
    /// An empty report for `workload`.
    pub fn new(workload: &str) -> WorkloadReport {
        WorkloadReport {
            workload: workload.to_owned(),
            params: BTreeMap::new(),
            metrics: Vec::new(),
            errors: 0,
            error_samples: Vec::new(),
            wall_s: 0.0,
        }
    }

    /// Records a size parameter.
    pub fn param(&mut self, name: &str, value: impl Into<Value>) {
        self.params.insert(name.to_owned(), value.into());
    }

    /// Adds a figure.
    pub fn metric(&mut self, name: &str, unit: &str, value: f64, better: Better) {
        self.metrics.push(Metric {
            name: name.to_owned(),
            unit: unit.to_owned(),
            value,
            better,
        });
    }

    /// Adds `<name>_p50` and `<name>_p99` in milliseconds; a missing summary adds nothing, so
    /// that an absent figure shows as absent.
    pub fn latency(&mut self, name: &str, summary: Option<Summary>) {
        if let Some(s) = summary {
            self.metric(&format!("{name}_p50"), "ms", s.p50, Better::Lower);
            self.metric(&format!("{name}_p99"), "ms", s.p99, Better::Lower);
        }
    }

    /// Counts an error, keeping the first five messages.
    pub fn error(&mut self, message: impl std::fmt::Display) {
        self.errors += 1;
        if self.error_samples.len() < 5 {
            self.error_samples.push(message.to_string());
        }
    }

    /// The figure called `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }
}

/// The resource use of the server process during a run, and of the loader itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    pub peak_rss_mib: Option<f64>,
    pub final_rss_mib: Option<f64>,
    /// User + system CPU seconds the server used during the run.
    pub server_cpu_s: Option<f64>,
    pub db_size_mib: Option<f64>,
    /// PostgreSQL only: the peak summed Pss of the backend processes serving the server's
    /// database (the cluster's shared processes not counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_peak_pss_mib: Option<f64>,
    /// PostgreSQL only: CPU seconds of those backend processes during the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_cpu_s: Option<f64>,
    /// User + system CPU seconds of the benchmark process itself.
    pub loader_cpu_s: Option<f64>,
}

impl Resources {
    /// The resource figures as metrics (absent ones left out).
    pub fn metrics(&self) -> Vec<Metric> {
        let figures = [
            ("peak_rss", "MiB", self.peak_rss_mib),
            ("final_rss", "MiB", self.final_rss_mib),
            ("server_cpu", "s", self.server_cpu_s),
            ("db_size", "MiB", self.db_size_mib),
            ("pg_peak_pss", "MiB", self.pg_peak_pss_mib),
            ("pg_cpu", "s", self.pg_cpu_s),
            ("loader_cpu", "s", self.loader_cpu_s),
        ];
        figures
            .into_iter()
            .filter_map(|(name, unit, v)| {
                v.map(|value| Metric {
                    name: name.to_owned(),
                    unit: unit.to_owned(),
                    value,
                    better: Better::Lower,
                })
            })
            .collect()
    }
}

/// One run of one or more workloads against one server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// A label for the server, e.g. `myelin` or `synapse 1.163.2`.
    pub server: String,
    pub url: String,
    pub bench_version: String,
    /// Seconds since the Unix epoch at the start.
    pub started_at: u64,
    pub workloads: Vec<WorkloadReport>,
    pub resources: Resources,
}

impl RunReport {
    /// Every figure keyed `workload.metric`, resources under `resources.`.
    pub fn flat(&self) -> Vec<(String, Metric)> {
        let mut out: Vec<(String, Metric)> = self
            .workloads
            .iter()
            .flat_map(|w| {
                w.metrics
                    .iter()
                    .map(move |m| (format!("{}.{}", w.workload, m.name), m.clone()))
            })
            .collect();
        out.extend(
            self.resources
                .metrics()
                .into_iter()
                .map(|m| (format!("resources.{}", m.name), m)),
        );
        out
    }

    /// Total errors over all workloads.
    pub fn errors(&self) -> u64 {
        self.workloads.iter().map(|w| w.errors).sum()
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = format!("{} ({})\n", self.server, self.url);
        let rows: Vec<[String; 3]> = self
            .flat()
            .into_iter()
            .map(|(key, m)| [key, fmt_value(m.value), m.unit])
            .chain(self.workloads.iter().map(|w| {
                [
                    format!("{}.errors", w.workload),
                    w.errors.to_string(),
                    String::new(),
                ]
            }))
            .collect();
        out.push_str(&render(&["figure", "value", "unit"], &rows));
        for w in &self.workloads {
            for e in &w.error_samples {
                let _ = writeln!(out, "  {} error: {e}", w.workload);
            }
        }
        out
    }
}

/// A number with about three significant digits, no exponent.
pub fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || v == v.trunc() && a < 1e15 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A Markdown-compatible table with right-aligned columns after the first.
pub fn render<R: AsRef<[String]>>(header: &[&str], rows: &[R]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.as_ref()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::from("|");
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == 0 {
                let _ = write!(s, " {cell:<w$} |");
            } else {
                let _ = write!(s, " {cell:>w$} |");
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header.to_vec());
    out.push('|');
    for (i, w) in widths.iter().enumerate() {
        // `:---|` aligns left (the first column), `---:|` right.
        let dashes = "-".repeat(w + 1);
        if i == 0 {
            let _ = write!(out, ":{dashes}|");
        } else {
            let _ = write!(out, "{dashes}:|");
        }
    }
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.as_ref().iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RunReport {
        let mut w = WorkloadReport::new("send");
        w.param("messages", 10);
        w.metric("throughput", "msg/s", 1234.5, Better::Higher);
        w.latency("put", Summary::of(&[1.0, 2.0, 3.0]));
        w.error("boom");
        RunReport {
            server: "myelin".into(),
            url: "http://127.0.0.1:1".into(),
            bench_version: "0.1.0".into(),
            started_at: 1,
            workloads: vec![w],
            resources: Resources {
                peak_rss_mib: Some(12.0),
                loader_cpu_s: Some(0.5),
                ..Resources::default()
            },
        }
    }

    #[test]
    fn json_round_trip_and_shape() {
        let r = sample();
        let text = serde_json::to_string(&r).expect("serialize");
        let back: RunReport = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, r);
        let v: Value = serde_json::from_str(&text).expect("parse");
        assert_eq!(v["workloads"][0]["metrics"][0]["better"], "higher");
        assert_eq!(v["workloads"][0]["metrics"][1]["name"], "put_p50");
        assert_eq!(v["workloads"][0]["errors"], 1);
        assert_eq!(v["resources"]["peak_rss_mib"], 12.0);
        assert!(v["resources"]["final_rss_mib"].is_null());
    }

    #[test]
    fn flat_keys_and_table() {
        let r = sample();
        let keys: Vec<String> = r.flat().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "send.throughput",
                "send.put_p50",
                "send.put_p99",
                "resources.peak_rss",
                "resources.loader_cpu"
            ]
        );
        let t = r.table();
        assert!(t.contains("| send.throughput"));
        assert!(t.contains("| 1234 |") || t.contains("1234"));
        assert!(t.contains("send.errors"));
        assert!(t.contains("send error: boom"));
        assert_eq!(r.errors(), 1);
    }

    #[test]
    fn value_formatting() {
        assert_eq!(fmt_value(1234.6), "1235");
        assert_eq!(fmt_value(12.345), "12.3");
        assert_eq!(fmt_value(1.2345), "1.23");
        assert_eq!(fmt_value(0.12345), "0.123");
        assert_eq!(fmt_value(3.0), "3");
    }
}
