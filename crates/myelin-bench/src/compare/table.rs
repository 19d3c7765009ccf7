//! The side-by-side result: per storage backend, every figure of the Myelin run next to the
//! same figure of the Synapse run on the same backend, with the ratio Myelin/Synapse and how
//! many times better Myelin is.

use serde::{Deserialize, Serialize};

use crate::report::{fmt_value, render, Better, RunReport};
use crate::stats::{advantage, ratio};

use super::backend::Backend;

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

/// Both servers on one backend: their runs and the paired figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendPair {
    pub backend: Backend,
    pub myelin: Option<RunReport>,
    pub synapse: Option<RunReport>,
    pub rows: Vec<CompareRow>,
}

impl BackendPair {
    /// Pairs the figures of the two runs, in the order of the Myelin run (then any figure only
    /// Synapse has).
    pub fn new(
        backend: Backend,
        myelin: Option<RunReport>,
        synapse: Option<RunReport>,
    ) -> BackendPair {
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
        BackendPair {
            backend,
            myelin,
            synapse,
            rows,
        }
    }

    /// The row of `figure`.
    pub fn row(&self, figure: &str) -> Option<&CompareRow> {
        self.rows.iter().find(|r| r.figure == figure)
    }

    /// The column headers of this pair: both servers' labels, the ratio, the advantage.
    fn headers(&self) -> [String; 4] {
        let label = |r: &Option<RunReport>, server: &str| {
            r.as_ref().map_or_else(
                || format!("{server}/{}", self.backend),
                |r| r.server.clone(),
            )
        };
        [
            label(&self.myelin, "myelin"),
            label(&self.synapse, "synapse"),
            "Myelin/Synapse".to_owned(),
            "Myelin better by".to_owned(),
        ]
    }

    /// The four cells of `figure` (dashes when this pair lacks it).
    fn cells(&self, figure: &str) -> [String; 4] {
        let opt = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), fmt_value);
        let row = self.row(figure);
        [
            opt(row.and_then(|r| r.myelin)),
            opt(row.and_then(|r| r.synapse)),
            row.and_then(|r| r.ratio)
                .map_or_else(|| "–".to_owned(), |v| format!("{v:.3}")),
            row.and_then(|r| r.advantage)
                .map_or_else(|| "–".to_owned(), |v| format!("{v:.1}×")),
        ]
    }

    /// The errors cells.
    fn error_cells(&self) -> [String; 4] {
        let errors = |r: &Option<RunReport>| {
            r.as_ref()
                .map_or("–".to_owned(), |r| r.errors().to_string())
        };
        [
            errors(&self.myelin),
            errors(&self.synapse),
            String::new(),
            String::new(),
        ]
    }
}

/// The whole comparison, as written to the JSON file: one pair per backend, in the order run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareReport {
    /// A description of the machine (CPU model, cores, load at start).
    pub machine: String,
    pub pairs: Vec<BackendPair>,
}

impl CompareReport {
    pub fn new(machine: String, pairs: Vec<BackendPair>) -> CompareReport {
        CompareReport { machine, pairs }
    }

    /// The pair of `backend`.
    pub fn pair(&self, backend: Backend) -> Option<&BackendPair> {
        self.pairs.iter().find(|p| p.backend == backend)
    }

    /// Every figure of any pair with its unit, in the order first seen.
    pub fn figures(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for row in self.pairs.iter().flat_map(|p| &p.rows) {
            if !out.iter().any(|(f, _)| f == &row.figure) {
                out.push((row.figure.clone(), row.unit.clone()));
            }
        }
        out
    }

