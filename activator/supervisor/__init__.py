"""The supervisor: the single owner of site state (see supervisor.py for how its parts fit)."""

from activator.supervisor.supervisor import Lease, Supervisor

__all__ = ["Lease", "Supervisor"]
