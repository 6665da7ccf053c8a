//! `provision`, `sync` and `status`: the box and its server.

use std::io::Write;
use std::path::Path;

use anyhow::Result;

use super::Command;
use super::attendance::{open_store, open_store_existing};
use crate::config::{CONFIG_FILE, Config};
use crate::sync::clock::{self, ClockVerdict};
use crate::sync::{self, Breaker, CycleReport, Status};

pub(super) fn run(command: Command, data_dir: &Path, out: &mut impl Write) -> Result<i32> {
    let config = Config::load(&data_dir.join(CONFIG_FILE))?.sync;
    match command {
        Command::Provision { server, code, name } => {
            let mut store = open_store(data_dir)?;
            let device = sync::provision(
                &mut store,
                data_dir,
                &server,
                &code,
                name.as_deref(),
                &config,
            )?;
            writeln!(
                out,
                "provisioned: device {} of school {} at {}; token in {}",
                device.device_id,
                device.school_id,
                device.server,
                data_dir.join(sync::TOKEN_FILE).display()
            )?;
        }
        Command::Sync {
            once,
            retry_rejected,
        } => {
            let mut store = open_store_existing(data_dir)?;
            if retry_rejected {
                let n = store.requeue_rejected()?;
                writeln!(out, "{n} rejected events back in the queue")?;
            }
            let mut syncer = sync::syncer(data_dir, store, &config)?;
            loop {
                let report = syncer.cycle()?;
                print_cycle(out, &report)?;
                out.flush()?;
                if once {
                    return Ok(if report.succeeded() { 0 } else { 1 });
                }
                std::thread::sleep(std::time::Duration::from_secs_f64(config.interval_s));
            }
        }
        Command::Status { json } => {
            let store = open_store_existing(data_dir)?;
            let status = sync::status(&store, &config)?;
            if json {
                writeln!(out, "{}", serde_json::to_string(&status)?)?;
            } else {
                print_status(out, &status)?;
            }
        }
        _ => unreachable!("cli::run sends only sync commands here"),
    }
    Ok(0)
}

fn print_cycle(out: &mut impl Write, report: &CycleReport) -> Result<()> {
    if let Some(ms) = report.breaker_open_ms {
        writeln!(
            out,
            "sync {}: skipped, the server failed repeatedly; next try in {} s",
            report.request_id,
            (ms + 999) / 1000
        )?;
        return Ok(());
    }
    write!(
        out,
        "sync {}: pushed {}, rejected {}, pulled {} changes ({} templates added, {} purged)",
        report.request_id,
        report.pushed,
        report.rejected,
        report.pulled,
        report.templates_added,
        report.templates_purged
    )?;
    if report.retries > 0 {
        write!(out, ", {} retries", report.retries)?;
    }
    match &report.error {
        Some(error) => writeln!(out, "; stopped: {error}")?,
        None => writeln!(out)?,
    }
    for reason in &report.rejections {
        writeln!(out, "  rejected: {reason}")?;
    }
    if report.rejected > report.rejections.len() {
        writeln!(
            out,
            "  ... and {} more rejected",
            report.rejected - report.rejections.len()
        )?;
    }
    if let Some(offset) = report.clock_offset_ms
        && clock::verdict(offset) == ClockVerdict::Fail
    {
        writeln!(
            out,
            "  clock: this box's clock is {}, so its marks carry the wrong time: {}",
            clock::describe(offset),
            clock::CLOCK_FIX
        )?;
    }
    Ok(())
}

/// A time as "2026-11-26 09:00:12 (3 min ago)", in the box's local time zone.
fn when(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return "never".into();
    };
    let ago = (crate::store::now_ms() - ms).max(0) / 1000;
    let ago = match ago {
        0..60 => format!("{ago} s ago"),
        60..3600 => format!("{} min ago", ago / 60),
        3600..86_400 => format!("{} h ago", ago / 3600),
        _ => format!("{} days ago", ago / 86_400),
    };
    let local = jiff::Timestamp::from_millisecond(ms)
        .map(|t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| ms.to_string());
    format!("{local} ({ago})")
}

fn print_status(out: &mut impl Write, status: &Status) -> Result<()> {
    match (&status.device_id, &status.server) {
        (Some(device), Some(server)) => {
            writeln!(out, "device      {device}")?;
            writeln!(
                out,
                "school      {}",
                status.school_id.as_deref().unwrap_or("")
            )?;
            writeln!(out, "server      {server}")?;
        }
        _ => writeln!(
            out,
            "device      not provisioned (edge-agent provision --server URL --code CODE)"
        )?,
    }
    writeln!(out, "last push   {}", when(status.link.last_push_at))?;
    writeln!(out, "last pull   {}", when(status.link.last_pull_at))?;
    writeln!(
        out,
        "waiting     {} events ({} sent, {} rejected)",
        status.outbox.waiting, status.outbox.sent, status.outbox.rejected
    )?;
    let breaker = match status.breaker {
        Breaker::Closed => "closed (calls go through)".to_owned(),
        Breaker::HalfOpen => "half-open (the next cycle probes the server)".to_owned(),
        Breaker::Open { retry_in_ms } => format!(
            "open after {} failures; probing again in {} s",
            status.link.breaker.consecutive_failures,
            (retry_in_ms + 999) / 1000
        ),
    };
    writeln!(out, "breaker     {breaker}")?;
    if let Some(offset) = status.link.clock_offset_ms {
        let said = match clock::verdict(offset) {
            ClockVerdict::Ok => "in time with the server's".to_owned(),
            ClockVerdict::Warn | ClockVerdict::Fail => {
                format!("{}: {}", clock::describe(offset), clock::CLOCK_FIX)
            }
        };
        writeln!(
            out,
            "clock       {said} (as the server's answer of {} said)",
            when(status.link.clock_read_at)
        )?;
    }
    if let Some(error) = &status.link.last_error {
        writeln!(out, "last error  {error}")?;
    }
    if status.templates_by_space.is_empty() {
        writeln!(out, "templates   none")?;
    }
    for (space, n) in &status.templates_by_space {
        let note = if *space == status.running_space {
            "this box's embedder"
        } else {
            "not compared: `edge-agent reembed` or enrol again"
        };
        writeln!(out, "templates   {n} in {space} ({note})")?;
    }
    for rejected in &status.rejected {
        writeln!(
            out,
            "rejected    {} ({}): {}: {}",
            rejected.id, rejected.kind, rejected.code, rejected.reason
        )?;
    }
    Ok(())
}