    /// The human-readable (and Markdown) table: figure and unit, then per backend both servers'
    /// values, the ratio Myelin/Synapse and how many times better Myelin is; an errors line last.
    pub fn table(&self) -> String {
        let mut header = vec!["figure".to_owned(), "unit".to_owned()];
        header.extend(self.pairs.iter().flat_map(BackendPair::headers));
        let mut rows: Vec<Vec<String>> = self
            .figures()
            .into_iter()
            .map(|(figure, unit)| {
                let cells = self.pairs.iter().flat_map(|p| p.cells(&figure));
                [figure.clone(), unit].into_iter().chain(cells).collect()
            })
            .collect();
        rows.push(
            ["errors (all workloads)".to_owned(), String::new()]
                .into_iter()
                .chain(self.pairs.iter().flat_map(BackendPair::error_cells))
                .collect(),
        );
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        render(&header, &rows)
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

    fn sqlite_pair(myelin: Option<RunReport>, synapse: Option<RunReport>) -> CompareReport {
        CompareReport::new(
            "test".into(),
            vec![BackendPair::new(Backend::Sqlite, myelin, synapse)],
        )
    }

    #[test]
    fn ratios_and_advantages() {
        let c = sqlite_pair(
            Some(run("myelin", 1000.0, 2.0, 20.0)),
            Some(run("synapse 1", 50.0, 500.0, 200.0)),
        );
        let rows = &c.pairs[0].rows;
        assert_eq!(rows.len(), 3);
        let t = &rows[0];
        assert_eq!(
            (t.figure.as_str(), t.ratio, t.advantage),
            ("send.throughput", Some(20.0), Some(20.0))
        );
        let l = &rows[1];
        assert_eq!((l.ratio, l.advantage), (Some(0.004), Some(250.0)));
        let m = &rows[2];
        assert_eq!(
            (m.figure.as_str(), m.ratio, m.advantage),
            ("resources.peak_rss", Some(0.1), Some(10.0))
        );
        let table = c.table();
        assert!(table.contains("synapse 1"));
        assert!(table.contains("250.0×"));
        let json = serde_json::to_value(&c).expect("serialize");
        assert_eq!(json["pairs"][0]["backend"], "sqlite");
        assert_eq!(json["pairs"][0]["rows"][0]["advantage"], 20.0);
        assert_eq!(json["pairs"][0]["myelin"]["server"], "myelin");
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
        let c = sqlite_pair(Some(a), Some(b));
        for figure in ["resources.loader_cpu", "send.deliveries"] {
            let row = c.pairs[0].row(figure).expect("row");
            assert!(row.ratio.is_some() && row.advantage.is_none(), "{figure}");
        }
    }

    #[test]
    fn one_sided_runs_leave_ratios_empty() {
        let c = sqlite_pair(Some(run("myelin", 1.0, 1.0, 1.0)), None);
        assert!(c.pairs[0]
            .rows
            .iter()
            .all(|r| r.synapse.is_none() && r.ratio.is_none()));
        assert!(c.table().contains("–"));
    }

    #[test]
    fn backends_pair_within_themselves() {
        let mut pg_myelin = run("myelin/postgres", 400.0, 8.0, 30.0);
        pg_myelin.resources.pg_peak_pss_mib = Some(12.0);
        let mut pg_synapse = run("synapse 1/postgres", 40.0, 80.0, 300.0);
        pg_synapse.resources.pg_peak_pss_mib = Some(24.0);
        let c = CompareReport::new(
            "test".into(),
            vec![
                BackendPair::new(
                    Backend::Sqlite,
                    Some(run("myelin/sqlite", 1000.0, 2.0, 20.0)),
                    Some(run("synapse 1/sqlite", 50.0, 500.0, 200.0)),
                ),
                BackendPair::new(Backend::Postgres, Some(pg_myelin), Some(pg_synapse)),
            ],
        );
        // Ratios are taken within a backend, never across.
        let sqlite = c.pair(Backend::Sqlite).expect("sqlite");
        let pg = c.pair(Backend::Postgres).expect("postgres");
        assert_eq!(
            sqlite.row("send.throughput").and_then(|r| r.ratio),
            Some(20.0)
        );
        assert_eq!(pg.row("send.throughput").and_then(|r| r.ratio), Some(10.0));
        assert_eq!(pg.row("send.put_p50").and_then(|r| r.advantage), Some(10.0));
        // A figure only one backend has is a row of its own, empty for the other.
        assert!(sqlite.row("resources.pg_peak_pss").is_none());
        assert_eq!(
            pg.row("resources.pg_peak_pss").and_then(|r| r.ratio),
            Some(0.5)
        );
        let figures: Vec<String> = c.figures().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            figures,
            [
                "send.throughput",
                "send.put_p50",
                "resources.peak_rss",
                "resources.pg_peak_pss"
            ]
        );

        let table = c.table();
        let lines: Vec<&str> = table.lines().collect();
        let header: Vec<&str> = lines[0].split('|').map(str::trim).collect();
        assert_eq!(
            header[1..header.len() - 1],
            [
                "figure",
                "unit",
                "myelin/sqlite",
                "synapse 1/sqlite",
                "Myelin/Synapse",
                "Myelin better by",
                "myelin/postgres",
                "synapse 1/postgres",
                "Myelin/Synapse",
                "Myelin better by",
            ]
        );
        let cells = |figure: &str| -> Vec<String> {
            let line = lines
                .iter()
                .find(|l| l.starts_with(&format!("| {figure} ")))
                .expect("row");
            line.split('|').map(|c| c.trim().to_owned()).collect()
        };
        assert_eq!(
            cells("send.throughput")[3..11],
            ["1000", "50", "20.000", "20.0×", "400", "40", "10.000", "10.0×"]
        );
        assert_eq!(
            cells("resources.pg_peak_pss")[3..11],
            ["–", "–", "–", "–", "12", "24", "0.500", "2.0×"]
        );
        assert!(lines
            .last()
            .expect("errors line")
            .starts_with("| errors (all workloads)"));

        let json = serde_json::to_value(&c).expect("serialize");
        assert_eq!(json["pairs"][1]["backend"], "postgres");
        assert_eq!(
            json["pairs"][1]["synapse"]["resources"]["pg_peak_pss_mib"],
            24.0
        );
        let back: CompareReport = serde_json::from_value(json).expect("parse");
        assert_eq!(back, c);
    }
}
