//! `hetflow launch`: runs `run`, `bench`, `profile` or `train` (data
//! parallel, `src/cli/train_job.rs`) as one job over several
//! processes (one per host) through `mpirun` or `srun`.
//!
//! It composes the launcher's command line and runs it (or prints it with
//! `--dry-run`); every process runs this same binary with the same
//! arguments and `HETFLOW_MPI=1`, which makes the subcommand join the job
//! (`src/cli/cluster.rs`; rank 0 reads the files and runs, the others
//! serve, see [`hetflow::cluster`]).
//!
//! * `--np N`: N processes on this machine (`--oversubscribe` when N is
//!   more than its cores, loopback TCP between them).
//! * `--hostfile FILE`: DeepSpeed's format, one host per line,
//!   `HOST slots=N [devices=SPEC]`, `#` comments. One process per host
//!   (`slots` is what the host offers, as in DeepSpeed; hetflow runs one
//!   process that drives all of a host's devices). When hosts list
//!   different `devices`, the job is MPMD: one application context per
//!   host, each with its own `HETFLOW_DEVICES` (the device list with `+`
//!   for `,`, which srun's `--export` reserves).
//! * `--launcher srun` (the default when `SLURM_JOB_ID` is set): `srun
//!   --mpi=pmix`, one task per node.
//! * As root, `mpirun` gets `--allow-run-as-root` (only then).
//! * The environment that shapes a run (`HETFLOW_*`, `RUST_LOG`,
//!   `RUST_BACKTRACE`, `POCL_*`) is exported to every rank.
//! * Each `mpirun` job gets its own session directory on this machine
//!   (`TMPDIR` set to a fresh `hetflow-launch-PID` folder, removed after
//!   the job). Open MPI 4 keeps its per-job files under one shared
//!   `ompi.HOST.UID` folder and removes that folder when the last job in
//!   it ends, so two jobs started at once on one machine could race: one
//!   removing the folder while the other was making its own inside it
//!   (`ORTE_ERROR_LOG ... session_dir.c`). Remote hosts' daemons keep
//!   their own `TMPDIR`.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Launcher {
    Mpirun,
    Srun,
}

#[derive(clap::Args)]
pub struct Args {
    /// Number of processes, all on this machine.
    #[arg(long, conflicts_with = "hostfile")]
    np: Option<usize>,
    /// Hosts, one per line: `HOST slots=N [devices=SPEC]` (DeepSpeed's
    /// format); one process per host.
    #[arg(long)]
    hostfile: Option<PathBuf>,
    /// How to start the processes (default: srun under Slurm, else mpirun).
    #[arg(long, value_enum)]
    launcher: Option<Launcher>,
    /// Print the launcher's command line instead of running it.
    #[arg(long)]
    dry_run: bool,
    /// An extra argument for the launcher, before the program (repeat).
    #[arg(long = "launcher-arg", allow_hyphen_values = true)]
    launcher_args: Vec<String>,
    /// The subcommand to run as one job, and its arguments (after `--`).
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// A host of the hostfile.
#[derive(Clone, Debug, PartialEq)]
pub struct Host {
    pub name: String,
    pub slots: usize,
    pub devices: Option<String>,
    /// Its line in the hostfile (1-based), for errors.
    pub line: usize,
}

/// Parses a DeepSpeed-style hostfile; errors name the file and line.
pub fn parse_hostfile(text: &str, path: &Path) -> Result<Vec<Host>> {
    let mut hosts: Vec<Host> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let mut parts = line.split_whitespace();
        let name = parts.next().unwrap_or_default();
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            bail!(
                "{}: host name '{}' has characters outside [A-Za-z0-9._-]",
                at(),
                name.escape_default()
            );
        }
        let mut host = Host {
            name: name.to_string(),
            slots: 1,
            devices: None,
            line: i + 1,
        };
        for kv in parts {
            let (k, v) = kv.split_once('=').with_context(|| {
                format!(
                    "{}: expected key=value, got '{}'",
                    at(),
                    kv.escape_default()
                )
            })?;
            match k {
                "slots" => {
                    host.slots = v
                        .parse::<usize>()
                        .ok()
                        .filter(|&s| (1..=4096).contains(&s))
                        .with_context(|| {
                            format!(
                                "{}: slots must be a number from 1 to 4096, got '{}'",
                                at(),
                                v.escape_default()
                            )
                        })?;
                }
                "devices" => {
                    hetflow::devices::parse_device_list(v)
                        .with_context(|| format!("{}: devices", at()))?;
                    host.devices = Some(v.to_string());
                }
                other => bail!(
                    "{}: unknown key '{}' (known: slots, devices)",
                    at(),
                    other.escape_default()
                ),
            }
        }
        if hosts.iter().any(|h| h.name == host.name) {
            bail!("{}: host '{}' is listed twice", at(), host.name);
        }
        hosts.push(host);
    }
    if hosts.is_empty() {
        bail!("{}: no hosts", path.display());
    }
    Ok(hosts)
}

