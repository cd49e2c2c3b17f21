//! `[work]`, sans I/O but for reading `/proc`: when this node may work. Work hours ("HH:MM-HH:MM"
//! in the operator's UTC offset, wrapping midnight if the end is earlier), and idle-only mode:
//! the node pauses as soon as one sample finds the machine's other processes above a share of
//! its CPUs, or someone typing at one of its terminals, and resumes after a quiet period
//! without either (a game or a compile pauses it at once; a short burst does not make it flap).

use std::fmt;
use std::time::Duration;

use ifx_protocols::InvalidValue;

/// Minutes in a day.
const DAY_MIN: u32 = 24 * 60;

/// The hours the operator lets the node work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkHours {
    /// Minutes after local midnight: work from `start` (inclusive) to `end` (exclusive).
    pub start: u32,
    pub end: u32,
    /// The operator's offset from UTC, in minutes.
    pub offset: i32,
}

fn hhmm(v: &str) -> Option<u32> {
    let (h, m) = v.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && v.trim().len() == 5).then_some(h * 60 + m)
}

impl WorkHours {
    /// `hours` as "HH:MM-HH:MM" and `offset` as "+HH:MM" or "-HH:MM"; `None` for empty hours
    /// (always work). The error names the key.
    pub fn parse(hours: &str, offset: &str) -> Result<Option<Self>, InvalidValue> {
        if hours.trim().is_empty() {
            return Ok(None);
        }
        let bad_hours =
            || InvalidValue::new("work.hours", format!("{hours:?}: not \"HH:MM-HH:MM\" (e.g. \"22:00-07:00\")"));
        let (a, b) = hours.split_once('-').ok_or_else(bad_hours)?;
        let (start, end) = (hhmm(a).ok_or_else(bad_hours)?, hhmm(b).ok_or_else(bad_hours)?);
        if start == end {
            return Err(InvalidValue::new(
                "work.hours",
                format!("{hours:?}: an empty window (leave it empty to always work)"),
            ));
        }
        let bad_offset = || InvalidValue::new("work.utc_offset", format!("{offset:?}: not \"+HH:MM\" or \"-HH:MM\""));
        let sign = match offset.chars().next() {
            Some('+') => 1,
            Some('-') => -1,
            _ => return Err(bad_offset()),
        };
        let m = hhmm(&offset[1..]).filter(|m| *m <= 14 * 60).ok_or_else(bad_offset)?;
        Ok(Some(Self { start, end, offset: sign * m as i32 }))
    }

    /// Whether `unix_ms` falls in the work hours.
    pub fn works_at(&self, unix_ms: u64) -> bool {
        let utc_min = (unix_ms / 60_000 % DAY_MIN as u64) as i64;
        let local = (utc_min + self.offset as i64).rem_euclid(DAY_MIN as i64) as u32;
        if self.start < self.end {
            (self.start..self.end).contains(&local)
        } else {
            local >= self.start || local < self.end
        }
    }
}

impl fmt::Display for WorkHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.offset < 0 { '-' } else { '+' };
        let o = self.offset.unsigned_abs();
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02} (UTC{sign}{:02}:{:02})",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60,
            o / 60,
            o % 60
        )
    }
}

/// Idle-only mode's rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdleRule {
    /// A sample is busy when other processes use more than this share of all CPUs, percent.
    pub busy_pct: u32,
    /// Resume after this long without a busy sample.
    pub quiet: Duration,
}

/// What made the machine busy last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Busy {
    /// Other processes' CPU use, percent of all CPUs.
    Cpu(u32),
    /// Someone typed at a terminal.
    Terminal,
}

/// What idle-only mode remembers: when the machine was last busy, and why.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdleState {
    last_busy_ms: Option<u64>,
    why: Option<Busy>,
}

impl IdleState {
    /// Takes a sample (`others_pct` of all CPUs used by other processes at `now_ms`); whether
    /// the node should be paused.
    pub fn observe(&mut self, rule: &IdleRule, others_pct: u32, now_ms: u64) -> bool {
        if others_pct > rule.busy_pct {
            self.busy(now_ms, Busy::Cpu(others_pct));
        }
        self.last_busy_ms.is_some_and(|t| now_ms.saturating_sub(t) < rule.quiet.as_millis() as u64)
    }

    /// Notes terminal input at `at_ms` (the quiet period runs from the last input).
    pub fn input(&mut self, at_ms: u64) {
        self.busy(at_ms, Busy::Terminal);
    }

    fn busy(&mut self, at_ms: u64, why: Busy) {
        if self.last_busy_ms.is_none_or(|t| at_ms >= t) {
            self.last_busy_ms = Some(at_ms);
            self.why = Some(why);
        }
    }

    /// What made the machine busy last.
    pub fn why(&self) -> Option<Busy> {
        self.why
    }
}

/// When someone last typed at a terminal of this machine (a console or an ssh session): the
/// newest access time of `/dev/pts/*` and `/dev/tty1` to `/dev/tty63`, which the kernel moves
/// forward when a program reads input from the terminal, in steps of 8 seconds (so that it
/// does not tell keystroke timing); `None` without any terminal. A graphical session's keyboard
/// and mouse are not seen here.
pub fn last_terminal_input_ms() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let pts = std::fs::read_dir("/dev/pts")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
        .map(|e| e.path());
    let vts = (1..=63).map(|i| std::path::PathBuf::from(format!("/dev/tty{i}")));
    pts.chain(vts)
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| (m.atime().max(0) as u64).saturating_mul(1000))
        .max()
}

