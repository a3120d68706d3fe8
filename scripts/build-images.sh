#!/usr/bin/env bash
# Build demo or test images from local files only (no registry): every folder under DIR that has a
# Dockerfile becomes the image PREFIX-<folder>:latest. The busybox binary (Debian's busybox-static) is
# copied into each context; a Dockerfile that names rootfs/ also gets this host's python3.11 and the
# libraries it loads, gathered with ldd.
set -euo pipefail
dir=${1:?usage: build-images.sh DIR PREFIX [NAME...]}
prefix=${2:?usage: build-images.sh DIR PREFIX [NAME...]}
shift 2
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for d in "$dir"/*/; do [ -f "$d/Dockerfile" ] && names+=("$(basename "$d")"); done
fi

copy_libs() {  # $1: destination root; the rest: binaries whose shared libraries (ldd) it needs
  local root=$1; shift
  if ldd "$@" 2>/dev/null | grep -q 'not found'; then
    echo "build-images: missing libraries for $*:" >&2; ldd "$@" | grep 'not found' >&2; exit 1
  fi
  { for bin in "$@"; do ldd "$bin" 2>/dev/null || true; done; } |
    awk '/=> \// {print $3} /^[ \t]*\/[^ ]*ld-linux/ {print $1}' | sort -u |
    while read -r lib; do cp --parents -L "$lib" "$root/"; done
}

python_rootfs() {  # $1: destination
  local root=$1 py=/usr/bin/python3.11
  [ -x "$py" ] || { echo "build-images: $py is missing (apt-get install python3.11)" >&2; exit 1; }
  mkdir -p "$root/usr/bin" "$root/usr/lib" "$root/tmp"
  cp "$py" "$root/usr/bin/"
  tar -C /usr/lib --exclude='python3.11/test' --exclude='python3.11/config-*' --exclude='python3.11/idlelib' \
      --exclude='python3.11/tkinter' --exclude='python3.11/lib2to3' --exclude='python3.11/ensurepip' \
      --exclude='python3.11/pydoc_data' --exclude='python3.11/dist-packages' --exclude='python3.11/site-packages' \
      -cf - python3.11 | tar -C "$root/usr/lib" -xf -
  copy_libs "$root" "$py" /usr/lib/python3.11/lib-dynload/*.so
}

nginx_rootfs() {  # $1: destination. Debian's nginx binary from its .deb: nothing is installed on the host.
  local root=$1 deb
  deb=$(mktemp -d)
  (cd "$deb" && { apt-get download -qq nginx 2>/dev/null || { apt-get update -qq && apt-get download -qq nginx; }; })
  dpkg-deb -x "$deb"/nginx_*.deb "$deb/x"
  mkdir -p "$root/usr/sbin" "$root/etc/nginx" "$root/tmp"
  chmod 1777 "$root/tmp"
  cp "$deb/x/usr/sbin/nginx" "$root/usr/sbin/"
  copy_libs "$root" "$root/usr/sbin/nginx"
  printf 'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' > "$root/etc/passwd"
  printf 'nogroup:x:65534:\n' > "$root/etc/group"
  rm -rf "$deb"
}

busybox=$(command -v busybox || true)
[ -n "$busybox" ] || { echo "build-images: busybox is missing (apt-get install busybox-static)" >&2; exit 1; }
for name in "${names[@]}"; do
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
  cp -r "$dir/$name/." "$ctx/"
  cp "$busybox" "$ctx/busybox"
  if grep -q 'COPY rootfs/' "$ctx/Dockerfile"; then python_rootfs "$ctx/rootfs"; fi
  if grep -q 'COPY nginx-rootfs/' "$ctx/Dockerfile"; then nginx_rootfs "$ctx/nginx-rootfs"; fi
  out=$(DOCKER_BUILDKIT=0 docker build -q --label dialup.image=example -t "$prefix-$name:latest" "$ctx" 2>&1) ||
    { echo "$out" >&2; echo "build-images: building $prefix-$name failed" >&2; exit 1; }
  echo "built $prefix-$name:latest"
  rm -rf "$ctx"
  trap - EXIT
done
