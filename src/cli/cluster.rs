//! How `run` and `bench` join a multi-host job started by `hetflow
//! launch` (`HETFLOW_MPI=1` in the environment): [`hub`] opens the MPI
//! link; [`job`] runs the subcommand on rank 0 and serves it on the
//! others ([`hetflow::cluster`]).

use anyhow::Result;
use hetflow::runtime::net::Hub;
use std::sync::Arc;

/// The job's hub when this process is a rank of a launched job.
pub fn hub() -> Result<Option<Arc<Hub>>> {
    if std::env::var_os("HETFLOW_MPI").is_none() {
        return Ok(None);
    }
    #[cfg(feature = "mpi")]
    {
        Ok(Some(Hub::mpi()?))
    }
    #[cfg(not(feature = "mpi"))]
    {
        anyhow::bail!(
            "HETFLOW_MPI is set, but this hetflow was built without MPI: rebuild with `cargo build --release --features mpi`"
        )
    }
}

/// Runs `root` (the subcommand, given the hub when there is one) on rank
/// 0 or outside a job; serves the root's sessions on the other ranks.
pub fn job(root: impl FnOnce(Option<&Arc<Hub>>) -> Result<()>) -> Result<()> {
    let Some(hub) = hub()? else {
        return root(None);
    };
    let r = if hub.is_root() {
        let r = root(Some(&hub));
        let err = r.as_ref().err().map(|e| format!("{e:#}"));
        hetflow::cluster::end_jobs(&hub, err.as_deref())
            .map_err(anyhow::Error::from)
            .and(r)
    } else {
        hetflow::cluster::serve_jobs(&hub).map_err(|e| {
            anyhow::anyhow!("rank {} (host {}): {e}", hub.rank(), hub.host(hub.rank()))
        })
    };
    // Actors may still hold the hub; MPI is finalised here regardless.
    hub.shutdown();
    r
}

/// The plan of a multi-host run: `--plan` is required (its devices name
/// their hosts).
pub fn need_plan(hub: Option<&Arc<Hub>>, plan: Option<&hetflow::Plan>) -> Result<()> {
    if let (Some(h), None) = (hub, plan) {
        if h.size() > 1 {
            anyhow::bail!(
                "a job over {} ranks needs --plan: make one with `hetflow plan MODEL --cluster SPEC` on a cluster spec whose devices are named HOST/KIND:N (e.g. rank1/cpu:0), see docs/cluster.md",
                h.size()
            );
        }
    }
    Ok(())
}

/// Rank 0 of a multi-host job: checks that there is a plan (required
/// over more than one rank) and sends it with the model to the other
/// ranks.
pub fn share(
    hub: &Arc<Hub>,
    model: &std::path::Path,
    plan: Option<&hetflow::Plan>,
    credits: Option<usize>,
    threads: Option<usize>,
    trace: bool,
) -> Result<()> {
    need_plan(Some(hub), plan)?;
    if let Some(plan) = plan {
        hetflow::cluster::share_job(hub, model, plan, credits, threads, trace)?;
    }
    Ok(())
}
