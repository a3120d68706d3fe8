"""The editor sidecar: workspace file operations beneath the workspace (workspace.py), per-site tokens and
sessions (access.py), the sync protocol (protocol.py), the inotify watcher that tells open tabs of changes
(watcher.py), the HTTP and WebSocket service (service.py), and development containers (devserver.py)."""