/// What the ranks need from the launching environment.
fn exported_env() -> Vec<String> {
    let mut names: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| {
            k.starts_with("HETFLOW_")
                || k.starts_with("POCL_")
                || k == "RUST_LOG"
                || k == "RUST_BACKTRACE"
        })
        .filter(|k| k != "HETFLOW_MPI" && k != "HETFLOW_DEVICES")
        .collect();
    names.sort();
    names
}

/// The inputs of a launch line, apart from the environment.
pub struct Plan<'a> {
    pub launcher: Launcher,
    pub np: Option<usize>,
    pub hosts: Option<(&'a Path, &'a [Host])>,
    pub root: bool,
    pub local_cores: usize,
    pub env: &'a [String],
    pub extra: &'a [String],
    pub program: &'a str,
    pub command: &'a [String],
}

/// Composes the launcher's command line (argv).
pub fn compose(p: &Plan) -> Result<Vec<String>> {
    let s = |x: &str| x.to_string();
    let mut argv: Vec<String> = Vec::new();
    let program = || {
        let mut v = vec![p.program.to_string()];
        v.extend(p.command.iter().cloned());
        v
    };
    let hetero = p
        .hosts
        .map(|(_, hs)| hs.iter().any(|h| h.devices != hs[0].devices))
        .unwrap_or(false);
    match p.launcher {
        Launcher::Mpirun => {
            argv.push(s("mpirun"));
            if p.root {
                argv.push(s("--allow-run-as-root"));
            }
            let env_args = |argv: &mut Vec<String>, devices: Option<&str>| {
                argv.extend([s("-x"), s("HETFLOW_MPI=1")]);
                if let Some(d) = devices {
                    argv.extend([s("-x"), format!("HETFLOW_DEVICES={}", d.replace(',', "+"))]);
                }
                for e in p.env {
                    argv.extend([s("-x"), e.clone()]);
                }
            };
            match (p.np, p.hosts) {
                (Some(n), None) => {
                    if n > p.local_cores {
                        argv.push(s("--oversubscribe"));
                    }
                    // Ranks on one machine talk over loopback TCP, which
                    // works in every container (shared-memory transports
                    // need ptrace rights some lack).
                    argv.extend(
                        [
                            "--mca",
                            "btl",
                            "tcp,self",
                            "--mca",
                            "btl_tcp_if_include",
                            "lo",
                        ]
                        .map(s),
                    );
                    argv.extend(p.extra.iter().cloned());
                    argv.extend([s("-np"), n.to_string()]);
                    env_args(&mut argv, None);
                    argv.extend(program());
                }
                (None, Some((_, hosts))) if !hetero => {
                    // The hosts by name, not our hostfile: Open MPI's
                    // parser refuses its `devices=` key.
                    let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
                    argv.extend(p.extra.iter().cloned());
                    argv.extend([
                        s("-H"),
                        names.join(","),
                        s("--map-by"),
                        s("ppr:1:node"),
                        s("-np"),
                        hosts.len().to_string(),
                    ]);
                    env_args(&mut argv, hosts[0].devices.as_deref());
                    argv.extend(program());
                }
                (None, Some((_, hosts))) => {
                    argv.extend(p.extra.iter().cloned());
                    for (i, h) in hosts.iter().enumerate() {
                        if i > 0 {
                            argv.push(s(":"));
                        }
                        argv.extend([s("-np"), s("1"), s("-H"), h.name.clone()]);
                        env_args(&mut argv, h.devices.as_deref());
                        argv.extend(program());
                    }
                }
                _ => bail!("give --np N or --hostfile FILE"),
            }
        }
        Launcher::Srun => {
            argv.extend([s("srun"), s("--mpi=pmix")]);
            argv.extend(p.extra.iter().cloned());
            let export = |devices: Option<&str>| {
                let mut e = s("--export=ALL,HETFLOW_MPI=1");
                if let Some(d) = devices {
                    e.push_str(&format!(",HETFLOW_DEVICES={}", d.replace(',', "+")));
                }
                e
            };
            match (p.np, p.hosts) {
                (Some(n), None) => {
                    argv.extend([format!("--ntasks={n}"), export(None)]);
                    argv.extend(program());
                }
                (None, Some((_, hosts))) if !hetero => {
                    let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
                    argv.extend([
                        format!("--nodes={}", hosts.len()),
                        format!("--ntasks={}", hosts.len()),
                        s("--ntasks-per-node=1"),
                        format!("--nodelist={}", names.join(",")),
                        export(hosts[0].devices.as_deref()),
                    ]);
                    argv.extend(program());
                }
                (None, Some((_, hosts))) => {
                    // A heterogeneous job step: one component per host.
                    for (i, h) in hosts.iter().enumerate() {
                        if i > 0 {
                            argv.push(s(":"));
                        }
                        argv.extend([
                            s("--nodes=1"),
                            s("--ntasks=1"),
                            format!("--nodelist={}", h.name),
                            export(h.devices.as_deref()),
                        ]);
                        argv.extend(program());
                    }
                }
                _ => bail!("give --np N or --hostfile FILE"),
            }
        }
    }
    Ok(argv)
}

