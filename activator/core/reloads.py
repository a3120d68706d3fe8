"""What a reload of the config file changes (pure): sites added, removed, changed, and whether the change needs
a new container or only new settings. Sections a running activator cannot take on without a restart refuse it."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from activator.config import Config, SiteConfig

# Settings that are the container's own (its image, its limits, its network): changing one needs a new container,
# made beside the old one for a running site (a swap, as a deploy's).
CONTAINER_FIELDS = frozenset(
    {
        "image",
        "port",
        "kind",
        "memory",
        "command",
        "env",
        "cpus",
        "cpu_shares",
        "cap_add",
        "read_only",
        "network",
        "source",
    }
)
# Sections read once, at startup (listeners, Caddy's process, the holders' image): a reload that changes them
# is refused, and changes nothing.
RESTART_SECTIONS = ("server", "caddy", "holder", "editor", "backups", "history")


@dataclass(frozen=True)
class ReloadPlan:
    added: tuple[SiteConfig, ...] = ()
    removed: tuple[str, ...] = ()
    renewed: tuple[SiteConfig, ...] = ()  # a new container: swapped if it runs, made anew at its next start if not
    retuned: tuple[SiteConfig, ...] = ()  # new settings for the same container (timeouts, strategy, hosts, ...)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.renewed or self.retuned)


def restart_needed(old: Config, new: Config) -> str | None:
    """The first section whose change needs a restart of `dialup up`, if any."""
    for section in RESTART_SECTIONS:
        if getattr(old, section) != getattr(new, section):
            changed = [
                f.name
                for f in fields(getattr(old, section))
                if getattr(getattr(old, section), f.name) != getattr(getattr(new, section), f.name)
            ]
            return f"[{section}] {', '.join(changed)}"
    return None


def plan(old: Config, new: Config) -> ReloadPlan:
    """From the config running (as read from its file: no releases) to the new one."""
    before = {s.name: s for s in old.sites}
    after = {s.name: s for s in new.sites}
    added: list[SiteConfig] = []
    renewed: list[SiteConfig] = []
    retuned: list[SiteConfig] = []
    removed = [name for name in before if name not in after]
    for name, site in after.items():
        was = before.get(name)
        if was is None:
            added.append(site)
        elif was.serves_files != site.serves_files:  # from files to a container, or back: another kind of site
            removed.append(name)
            added.append(site)
        elif was != site:
            differ = {f.name for f in fields(site) if getattr(was, f.name) != getattr(site, f.name)}
            (renewed if differ & CONTAINER_FIELDS else retuned).append(site)
    return ReloadPlan(tuple(added), tuple(removed), tuple(renewed), tuple(retuned))


def keep_release(running: SiteConfig, new: SiteConfig) -> SiteConfig:
    """The new settings, with the release the site runs unless the new settings name an image (a new source
    keeps the old release serving until a deploy from it goes live)."""
    return new if new.image else replace(new, release=running.release)
