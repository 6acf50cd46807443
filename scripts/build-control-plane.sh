#!/usr/bin/env bash
# Builds the real Kubernetes control plane and node used by the end-to-end tests:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
# kube-proxy (from the Go module proxy with `go build`), CoreDNS (the cluster
# DNS the Pods resolve Service names with) and helm (`go install`). Binaries are cached outside the
# clone, in ${ADF_CACHE:-~/.cache/activedataflow}/bin, so CI's fresh clone on
# the same machine reuses them. Idempotent: only missing binaries are built.
set -euo pipefail

K8S_VERSION="${ADF_K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${ADF_ETCD_VERSION:-v3.5.21}"
HELM_VERSION="${ADF_HELM_VERSION:-v3.19.0}"
COREDNS_VERSION="${ADF_COREDNS_VERSION:-v1.12.4}"
# The TCP fault injector of tests/faults (the proxy's @latest lists v2.5.0; v2.12.0 is the newest tag)
TOXIPROXY_VERSION="${ADF_TOXIPROXY_VERSION:-v2.12.0}"
K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
CACHE="${ADF_CACHE:-$HOME/.cache/activedataflow}"
BIN="$CACHE/bin"
mkdir -p "$BIN"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export CGO_ENABLED=0

log() { echo "[build-control-plane] $*" >&2; }

build_k8s() {
  local work="$CACHE/build/k8s-$K8S_VERSION"
  mkdir -p "$work"
  cd "$work"
  if [ ! -f go.mod ]; then
    log "preparing module for k8s.io/kubernetes $K8S_VERSION"
    local staging_version="v0.${K8S_VERSION#v1.}"
    go mod download -json "k8s.io/kubernetes@$K8S_VERSION" >/dev/null
    local modfile
    modfile="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.mod"
    {
      echo "module adf.local/k8sbuild"
      echo
      echo "go 1.24.0"
      echo
      echo "replace ("
      sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging_version"'#p' "$modfile"
      echo ")"
    } > go.mod.tmp
    mv go.mod.tmp go.mod
  fi
  for cmd in "${K8S_CMDS[@]}"; do
    if [ ! -x "$BIN/$cmd" ]; then
      # Idempotent, and needed when a cached module predates this command.
      go get "k8s.io/kubernetes/cmd/$cmd@$K8S_VERSION"
      log "go build $cmd $K8S_VERSION (takes several minutes on 2 cores)"
      go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${K8S_VERSION#v1.}" \
        -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
      mv "$BIN/$cmd.tmp" "$BIN/$cmd"
    fi
  done
}

# `go build` of one main package PACKAGE at VERSION into $BIN/NAME, in a throwaway module of its own.
build_main() {
  local name="$1" package="$2" version="$3"
  [ -x "$BIN/$name" ] && return 0
  local work="$CACHE/build/$name-$version"
  mkdir -p "$work"
  cd "$work"
  if [ ! -f go.mod ]; then
    go mod init "adf.local/${name}build" >/dev/null 2>&1
    go get "$package@$version"
  fi
  log "go build $name $version"
  go build -trimpath -ldflags "-s -w" -o "$BIN/$name.tmp" "$package"
  mv "$BIN/$name.tmp" "$BIN/$name"
}

build_etcd() { build_main etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"; }
build_coredns() { build_main coredns github.com/coredns/coredns "$COREDNS_VERSION"; }
# Keyed by version (toxiproxy-server-v2.12.0): tests/faults/toxiproxy.py looks for the one it names.
build_toxiproxy() {
  build_main "toxiproxy-server-$TOXIPROXY_VERSION" github.com/Shopify/toxiproxy/v2/cmd/server "$TOXIPROXY_VERSION"
}

build_helm() {
  [ -x "$BIN/helm" ] && return 0
  # As helm's Makefile does: its version, and the Kubernetes version `helm template` assumes
  # (the client-go it is built with) instead of the v1.20 fallback.
  local gomod minor
  gomod="$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  minor="$(sed -n 's#^\s*k8s.io/client-go v0\.\([0-9]*\)\..*#\1#p' "$gomod" | head -1)"
  log "go install helm $HELM_VERSION (Kubernetes 1.$minor)"
  GOBIN="$BIN" go install -ldflags "-s -w \
    -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

if ! command -v go >/dev/null 2>&1; then
  echo "[build-control-plane] needs Go (>= 1.24) on PATH: https://go.dev/dl/ or apt-get install golang-go" >&2
  exit 1
fi
# One build at a time: parallel test sessions (or engineers) may all find the binaries missing.
exec 9>"$CACHE/.build.lock"
flock 9

what="${1:-all}"
case "$what" in
  etcd) build_etcd ;;
  k8s) build_k8s ;;
  helm) build_helm ;;
  coredns) build_coredns ;;
  toxiproxy) build_toxiproxy ;;
  all) build_etcd; build_helm; build_k8s; build_coredns; build_toxiproxy ;;
  *) echo "usage: $0 [all|etcd|k8s|helm|coredns|toxiproxy]" >&2; exit 2 ;;
esac
ls -la "$BIN" >&2