/// How long a host has to answer the reachability probe.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Checks, before any work starts, that every host of the hostfile that
/// `mpirun` will reach over ssh can be reached: its name resolves and,
/// when `mpirun` starts ranks with ssh (Open MPI's default rsh agent),
/// something accepts a TCP connection on its ssh port
/// (`HETFLOW_SSH_PORT`, default 22) within 3 s. Hosts that name this
/// machine are skipped, as `mpirun` starts those ranks itself; with
/// another agent (`OMPI_MCA_plm_rsh_agent` or `--launcher-arg` naming
/// `plm_rsh_agent`) only the name is checked. Hosts are probed in
/// parallel, so a job waits at most 3 s here. `HETFLOW_LAUNCH_NO_PROBE=1`
/// skips the probe.
fn probe_hosts(hosts: &[Host], file: &Path, extra: &[String]) -> Result<()> {
    if std::env::var_os("HETFLOW_LAUNCH_NO_PROBE").is_some() {
        return Ok(());
    }
    let agent_is_ssh = match std::env::var("OMPI_MCA_plm_rsh_agent") {
        Ok(a) => a.trim().is_empty() || a.trim_start().starts_with("ssh"),
        Err(_) => true,
    } && !extra.iter().any(|x| x.contains("plm_rsh_agent"));
    let port: u16 = match std::env::var("HETFLOW_SSH_PORT") {
        Ok(v) => v.parse().ok().filter(|&p| p > 0).with_context(|| {
            format!(
                "HETFLOW_SSH_PORT must be a port from 1 to 65535, got '{}'",
                v.escape_default()
            )
        })?,
        Err(_) => 22,
    };
    let me = local_names();
    let remote: Vec<&Host> = hosts
        .iter()
        .filter(|h| !me.iter().any(|m| m.eq_ignore_ascii_case(&h.name)))
        .collect();
    let probes: Vec<_> = remote
        .iter()
        .map(|h| {
            let name = h.name.clone();
            std::thread::spawn(move || probe_host(&name, port, agent_is_ssh))
        })
        .collect();
    for (h, p) in remote.iter().zip(probes) {
        let verdict = p
            .join()
            .unwrap_or_else(|_| Err("the probe thread failed".into()));
        if let Err(why) = verdict {
            bail!(
                "{}:{}: host '{}' is unreachable: {why} (nothing was started; HETFLOW_LAUNCH_NO_PROBE=1 skips this check)",
                file.display(),
                h.line,
                h.name
            );
        }
    }
    Ok(())
}

/// Resolves `name` and, when ranks start over ssh, connects to `port`.
fn probe_host(name: &str, port: u16, connect: bool) -> std::result::Result<(), String> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<std::net::SocketAddr> = (name, port)
        .to_socket_addrs()
        .map_err(|e| format!("its name does not resolve ({e})"))?
        .collect();
    if addrs.is_empty() {
        return Err("its name resolves to no address".into());
    }
    if !connect {
        return Ok(());
    }
    let mut last = String::new();
    for a in &addrs {
        match std::net::TcpStream::connect_timeout(a, PROBE_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    Err(format!(
        "nothing accepts connections on its ssh port {port} ({last}); mpirun starts remote ranks over ssh (HETFLOW_SSH_PORT names another port)"
    ))
}

/// The names `mpirun` treats as this machine.
fn local_names() -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim().to_string();
        if let Some(short) = h.split('.').next() {
            names.push(short.to_string());
        }
        names.push(h);
    }
    names
}

