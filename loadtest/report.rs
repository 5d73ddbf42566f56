//! What a fan-out run reports: a table for people and one JSON line for scripts, the ratio
//! line of `--target compare`, and the per-second timeline of a steady-rate run, printed
//! as progress while it runs.

use crate::stats::Histogram;
use crate::tally::INTERVAL_NS;

/// The outcome of one run, as reported.
pub struct Report {
    pub label: String,
    pub connections: usize,
    pub subscriptions: usize,
    pub connect_secs: f64,
    /// Receipts of written values by the steady subscriptions.
    pub received: u64,
    pub lost: u64,
    pub errors: u64,
    /// Commit-to-receipt of the steady subscriptions.
    pub latency: Histogram,
    pub delivery_secs: f64,
    pub server_rss: Option<u64>,
    pub churn: Option<Churn>,
    pub rate: Option<Rate>,
}

/// Subscriptions completed and subscribed again while the writes ran.
pub struct Churn {
    pub subscriptions: usize,
    /// Resubscriptions that got their first result.
    pub cycles: u64,
    /// First results older than a commit known when subscribing (also counted in errors).
    pub stale_first: u64,
    /// Subscribe-to-first-result.
    pub latency: Histogram,
}

/// Writes at a steady rate.
pub struct Rate {
    pub per_sec: u64,
    pub secs: u64,
    pub writes: u64,
    /// Writes per second between the first commit and the last.
    pub achieved: f64,
    /// The latest a write started after its scheduled time.
    pub lag_max_ns: u64,
    pub intervals: Vec<IntervalStats>,
}

/// One second of a steady-rate run, merged over the workers.
#[derive(Default, Clone)]
pub struct IntervalStats {
    /// Workers that reported it.
    pub reports: usize,
    /// Commits made in it.
    pub writes: u64,
    /// Steady receipts read in it, and their commit-to-receipt latency.
    pub receipts: u64,
    pub latency: Histogram,
}

/// The per-second record of a steady-rate run: workers report their seconds, the
/// coordinator its commits; a second is printed once every worker has reported it.
pub struct Timeline {
    label: String,
    workers: usize,
    start: u64,
    pub intervals: Vec<IntervalStats>,
    printed: usize,
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

impl Timeline {
    pub fn new(label: &str, workers: usize, start: u64) -> Timeline {
        Timeline {
            label: label.to_owned(),
            workers,
            start,
            intervals: Vec::new(),
            printed: 0,
        }
    }

    fn at(&mut self, i: usize) -> &mut IntervalStats {
        if self.intervals.len() <= i {
            self.intervals.resize_with(i + 1, Default::default);
        }
        &mut self.intervals[i]
    }

    /// A commit at monotonic time `at`.
    pub fn write(&mut self, at: u64) {
        let i = (at.saturating_sub(self.start) / INTERVAL_NS) as usize;
        self.at(i).writes += 1;
    }

    /// A worker's `interval <i> <receipts> <histogram>`, without the word.
    pub fn add(&mut self, line: &str) -> Result<(), String> {
        let bad = || format!("bad interval line {line:?}");
        let mut parts = line.splitn(3, ' ');
        let i: usize = parts.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
        let receipts: u64 = parts.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
        let hist = Histogram::decode(parts.next().unwrap_or("")).ok_or_else(bad)?;
        let s = self.at(i);
        s.reports += 1;
        s.receipts += receipts;
        s.latency.merge(&hist);
        Ok(())
    }