/// When this node works.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub hours: Option<WorkHours>,
    pub idle: Option<IdleRule>,
}

/// CPU time from `/proc`: the machine's (all CPUs) and this process's, between two samples.
#[derive(Debug, Default)]
pub struct CpuSampler {
    last: Option<(u64, u64, u64)>,
}

/// (all CPU time, of it busy, this process's) in clock ticks.
fn read_ticks() -> std::io::Result<(u64, u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().unwrap_or_default();
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    // idle and iowait are not busy.
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    let me = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command (which may hold spaces) start after the last ')'.
    // After the state: ppid, pgrp, session, tty_nr, tpgid (may be -1), flags, four fault
    // counts, then utime and stime (fields 14 and 15 of the line).
    let after = me.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<i64> = after.split_whitespace().skip(1).map(|x| x.parse().unwrap_or(0)).collect();
    let tick = |i: usize| f.get(i).copied().unwrap_or(0).max(0) as u64;
    let mine = tick(10) + tick(11);
    Ok((total, total.saturating_sub(idle), mine))
}

/// The share of all CPUs (percent) that other processes used between two tick readings.
pub fn others_pct(before: (u64, u64, u64), after: (u64, u64, u64)) -> Option<u32> {
    let total = after.0.checked_sub(before.0).filter(|t| *t > 0)?;
    let busy = after.1.saturating_sub(before.1);
    let mine = after.2.saturating_sub(before.2);
    Some((busy.saturating_sub(mine) * 100 / total).min(100) as u32)
}

impl CpuSampler {
    /// The share of all CPUs other processes used since the last call (`None` the first time).
    pub fn sample(&mut self) -> std::io::Result<Option<u32>> {
        let now = read_ticks()?;
        let pct = self.last.and_then(|before| others_pct(before, now));
        self.last = Some(now);
        Ok(pct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A moved clock walks through the window's edges, across midnight and an offset.
    #[test]
    fn work_hours_wrap_midnight_in_the_operators_time() {
        let h = WorkHours::parse("22:00-07:00", "+01:00").unwrap().unwrap();
        assert_eq!(h.to_string(), "22:00-07:00 (UTC+01:00)");
        let at = |hh: u64, mm: u64| (3 * 86_400 + hh * 3600 + mm * 60) * 1000; // UTC
        assert!(!h.works_at(at(20, 59)), "21:59 local");
        assert!(h.works_at(at(21, 0)), "22:00 local");
        assert!(h.works_at(at(23, 30)), "00:30 local, the next day");
        assert!(h.works_at(at(5, 59)), "06:59 local");
        assert!(!h.works_at(at(6, 0)), "07:00 local");
        let day = WorkHours::parse("09:00-17:30", "-05:00").unwrap().unwrap();
        assert!(day.works_at(at(14, 0)) && !day.works_at(at(22, 30)) && day.works_at(at(22, 29)));
        assert_eq!(WorkHours::parse("", "+00:00").unwrap(), None);
        for (hours, offset) in [
            ("22-07", "+00:00"),
            ("24:00-07:00", "+00:00"),
            ("07:00-07:00", "+00:00"),
            ("01:00-02:00", "01:00"),
            ("01:00-02:00", "+15:00"),
        ] {
            assert!(WorkHours::parse(hours, offset).is_err(), "{hours} {offset}");
        }
    }

    /// Terminal input counts as busy, from the moment of the input; the later cause is the one
    /// given; an input seen late (an older time) does not move the quiet period back.
    #[test]
    fn terminal_input_is_busy_from_its_time() {
        let rule = IdleRule { busy_pct: 50, quiet: Duration::from_secs(20) };
        let mut s = IdleState::default();
        s.input(10_000);
        assert!(s.observe(&rule, 0, 12_000));
        assert_eq!(s.why(), Some(Busy::Terminal));
        assert!(s.observe(&rule, 90, 14_000));
        assert_eq!(s.why(), Some(Busy::Cpu(90)));
        s.input(11_000);
        assert_eq!(s.why(), Some(Busy::Cpu(90)), "an older input changes nothing");
        assert!(s.observe(&rule, 0, 33_999) && !s.observe(&rule, 0, 34_000));
    }

    /// One busy sample pauses; the pause lasts the quiet period past the last busy sample.
    #[test]
    fn idle_only_pauses_at_once_and_resumes_after_the_quiet_period() {
        let rule = IdleRule { busy_pct: 50, quiet: Duration::from_secs(60) };
        let mut s = IdleState::default();
        assert!(!s.observe(&rule, 10, 0));
        assert!(!s.observe(&rule, 50, 2_000), "at the threshold is not busy");
        assert!(s.observe(&rule, 51, 4_000));
        assert!(s.observe(&rule, 0, 63_999));
        assert!(s.observe(&rule, 80, 30_000));
        assert!(s.observe(&rule, 0, 89_999));
        assert!(!s.observe(&rule, 0, 90_000));
        // Ticks: 400 of all CPUs in the interval, 300 busy, 100 of them this process's.
        assert_eq!(others_pct((1_000, 500, 50), (1_400, 800, 150)), Some(50));
        assert_eq!(others_pct((1_000, 500, 50), (1_000, 500, 50)), None);
        assert_eq!(others_pct((1_000, 500, 50), (1_100, 700, 0)), Some(100));
    }

    #[test]
    fn this_machine_has_proc_stat() {
        let mut c = CpuSampler::default();
        assert_eq!(c.sample().unwrap(), None);
        std::thread::sleep(Duration::from_millis(50));
        assert!(c.sample().unwrap().is_some_and(|p| p <= 100));
    }
}
