//! The side-by-side result: every figure of the Myelin run next to the same figure of the
//! Synapse run, with the ratio Myelin/Synapse and how many times better Myelin is.

use serde::{Deserialize, Serialize};

use crate::report::{fmt_value, render, Better, RunReport};
use crate::stats::{advantage, ratio};

/// One figure of both servers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareRow {
    /// `workload.metric`.
    pub figure: String,
    pub unit: String,
    pub better: Better,
    pub myelin: Option<f64>,
    pub synapse: Option<f64>,
    /// Myelin / Synapse.
    pub ratio: Option<f64>,
    /// How many times better Myelin is (>1: Myelin better), whichever direction is better.
    pub advantage: Option<f64>,
}

/// Whether a figure says something about the server: the loader's own CPU time and plain
/// counts (deliveries) get a ratio but no "better by".
pub fn is_server_figure(key: &str, unit: &str) -> bool {
    key != "resources.loader_cpu" && unit != "count"
}

/// The whole comparison, as written to the JSON file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareReport {
    /// A description of the machine (CPU model, cores, load at start).
    pub machine: String,
    pub myelin: Option<RunReport>,
    pub synapse: Option<RunReport>,
    pub rows: Vec<CompareRow>,
}

impl CompareReport {
    /// Pairs the figures of the two runs, in the order of the Myelin run (then any figure only
    /// Synapse has).
    pub fn new(
        machine: String,
        myelin: Option<RunReport>,
        synapse: Option<RunReport>,
    ) -> CompareReport {
        let m = myelin.as_ref().map(RunReport::flat).unwrap_or_default();
        let s = synapse.as_ref().map(RunReport::flat).unwrap_or_default();
        let mut rows: Vec<CompareRow> = Vec::new();
        for (key, metric) in m.iter().chain(s.iter()) {
            if rows.iter().any(|r| &r.figure == key) {
                continue;
            }
            let find = |list: &[(String, crate::Metric)]| {
                list.iter().find(|(k, _)| k == key).map(|(_, x)| x.value)
            };
            let (mv, sv) = (find(&m), find(&s));
            rows.push(CompareRow {
                figure: key.clone(),
                unit: metric.unit.clone(),
                better: metric.better,
                myelin: mv,
                synapse: sv,
                ratio: ratio(mv, sv),
                advantage: if is_server_figure(key, &metric.unit) {
                    advantage(mv, sv, metric.better == Better::Higher)
                } else {
                    None
                },
            });
        }
        CompareReport {
            machine,
            myelin,
            synapse,
            rows,
        }
    }

    /// The human-readable (and Markdown) table, with an errors line per server.
    pub fn table(&self) -> String {
        let opt = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), fmt_value);
        let label = |r: &Option<RunReport>, default: &str| {
            r.as_ref().map_or(default.to_owned(), |r| r.server.clone())
        };
        let rows: Vec<[String; 6]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.figure.clone(),
                    r.unit.clone(),
                    opt(r.myelin),
                    opt(r.synapse),
                    r.ratio
                        .map_or_else(|| "–".to_owned(), |v| format!("{v:.3}")),
                    r.advantage
                        .map_or_else(|| "–".to_owned(), |v| format!("{v:.1}×")),
                ]
            })
            .chain(std::iter::once([
                "errors (all workloads)".to_owned(),
                String::new(),
                self.myelin
                    .as_ref()
                    .map_or("–".to_owned(), |r| r.errors().to_string()),
                self.synapse
                    .as_ref()
                    .map_or("–".to_owned(), |r| r.errors().to_string()),
                String::new(),
                String::new(),
            ]))
            .collect();
        let (mh, sh) = (
            label(&self.myelin, "myelin"),
            label(&self.synapse, "synapse"),
        );
        render(
            &[
                "figure",
                "unit",
                &mh,
                &sh,
                "Myelin/Synapse",
                "Myelin better by",
            ],
            &rows,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Resources, WorkloadReport};

    fn run(server: &str, throughput: f64, p50: f64, rss: f64) -> RunReport {
        let mut w = WorkloadReport::new("send");
        w.metric("throughput", "msg/s", throughput, Better::Higher);
        w.metric("put_p50", "ms", p50, Better::Lower);
        RunReport {
            server: server.into(),
            url: "http://127.0.0.1:1".into(),
            bench_version: "0".into(),
            started_at: 0,
            workloads: vec![w],
            resources: Resources {
                peak_rss_mib: Some(rss),
                ..Resources::default()
            },
        }
    }

    #[test]
    fn ratios_and_advantages() {
        let c = CompareReport::new(
            "test".into(),
            Some(run("myelin", 1000.0, 2.0, 20.0)),
            Some(run("synapse 1", 50.0, 500.0, 200.0)),
        );
        assert_eq!(c.rows.len(), 3);
        let t = &c.rows[0];
        assert_eq!(
            (t.figure.as_str(), t.ratio, t.advantage),
            ("send.throughput", Some(20.0), Some(20.0))
        );
        let l = &c.rows[1];
        assert_eq!((l.ratio, l.advantage), (Some(0.004), Some(250.0)));
        let m = &c.rows[2];
        assert_eq!(
            (m.figure.as_str(), m.ratio, m.advantage),
            ("resources.peak_rss", Some(0.1), Some(10.0))
        );
        let table = c.table();
        assert!(table.contains("synapse 1"));
        assert!(table.contains("250.0×"));
        let json = serde_json::to_value(&c).expect("serialize");
        assert_eq!(json["rows"][0]["advantage"], 20.0);
        let back: CompareReport = serde_json::from_value(json).expect("parse");
        assert_eq!(back, c);
    }

    #[test]
    fn loader_cpu_and_counts_get_no_advantage() {
        let mut a = run("myelin", 1.0, 1.0, 1.0);
        a.resources.loader_cpu_s = Some(1.0);
        a.workloads[0].metric("deliveries", "count", 10.0, Better::Higher);
        let mut b = run("synapse", 1.0, 1.0, 1.0);
        b.resources.loader_cpu_s = Some(2.0);
        b.workloads[0].metric("deliveries", "count", 10.0, Better::Higher);
        let c = CompareReport::new("test".into(), Some(a), Some(b));
        for figure in ["resources.loader_cpu", "send.deliveries"] {
            let row = c.rows.iter().find(|r| r.figure == figure).expect("row");
            assert!(row.ratio.is_some() && row.advantage.is_none(), "{figure}");
        }
    }

    #[test]
    fn one_sided_runs_leave_ratios_empty() {
        let c = CompareReport::new("test".into(), Some(run("myelin", 1.0, 1.0, 1.0)), None);
        assert!(c
            .rows
            .iter()
            .all(|r| r.synapse.is_none() && r.ratio.is_none()));
        assert!(c.table().contains("–"));
    }
}