    /// Prints, to standard error, every second that all workers have reported.
    pub fn progress(&mut self) {
        while let Some(s) = self.intervals.get(self.printed) {
            if s.reports < self.workers {
                break;
            }
            eprintln!(
                "{}: second {:>3}  {:>5} writes  {:>9} receipts  p50 {:.2}  p99 {:.2}  max {:.2} ms",
                self.label,
                self.printed,
                s.writes,
                s.receipts,
                ms(s.latency.quantile(0.5)),
                ms(s.latency.quantile(0.99)),
                ms(s.latency.max())
            );
            self.printed += 1;
        }
    }
}

impl Report {
    pub fn print(&self, floor: Option<&Report>) {
        let l = &self.latency;
        println!("{}", self.label);
        println!(
            "  connections / subscriptions  {} / {}",
            self.connections, self.subscriptions
        );
        println!(
            "  connect+init+subscribe       {:.1}s ({:.0} subscriptions/s)",
            self.connect_secs,
            self.subscriptions as f64 / self.connect_secs.max(1e-9)
        );
        if let Some(r) = &self.rate {
            println!(
                "  writes                       {} at {}/s for {}s: achieved {:.1}/s, at most {:.2} ms behind schedule",
                r.writes,
                r.per_sec,
                r.secs,
                r.achieved,
                ms(r.lag_max_ns)
            );
        }
        let steady = match &self.churn {
            Some(c) => {
                println!(
                    "  churning subscriptions       {} ({} resubscriptions, {} stale first results)",
                    c.subscriptions, c.cycles, c.stale_first
                );
                let r = &c.latency;
                println!(
                    "  subscribe-to-first-result    p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2} ms",
                    ms(r.quantile(0.5)),
                    ms(r.quantile(0.9)),
                    ms(r.quantile(0.99)),
                    ms(r.max())
                );
                "steady "
            }
            None => "",
        };
        println!(
            "  {:<27}  p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  ({} samples)",
            format!("{steady}commit-to-receipt ms"),
            ms(l.quantile(0.5)),
            ms(l.quantile(0.9)),
            ms(l.quantile(0.99)),
            ms(l.max()),
            l.count()
        );
        if self.delivery_secs > 0.0 {
            println!(
                "  delivered                    {} messages, {:.0}/s",
                self.received,
                self.received as f64 / self.delivery_secs
            );
        }
        println!(
            "  lost updates / errors        {} / {}",
            self.lost, self.errors
        );
        if let Some(rss) = self.server_rss {
            println!(
                "  server RSS                   {:.1} MiB ({:.0} B/connection, {:.0} B/subscription)",
                rss as f64 / 1048576.0,
                rss as f64 / self.connections.max(1) as f64,
                rss as f64 / self.subscriptions.max(1) as f64
            );
        }
        if let Some(f) = floor {
            let ratio = |q: f64| l.quantile(q) as f64 / f.latency.quantile(q).max(1) as f64;
            println!(
                "  vs floor (ours / floor)      p50 {:.2}x  p99 {:.2}x  max {:.2}x",
                ratio(0.5),
                ratio(0.99),
                l.max() as f64 / f.latency.max().max(1) as f64
            );
            if let (Some(o), Some(f)) = (&self.churn, &f.churn) {
                let ratio =
                    |q: f64| o.latency.quantile(q) as f64 / f.latency.quantile(q).max(1) as f64;
                println!(
                    "  resubscribe vs floor         p50 {:.2}x  p99 {:.2}x",
                    ratio(0.5),
                    ratio(0.99)
                );
            }
        }
        if let Some(r) = &self.rate {
            println!("  second  writes   receipts   p50 ms   p99 ms   max ms");
            for (i, s) in r.intervals.iter().enumerate() {
                println!(
                    "  {i:>6}  {:>6}  {:>9}  {:>7.2}  {:>7.2}  {:>7.2}",
                    s.writes,
                    s.receipts,
                    ms(s.latency.quantile(0.5)),
                    ms(s.latency.quantile(0.99)),
                    ms(s.latency.max())
                );
            }
        }
    }

