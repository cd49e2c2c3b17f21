//! `ifx service`: run the node as a systemd service. `unit` prints the unit file, `install`
//! writes it (and, unless told not to, enables and starts it). The node logs to stderr, which
//! systemd hands to the journal (`journalctl -u ifx`); SIGTERM stops it cleanly.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::Context;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum ServiceCommand {
    /// Print the systemd unit that runs this binary as a node.
    Unit(UnitArgs),
    /// Write the unit to the unit dir, then `systemctl daemon-reload` and `enable --now` it.
    Install {
        #[command(flatten)]
        unit: UnitArgs,
        /// Where unit files go.
        #[arg(long, default_value = "/etc/systemd/system")]
        unit_dir: PathBuf,
        /// Only write the unit: no systemctl.
        #[arg(long)]
        no_start: bool,
    },
}

/// What the unit runs.
#[derive(clap::Args)]
pub struct UnitArgs {
    /// The node's config file (`ifx config show > FILE` writes one with every key).
    #[arg(long, default_value = "/etc/ifx/config.toml")]
    pub config: PathBuf,
    /// The user the node runs as (not root: it needs none of root's rights).
    #[arg(long, default_value = "ifx")]
    pub user: String,
    /// The unit's name.
    #[arg(long, default_value = "ifx")]
    pub name: String,
}

/// The unit file for running `exe` with `a`'s config as `a.user`, keeping state in `data_dir`.
pub fn unit(exe: &Path, a: &UnitArgs, data_dir: &Path) -> String {
    format!(
        "# Written by `ifx service install`. Logs: journalctl -u {name}. Health: ifx doctor --config {config}\n\
         [Unit]\n\
         Description=ifx node: a peer of the decentralized GPU network\n\
         Wants=network-online.target time-sync.target\n\
         After=network-online.target time-sync.target\n\
         \n\
         [Service]\n\
         Type=exec\n\
         User={user}\n\
         ExecStart={exe} node --config {config}\n\
         # SIGTERM: the node finishes what it writes and leaves the network.\n\
         KillSignal=SIGTERM\n\
         TimeoutStopSec=30\n\
         Restart=on-failure\n\
         RestartSec=10\n\
         LimitNOFILE=65536\n\
         # The GPU's device nodes belong to these groups on most distributions.\n\
         SupplementaryGroups=video render\n\
         # Nothing but its data dir is writable; no new privileges, no home directories.\n\
         NoNewPrivileges=yes\n\
         ProtectSystem=strict\n\
         ProtectHome=yes\n\
         PrivateTmp=yes\n\
         {data}\n\
         UMask=0077\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        name = a.name,
        user = a.user,
        exe = exe.display(),
        config = a.config.display(),
        data = writable(data_dir),
    )
}

/// The unit's lines that let the node write its data dir: under /var/lib, a state directory
/// systemd creates for the user (mode 0700); elsewhere, the dir (which must exist, owned by the
/// user).
fn writable(data_dir: &Path) -> String {
    match data_dir.strip_prefix("/var/lib") {
        Ok(rest) if !rest.as_os_str().is_empty() => {
            format!("StateDirectory={}\nStateDirectoryMode=0700", rest.display())
        }
        _ => format!("ReadWritePaths={}", data_dir.display()),
    }
}

/// The data dir the config names: the unit lets the node write there and nowhere else.
fn data_dir(config: &Path) -> anyhow::Result<PathBuf> {
    anyhow::ensure!(
        config.exists(),
        "{0} does not exist: write it first, e.g. ifx config show --data-dir /var/lib/ifx > {0}",
        config.display()
    );
    let cfg = ifx_node::NodeConfig::load(Some(config), &Default::default())?;
    let dir = cfg.node.data_dir;
    anyhow::ensure!(dir.is_absolute(), "node.data_dir {} must be an absolute path for a service", dir.display());
    anyhow::ensure!(dir.to_str().is_some_and(plain_path), "node.data_dir {dir:?}: {UNPLAIN}");
    Ok(dir)
}

/// Refuses what would not stay one plain token of the unit file: a unit name or user that
/// could leave the unit dir or add a line, and a path with whitespace, a control character, a
/// quote, a backslash or a `%` (a systemd specifier).
fn check(a: &UnitArgs, exe: &Path) -> anyhow::Result<()> {
    let plain = |s: &str, extra: &str| {
        !s.is_empty()
            && s.len() <= 64
            && !s.starts_with(['-', '.'])
            && s.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
    };
    anyhow::ensure!(
        plain(&a.name, "_.@:-"),
        "--name {:?}: letters, digits and _ . @ : - only (a systemd unit name)",
        a.name
    );
    anyhow::ensure!(plain(&a.user, "_.-"), "--user {:?}: letters, digits and _ . - only (a user name)", a.user);
    for p in [exe, a.config.as_path()] {
        anyhow::ensure!(p.to_str().is_some_and(plain_path), "{p:?}: {UNPLAIN}");
    }
    Ok(())
}

const UNPLAIN: &str =
    "a path in a unit file must be UTF-8 without whitespace, control characters, quotes, backslashes or %";

/// Whether a path stays one plain token of a unit file's line.
fn plain_path(text: &str) -> bool {
    !text.chars().any(|c| c.is_whitespace() || c.is_control() || "\"\\%".contains(c))
}

pub fn run(command: ServiceCommand) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("finding this binary")?;
    match &command {
        ServiceCommand::Unit(a) | ServiceCommand::Install { unit: a, .. } => check(a, &exe)?,
    }
    match command {
        ServiceCommand::Unit(a) => {
            print!("{}", unit(&exe, &a, &data_dir(&a.config)?));
        }
        ServiceCommand::Install { unit: a, unit_dir, no_start } => {
            anyhow::ensure!(
                a.user != "root",
                "--user root: a node needs none of root's rights; give it a user of its own"
            );
            let text = unit(&exe, &a, &data_dir(&a.config)?);
            let path = unit_dir.join(format!("{}.service", a.name));
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
            let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
            if !passwd.lines().any(|l| l.split(':').next() == Some(a.user.as_str())) {
                println!(
                    "note: there is no user {0} yet: useradd --system --home-dir /var/lib/ifx --create-home {0}",
                    a.user
                );
            }
            if !no_start {
                for args in [vec!["daemon-reload"], vec!["enable", "--now", &a.name]] {
                    let ok = Command::new("systemctl").args(&args).status().context("running systemctl")?.success();
                    anyhow::ensure!(ok, "systemctl {} failed", args.join(" "));
                }
                println!("started: systemctl status {0}; logs: journalctl -u {0} -f", a.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