/// A shell-safe rendering of argv for `--dry-run`.
fn shell_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_=./:,@%+".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

pub fn main(a: Args) -> Result<()> {
    let sub = a.command.first().map(String::as_str).unwrap_or("");
    if !matches!(sub, "run" | "bench" | "profile" | "train") {
        bail!(
            "launch runs `run`, `bench`, `profile` or `train` as a job, not '{}' (plan, simulate and devices run on one machine)",
            sub.escape_default()
        );
    }
    if a.np == Some(0) || a.np.is_some_and(|n| n > 4096) {
        bail!("--np must be from 1 to 4096");
    }
    let hosts = match &a.hostfile {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading hostfile '{}'", f.display()))?;
            Some(parse_hostfile(&text, f)?)
        }
        None => None,
    };
    if a.np.is_none() && hosts.is_none() {
        bail!("give --np N (processes on this machine) or --hostfile FILE");
    }
    let launcher = a
        .launcher
        .unwrap_or(if std::env::var_os("SLURM_JOB_ID").is_some() {
            Launcher::Srun
        } else {
            Launcher::Mpirun
        });
    let exe = std::env::current_exe().context("locating the hetflow binary")?;
    let env = exported_env();
    let argv = compose(&Plan {
        launcher,
        np: a.np,
        hosts: hosts
            .as_ref()
            .zip(a.hostfile.as_deref())
            .map(|(h, f)| (f, h.as_slice())),
        root: running_as_root(),
        local_cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        env: &env,
        extra: &a.launcher_args,
        program: &exe.display().to_string(),
        command: &a.command,
    })?;
    if a.dry_run {
        println!("{}", shell_line(&argv));
        return Ok(());
    }
    if !cfg!(feature = "mpi") {
        bail!(
            "this hetflow was built without MPI: rebuild with `cargo build --release --features mpi` (needs Open MPI and libclang: bash scripts/setup.sh --mpi)"
        );
    }
    if let (Some(hs), Some(f), Launcher::Mpirun) = (&hosts, &a.hostfile, launcher) {
        probe_hosts(hs, f, &a.launcher_args)?;
    }
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]).stderr(std::process::Stdio::piped());
    let session = match launcher {
        Launcher::Mpirun => Some(SessionDir::new()?),
        Launcher::Srun => None,
    };
    if let Some(s) = &session {
        cmd.env("TMPDIR", &s.0);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {} (is it installed and on PATH?)", argv[0]))?;
    let verbose = std::env::var_os("HETFLOW_LAUNCH_VERBOSE").is_some();
    let stderr = child.stderr.take().context("launcher stderr")?;
    let relay = std::thread::spawn(move || relay_stderr(stderr, verbose));
    let status = child.wait().context("waiting for the launcher")?;
    let died = relay.join().unwrap_or(None);
    if !status.success() {
        if let Some(d) = died {
            bail!("{}", d.describe(plan_of(&a.command).as_ref()));
        }
        bail!(
            "the job failed ({} exited with {}; HETFLOW_LAUNCH_VERBOSE=1 shows its own messages)",
            argv[0],
            status
                .code()
                .map(|c| format!("status {c}"))
                .unwrap_or_else(|| "a signal".into())
        );
    }
    Ok(())
}

/// This launch's own temporary folder, removed when dropped (see the
/// module docs: concurrent `mpirun` jobs must not share a session
/// directory).
struct SessionDir(PathBuf);