    pub fn json(&self) -> String {
        let l = &self.latency;
        let mut out = format!(
            "{{\"label\":\"{}\",\"connections\":{},\"subscriptions\":{},\"connect_secs\":{:.3},\
             \"p50_ns\":{},\"p90_ns\":{},\"p99_ns\":{},\"max_ns\":{},\"received\":{},\
             \"delivery_secs\":{:.3},\"lost\":{},\"errors\":{},\"server_rss\":{}",
            self.label,
            self.connections,
            self.subscriptions,
            self.connect_secs,
            l.quantile(0.5),
            l.quantile(0.9),
            l.quantile(0.99),
            l.max(),
            self.received,
            self.delivery_secs,
            self.lost,
            self.errors,
            self.server_rss.map_or("null".into(), |v| v.to_string())
        );
        if let Some(c) = &self.churn {
            out.push_str(&format!(
                ",\"churn\":{},\"churn_cycles\":{},\"stale_first\":{},\"resub_p50_ns\":{},\
                 \"resub_p99_ns\":{},\"resub_max_ns\":{}",
                c.subscriptions,
                c.cycles,
                c.stale_first,
                c.latency.quantile(0.5),
                c.latency.quantile(0.99),
                c.latency.max()
            ));
        }
        if let Some(r) = &self.rate {
            out.push_str(&format!(
                ",\"rate\":{},\"duration_secs\":{},\"writes\":{},\"achieved_rate\":{:.2},\
                 \"lag_max_ns\":{},\"intervals\":[",
                r.per_sec, r.secs, r.writes, r.achieved, r.lag_max_ns
            ));
            for (i, s) in r.intervals.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&format!(
                    "{{\"second\":{i},\"writes\":{},\"receipts\":{},\"p50_ns\":{},\"p99_ns\":{},\
                     \"max_ns\":{}}}",
                    s.writes,
                    s.receipts,
                    s.latency.quantile(0.5),
                    s.latency.quantile(0.99),
                    s.latency.max()
                ));
            }
            out.push(']');
        }
        out.push('}');
        out
    }

    /// The `--target compare` line: ours over the floor's, quantile by quantile.
    pub fn ratios(&self, floor: &Report) -> String {
        let ratio = |o: &Histogram, f: &Histogram, q: f64| {
            o.quantile(q) as f64 / f.quantile(q).max(1) as f64
        };
        let (o, f) = (&self.latency, &floor.latency);
        let mut out = format!(
            "{{\"ratio_p50\":{:.3},\"ratio_p99\":{:.3},\"ratio_max\":{:.3}",
            ratio(o, f, 0.5),
            ratio(o, f, 0.99),
            o.max() as f64 / f.max().max(1) as f64
        );
        if let (Some(o), Some(f)) = (&self.churn, &floor.churn) {
            out.push_str(&format!(
                ",\"ratio_resub_p50\":{:.3},\"ratio_resub_p99\":{:.3}",
                ratio(&o.latency, &f.latency, 0.5),
                ratio(&o.latency, &f.latency, 0.99)
            ));
        }
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(values: &[u64]) -> Histogram {
        let mut h = Histogram::default();
        for v in values {
            h.record(*v);
        }
        h
    }

    #[test]
    fn a_second_is_complete_once_every_worker_reported_it() {
        let start = 5 * INTERVAL_NS;
        let mut t = Timeline::new("x", 2, start);
        t.write(start + 10);
        t.write(start + INTERVAL_NS + 10);
        t.write(start + INTERVAL_NS + 20);
        t.add(&format!("0 3 {}", hist(&[1_000, 2_000, 3_000]).encode()))
            .unwrap();
        t.add(&format!("1 1 {}", hist(&[9_000]).encode())).unwrap();
        t.progress();
        assert_eq!(t.printed, 0, "second 0 waits for the other worker");
        t.add(&format!("0 1 {}", hist(&[4_000]).encode())).unwrap();
        t.progress();
        assert_eq!(t.printed, 1);
        let s = &t.intervals[0];
        assert_eq!((s.writes, s.receipts, s.latency.count()), (1, 4, 4));
        assert_eq!(s.latency.max(), 4_000);
        assert_eq!(t.intervals[1].writes, 2);
        assert!(t.add("0 x").is_err());
        assert!(t.add("0 1 bad").is_err());
    }

    fn report(latency: &[u64], churn: Option<&[u64]>) -> Report {
        Report {
            label: "postrust".into(),
            connections: 2,
            subscriptions: 4,
            connect_secs: 1.0,
            received: 8,
            lost: 0,
            errors: 0,
            latency: hist(latency),
            delivery_secs: 1.0,
            server_rss: None,
            churn: churn.map(|c| Churn {
                subscriptions: 1,
                cycles: c.len() as u64,
                stale_first: 0,
                latency: hist(c),
            }),
            rate: None,
        }
    }

    #[test]
    fn json_carries_churn_and_rate_and_ratios_compare_them() {
        let mut ours = report(&[2_000], Some(&[30_000]));
        let floor = report(&[1_000], Some(&[10_000]));
        assert_eq!(
            ours.ratios(&floor),
            r#"{"ratio_p50":2.000,"ratio_p99":2.000,"ratio_max":2.000,"ratio_resub_p50":3.000,"ratio_resub_p99":3.000}"#
        );
        assert!(
            ours.json()
                .contains(r#""churn":1,"churn_cycles":1,"stale_first":0,"resub_p50_ns":30000,"#)
        );
        ours.rate = Some(Rate {
            per_sec: 10,
            secs: 2,
            writes: 20,
            achieved: 10.0,
            lag_max_ns: 5,
            intervals: vec![
                IntervalStats {
                    reports: 2,
                    writes: 10,
                    receipts: 40,
                    latency: hist(&[7]),
                },
                IntervalStats::default(),
            ],
        });
        let json = ours.json();
        assert!(json.ends_with(
            r#""intervals":[{"second":0,"writes":10,"receipts":40,"p50_ns":7,"p99_ns":7,"max_ns":7},{"second":1,"writes":0,"receipts":0,"p50_ns":0,"p99_ns":0,"max_ns":0}]}"#
        ), "{json}");
        // Without churn on both sides, only the commit-to-receipt ratios.
        assert!(!report(&[1], None).ratios(&floor).contains("resub"));
    }
}
