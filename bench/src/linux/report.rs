//! The printed report: latency table with ratios to b, 2-way throughput,
//! memory, each next to its DESIGN.md target.

use super::stats::{Summary, summarize};
use super::{Rate, Results, Row};
use crate::Args;

/// KiB per MiB.
const KIB_PER_MIB: f64 = 1024.0;

/// DESIGN.md's target or reference for a latency row, as (text, limit of
/// the ratio to b if it is a target).
fn latency_target(label: &str) -> (&'static str, Option<f64>) {
    if label.starts_with("b:") {
        ("baseline", None)
    } else if label.starts_with("bwrap") {
        ("ref: DESIGN says ~1.4x", None)
    } else if label.starts_with("crun") {
        ("ref: DESIGN says ~3x", None)
    } else if label.starts_with("runc") {
        ("ref: DESIGN says ~8x", None)
    } else if label.contains("create+wait+destroy") {
        ("target <= 1.0x b", Some(1.0))
    } else if label.contains("ExecSync") {
        ("target <= 0.5x b", Some(0.5))
    } else if label.starts_with("sandboxctl run") {
        ("issue 16: <= 2.5x b", Some(2.5))
    } else if label.starts_with("sandboxctl --version") {
        ("the CLI's own start-up", None)
    } else {
        ("", None)
    }
}

/// PASS/FAIL for a "lower is better" target.
fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

/// One latency line.
fn line(row: &Row, b: Option<Summary>, target: (&str, Option<f64>)) {
    let label = &row.label;
    let (text, limit) = target;
    if let Some(why) = &row.unavailable {
        println!("{label:<34} {why}");
        return;
    }
    let Some(s) = summarize(&row.samples) else {
        println!("{label:<34} no samples");
        return;
    };
    let ratio = b.map(|b| s.median / b.median);
    let ratio_text = ratio.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}x"));
    let judged = match (ratio, limit) {
        (Some(r), Some(l)) => format!("  {}", verdict(r <= l)),
        _ => String::new(),
    };
    println!(
        "{label:<34} {:>9.2} {:>8.2} {:>8.2} {:>4} {ratio_text:>8}   {text}{judged}",
        s.median, s.p10, s.p90, s.n
    );
}

/// Prints everything.
pub(crate) fn print(args: &Args, r: &Results) {
    let b = r.rows.first().and_then(|row| summarize(&row.samples));
    println!();
    println!(
        "sandboxd benchmark: {} measured rounds after {} warm-up, interleaved; \
         times in ms; x b = median / median of b",
        args.iterations, args.warmup
    );
    println!();
    println!(
        "{:<34} {:>9} {:>8} {:>8} {:>4} {:>8}   target (DESIGN.md)",
        "operation", "median", "p10", "p90", "n", "x b"
    );
    println!("{}", "-".repeat(104));
    for row in &r.rows {
        line(row, b, latency_target(&row.label));
        if row.label.contains("create+wait+destroy") {
            for part in &r.breakdown {
                line(part, b, ("(per-RPC part of the row above)", None));
            }
        }
    }

    println!();
    println!(
        "{:<34} {:>9} {:>8}   target (DESIGN.md)",
        "2-way throughput", "ops/s", "x b"
    );
    println!("{}", "-".repeat(104));
    let tb = r.throughput.b;
    let cpu = |rate: &Rate| {
        rate.cpu_ms_per_op.map_or_else(
            || "host CPU/op unreadable".to_owned(),
            |ms| format!("host CPU {ms:.2} ms/op"),
        )
    };
    match &tb {
        Some(rate) => println!(
            "{:<34} {:>9.1} {:>8}   baseline  ({})",
            "b: 2 parallel loops",
            rate.ops_per_sec,
            "1.00x",
            cpu(rate)
        ),
        None => println!("{:<34} failed", "b: 2 parallel loops"),
    }
    match &r.throughput.sandboxd {
        Ok(rate) => {
            let ops = rate.ops_per_sec;
            let (ratio, judged) = tb.map_or_else(
                || ("-".to_owned(), String::new()),
                |b| {
                    let x = ops / b.ops_per_sec;
                    (format!("{x:.2}x"), format!("  {}", verdict(x >= 1.2)))
                },
            );
            let per_op = match (rate.cpu_ms_per_op, tb.and_then(|b| b.cpu_ms_per_op)) {
                (Some(s), Some(b)) if b > 0.0 => format!("{}, {:.2}x b's", cpu(rate), s / b),
                _ => cpu(rate),
            };
            println!(
                "{:<34} {ops:>9.1} {ratio:>8}   target >= 1.2x b{judged}  ({per_op})",
                "sandboxd: 2 clients c+w+d"
            );
            if let Some(roles) = rate.roles {
                println!(
                    "  {:<32} daemon {:.2}, zygote {:.2}, supervisors+pid 1s+main processes {:.2}, other (clients, kernel threads) {:.2} ms/op",
                    "(info) host CPU by role",
                    roles.daemon,
                    roles.zygote,
                    roles.sandboxes,
                    roles.other
                );
            }
        }
        Err(why) => println!("{:<34} {why}", "sandboxd: 2 clients c+w+d"),
    }

    println!();
    println!("{:<34} {:>9}   target (DESIGN.md)", "memory", "MiB");
    println!("{}", "-".repeat(104));
    let m = &r.memory;
    #[allow(clippy::cast_precision_loss)] // KiB values are far below 2^52
    let idle = m.idle_rss as f64 / KIB_PER_MIB;
    println!(
        "{:<34} {idle:>9.2}   target <= 15 MiB  {}",
        "daemon idle VmRSS (+ zygote)",
        verdict(idle <= 15.0)
    );
    if let Some(after) = m.rss_after_run {
        #[allow(clippy::cast_precision_loss)] // KiB values are far below 2^52
        let after = after as f64 / KIB_PER_MIB;
        println!(
            "{:<34} {after:>9.2}   (info: after the phases above, before the memory phase)",
            "daemon VmRSS, no sandboxes"
        );
    }
    match &m.per_sandbox {
        Ok(p) => {
            // PSS is the host memory a sandbox adds: pages shared with
            // the other helpers (the binary's text) are split among them.
            // RSS counts the shared binary once per helper.
            let pss = p.pss_kib / KIB_PER_MIB;
            // The daemon's own heap moves by more than a few sandboxes
            // add: a tree that shrank measured nothing, which is no PASS.
            let judged = if pss < 0.0 {
                "NOT MEASURED (the tree shrank: raise --idle-sandboxes)"
            } else {
                verdict(pss <= 1.0)
            };
            println!(
                "{:<34} {pss:>9.3}   target <= 1 MiB  {judged}   ({} IDLE, {} helpers seen)",
                "per idle sandbox: PSS sum", p.count, p.helpers
            );
            println!(
                "{:<34} {:>9.3}   (info: counts the shared binary once per helper)",
                "per idle sandbox: RSS sum",
                p.rss_kib / KIB_PER_MIB
            );
            println!(
                "{:<34} {:>9.3}   (info: includes kernel memory; noisy)",
                "per idle sandbox: MemAvailable",
                p.mem_available_kib / KIB_PER_MIB
            );
            #[allow(clippy::cast_precision_loss)] // counts are far below 2^52
            let n = p.count as f64;
            println!(
                "{:<34} create {:.2} ms/sandbox, destroy {:.2} ms/sandbox (sequential)",
                "  (info)",
                p.create_time.as_secs_f64() * 1e3 / n,
                p.destroy_time.as_secs_f64() * 1e3 / n
            );
        }
        Err(why) => println!("{:<34} {why}", "per idle sandbox"),
    }
}
