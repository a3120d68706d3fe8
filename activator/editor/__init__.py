"""The editor sidecar (issue 13), in progress: workspace file operations beneath the workspace
(workspace.py), per-site tokens and sessions (access.py), the sync protocol's handler (protocol.py) and the
inotify watcher that tells open tabs of changes (watcher.py). Not wired into `dialup up` yet."""