impl SessionDir {
    fn new() -> Result<Self> {
        let d = std::env::temp_dir().join(format!("hetflow-launch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d)
            .with_context(|| format!("creating the job's session folder '{}'", d.display()))?;
        Ok(Self(d))
    }
}

impl Drop for SessionDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A rank the launcher saw die.
#[derive(Debug, PartialEq)]
pub struct Died {
    pub rank: usize,
    pub host: String,
    pub how: String,
}

impl Died {
    /// Parses Open MPI's report of a dead rank: `mpirun noticed that
    /// process rank 1 with PID 0 on node vm exited on signal 9 (Killed).`
    pub fn parse(line: &str) -> Option<Died> {
        let rest = line
            .trim()
            .strip_prefix("mpirun noticed that process rank ")?;
        let (rank, rest) = rest.split_once(' ')?;
        let rest = rest.split_once(" on node ")?.1;
        let (host, how) = rest.split_once(' ')?;
        Some(Died {
            rank: rank.parse().ok()?,
            host: host.to_string(),
            how: how.trim_end_matches('.').to_string(),
        })
    }

    /// One line: the rank, its host, how it ended and the plan stages it
    /// ran.
    pub fn describe(&self, plan: Option<&hetflow::Plan>) -> String {
        let mut s = format!("rank {} (host {}) {}", self.rank, self.host, self.how);
        if let Some(p) = plan {
            let mine: Vec<String> = p
                .stages
                .iter()
                .enumerate()
                .filter(|(_, st)| {
                    p.devices.get(st.device).is_some_and(|d| {
                        hetflow::runtime::net::split_host(d).is_some_and(|(h, _)| {
                            h == format!("rank{}", self.rank) || h == self.host
                        })
                    })
                })
                .map(|(i, st)| format!("stage {i} on {}", p.devices[st.device]))
                .collect();
            if !mine.is_empty() {
                s.push_str(&format!(" while running {}", mine.join(", ")));
            }
        }
        s.push_str("; the job was stopped");
        s
    }
}

/// The plan named by `--plan` in the subcommand, if readable.
fn plan_of(command: &[String]) -> Option<hetflow::Plan> {
    let i = command.iter().position(|a| a == "--plan")?;
    let text = std::fs::read_to_string(command.get(i + 1)?).ok()?;
    hetflow::Plan::from_json(&text).ok()
}

/// Forwards the job's stderr line by line; Open MPI's framed help
/// messages (between lines of dashes) are dropped unless `verbose`.
/// Returns the dead rank Open MPI reported, if any.
fn relay_stderr(from: std::process::ChildStderr, verbose: bool) -> Option<Died> {
    use std::io::{BufRead, Write};
    let mut died = None;
    let mut in_block = false;
    let err = std::io::stderr();
    for line in std::io::BufReader::new(from).lines() {
        let Ok(line) = line else { break };
        if died.is_none() {
            died = Died::parse(&line);
        }
        let frame = line.len() >= 20 && line.chars().all(|c| c == '-');
        let mpi_noise = in_block || frame || line.starts_with('[') && line.contains("help message");
        if frame {
            in_block = !in_block;
        }
        if !mpi_noise || verbose {
            let _ = writeln!(err.lock(), "{line}");
        }
    }
    died
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<Host> {
        parse_hostfile(
            "# three unlike hosts\nnode-a slots=1 devices=cpu\nnode-b slots=2 devices=cpu:0,opencl:0\n\nnode-c slots=8 devices=cuda:0,cpu # gpu box\n",
            Path::new("hosts"),
        )
        .unwrap()
    }

    fn line(launcher: Launcher, np: Option<usize>, h: Option<&[Host]>, root: bool) -> String {
        let env = vec!["HETFLOW_TPU".to_string()];
        let cmd = vec![
            "run".to_string(),
            "m.onnx".into(),
            "--plan".into(),
            "p.json".into(),
        ];
        shell_line(
            &compose(&Plan {
                launcher,
                np,
                hosts: h.map(|h| (Path::new("hosts"), h)),
                root,
                local_cores: 2,
                env: &env,
                extra: &[],
                program: "/bin/hetflow",
                command: &cmd,
            })
            .unwrap(),
        )
    }

    #[test]
    fn hostfiles_parse_and_bad_ones_name_the_line() {
        let h = hosts();
        assert_eq!(h.len(), 3);
        assert_eq!(h[1].slots, 2);
        assert_eq!(h[2].devices.as_deref(), Some("cuda:0,cpu"));
        for (text, want) in [
            ("a slots=x", "hosts:1: slots"),
            ("a slots=1\nb slots=0", "hosts:2: slots"),
            ("a slots=1\na slots=2", "listed twice"),
            ("a gpus=2", "unknown key 'gpus'"),
            ("a devices=fpga:0", "hosts:1: devices"),
            ("a;rm slots=1", "characters outside"),
            ("# empty\n", "no hosts"),
        ] {
            let e = format!(
                "{:#}",
                parse_hostfile(text, Path::new("hosts")).unwrap_err()
            );
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn mpirun_lines() {
        assert_eq!(
            line(Launcher::Mpirun, Some(4), None, true),
            "mpirun --allow-run-as-root --oversubscribe --mca btl tcp,self --mca btl_tcp_if_include lo -np 4 -x HETFLOW_MPI=1 -x HETFLOW_TPU /bin/hetflow run m.onnx --plan p.json"
        );
        assert_eq!(
            line(Launcher::Mpirun, Some(2), None, false),
            "mpirun --mca btl tcp,self --mca btl_tcp_if_include lo -np 2 -x HETFLOW_MPI=1 -x HETFLOW_TPU /bin/hetflow run m.onnx --plan p.json"
        );
        // Unlike hosts: MPMD, one context per host with its devices.
        assert_eq!(
            line(Launcher::Mpirun, None, Some(&hosts()), false),
            "mpirun -np 1 -H node-a -x HETFLOW_MPI=1 -x HETFLOW_DEVICES=cpu -x HETFLOW_TPU /bin/hetflow run m.onnx --plan p.json \
             : -np 1 -H node-b -x HETFLOW_MPI=1 -x HETFLOW_DEVICES=cpu:0+opencl:0 -x HETFLOW_TPU /bin/hetflow run m.onnx --plan p.json \
             : -np 1 -H node-c -x HETFLOW_MPI=1 -x HETFLOW_DEVICES=cuda:0+cpu -x HETFLOW_TPU /bin/hetflow run m.onnx --plan p.json"
        );
        // Alike hosts: one context over the hostfile, one rank per node.
        let alike = parse_hostfile("a slots=4\nb slots=4\n", Path::new("hosts")).unwrap();
        assert_eq!(
            line(Launcher::Mpirun, None, Some(&alike), false),
            "mpirun -H a,b --map-by ppr:1:node -np 2 -x HETFLOW_MPI=1 -x HETFLOW_TPU /bin/hetflow run m.onnx --plan p.json"
        );
    }

    #[test]
    fn a_dead_rank_is_named_with_its_stage() {
        let d = Died::parse(
            "mpirun noticed that process rank 1 with PID 0 on node vm exited on signal 9 (Killed).",
        )
        .unwrap();
        assert_eq!(
            d,
            Died {
                rank: 1,
                host: "vm".into(),
                how: "exited on signal 9 (Killed)".into()
            }
        );
        let g = {
            use hetflow::ops::{DType, Dim, Graph, Op};
            let mut g = Graph::default();
            let x = g.add_input("x", DType::F32, vec![Dim::Known(2)]);
            let y = g.add_node("a", Op::Unary(hetflow::ops::op::UnaryOp::Relu), &[x], 1)[0];
            let z = g.add_node("b", Op::Unary(hetflow::ops::op::UnaryOp::Relu), &[y], 1)[0];
            g.add_output(z);
            g.finish().unwrap()
        };
        let plan = hetflow::Plan::from_placement(
            &g,
            vec!["rank0/cpu:0".into(), "rank1/cpu:0".into()],
            vec![0, 1],
        );
        assert_eq!(
            d.describe(Some(&plan)),
            "rank 1 (host vm) exited on signal 9 (Killed) while running stage 1 on rank1/cpu:0; the job was stopped"
        );
        assert!(Died::parse("rank 1 said hello").is_none());
    }

    #[test]
    fn srun_lines() {
        assert_eq!(
            line(Launcher::Srun, None, Some(&hosts()), true),
            "srun --mpi=pmix --nodes=1 --ntasks=1 --nodelist=node-a --export=ALL,HETFLOW_MPI=1,HETFLOW_DEVICES=cpu /bin/hetflow run m.onnx --plan p.json \
             : --nodes=1 --ntasks=1 --nodelist=node-b --export=ALL,HETFLOW_MPI=1,HETFLOW_DEVICES=cpu:0+opencl:0 /bin/hetflow run m.onnx --plan p.json \
             : --nodes=1 --ntasks=1 --nodelist=node-c --export=ALL,HETFLOW_MPI=1,HETFLOW_DEVICES=cuda:0+cpu /bin/hetflow run m.onnx --plan p.json"
        );
        assert_eq!(
            line(Launcher::Srun, Some(3), None, false),
            "srun --mpi=pmix --ntasks=3 --export=ALL,HETFLOW_MPI=1 /bin/hetflow run m.onnx --plan p.json"
        );
    }
}
