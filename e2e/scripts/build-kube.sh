#!/usr/bin/env bash
# Builds kube-apiserver and kube-controller-manager 1.20.2 from Debian bookworm's source
# package `kubernetes`, offline, with Debian's Go 1.19, and installs etcd from Debian.
#
# Usage: build-kube.sh CACHE_DIR
# Leaves CACHE_DIR/bin/{kube-apiserver,kube-controller-manager,etcd} and a stamp file.
# Idempotent: every finished stage leaves a marker and is skipped on the next run.
set -euo pipefail

cache=${1:?usage: build-kube.sh CACHE_DIR}
version=v1.20.2
# Raised with every patch that changes the binaries; a cache built at a lower level rebuilds.
patch_level=2
mkdir -p "$cache/bin" "$cache/apt/lists/partial" "$cache/src"
cache=$(cd "$cache" && pwd)
# Several test binaries may ask for the build at once: one builds, the others wait here.
exec 9>"$cache/.build.lock"
flock 9
if [ "$(cat "$cache/bin/.complete" 2>/dev/null)" = "$patch_level" ] && [ -x "$cache/bin/kube-apiserver" ] && [ -x "$cache/bin/kube-controller-manager" ] && [ -x "$cache/bin/etcd" ]; then
    exit 0
fi

say() { printf '[test-cluster build] %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi
}

need_pkgs=()
[ -x /usr/lib/go-1.19/bin/go ] || need_pkgs+=(golang-1.19-go)
command -v etcd >/dev/null 2>&1 || [ -x /usr/bin/etcd ] || need_pkgs+=(etcd-server)
command -v dpkg-source >/dev/null 2>&1 || need_pkgs+=(dpkg-dev)
[ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || need_pkgs+=(golang-github-modern-go-reflect2-dev)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    say "installing Debian packages: ${need_pkgs[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >&2
fi
# etcd-server's package starts a system etcd on 2379; the test cluster runs its own.
if command -v systemctl >/dev/null 2>&1; then as_root systemctl disable --now etcd >/dev/null 2>&1 || true; fi
ln -sf "$(command -v etcd || echo /usr/bin/etcd)" "$cache/bin/etcd"

src="$cache/src/kubernetes"
if [ ! -f "$cache/src/.unpacked" ]; then
    say "fetching Debian's source package kubernetes (private deb-src list, system apt untouched)"
    printf 'deb-src http://deb.debian.org/debian bookworm main\ndeb-src http://deb.debian.org/debian-security bookworm-security main\n' >"$cache/apt/sources.list"
    apt_opts=(-o "Dir::Etc::SourceList=$cache/apt/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::State::Lists=$cache/apt/lists" -o "APT::Sandbox::User=root")
    apt-get "${apt_opts[@]}" update -qq
    rm -rf "$cache/src/dl" && mkdir -p "$cache/src/dl"
    (cd "$cache/src/dl" && apt-get "${apt_opts[@]}" source -qq --download-only kubernetes >&2)
    dsc=$(ls "$cache/src/dl"/kubernetes_*.dsc | head -n1)
    rm -rf "$src"
    dpkg-source --no-check -x "$dsc" "$src" >&2
    touch "$cache/src/.unpacked"
fi

if [ ! -f "$cache/src/.patched" ]; then
    say "replacing vendor/github.com/modern-go/reflect2 1.0.1 with Debian's 1.0.2 (Go 1.19 crashes 1.0.1)"
    rm -rf "$src/vendor/github.com/modern-go/reflect2"
    mkdir -p "$src/vendor/github.com/modern-go/reflect2"
    cp -rL /usr/share/gocode/src/github.com/modern-go/reflect2/. "$src/vendor/github.com/modern-go/reflect2/"
    rm -rf "$src/vendor/github.com/modern-go/reflect2/go.mod" "$src/vendor/github.com/modern-go/reflect2/go.sum"
    touch "$cache/src/.patched"
fi

# go-openapi's type check takes "a value equal to its type's zero value" for null by comparing
# two reflect.Values with DeepEqual; from Go 1.19 on, reflect.Zero and an empty string share one
# static buffer, so every "" in a custom resource is refused as null (e.g. Argo's
# `status.analysisRuns[].analysisRun: ""`). Kubernetes built with its own Go never saw this;
# check for nil only, as later kube-openapi does.
if [ ! -f "$cache/src/.patched-null-check" ]; then
    say "patching the OpenAPI type check so an empty string is not taken for null (Go 1.19)"
    for file in "$src/vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go" \
        "$src/vendor/github.com/go-openapi/validate/type.go"; do
        sed -i 's/if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {/if data == nil {/' "$file"
        # Patched now or by an interrupted earlier run; anything else stops the build.
        grep -qF 'if data == nil {' "$file"
    done
    rm -f "$cache/bin/kube-apiserver" "$cache/bin/kube-controller-manager" "$cache/bin/.complete"
    touch "$cache/src/.patched-null-check"
fi

gopath="$cache/gopath"
mkdir -p "$gopath/src/k8s.io"
ln -sfn "$src" "$gopath/src/k8s.io/kubernetes"

export PATH=/usr/lib/go-1.19/bin:$PATH
export GOPATH="$gopath" GO111MODULE=off GOPROXY=off GOFLAGS=-mod=vendor CGO_ENABLED=0
export GOCACHE="$cache/gocache"
unset GOFLAGS
v=k8s.io/kubernetes/vendor/k8s.io
ldflags=""
for pkg in "$v/component-base/version" "$v/client-go/pkg/version"; do
    ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=20"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=2021-01-13T13:20:00Z"
    ldflags+=" -X $pkg.gitCommit=faecb196815e248d3ecfb03c680a4507229c2a56"
done

cd "$gopath/src/k8s.io/kubernetes"

# The source package ships every generated file except pkg/generated/openapi, which upstream's
# Makefile.generated_files makes with openapi-gen at build time. Do the same, for the KUBE
# target only: every non-vendored package (staging counts as vendor/k8s.io) carrying a
# `+k8s:openapi-gen=` tag, minus code-generator and sample-apiserver.
if [ ! -f "$cache/src/.openapi" ]; then
    say "generating pkg/generated/openapi with the vendored openapi-gen"
    mkdir -p "$cache/tools"
    go build -o "$cache/tools/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
    find -H . -not \( \( -path './_*' -o -path './.*' -o -path ./vendor -o -path ./debian \) -prune \) \
        -type f -name '*.go' |
        sed 's|/[^/]*$||; s|^\./||; s|^staging/src|vendor|' | LC_ALL=C sort -u >"$cache/tools/go-dirs"
    while read -r dir; do find "$dir" -maxdepth 1 -type f -name '*.go'; done <"$cache/tools/go-dirs" |
        xargs grep -l '^// *+k8s:' | xargs grep -l '+k8s:openapi-gen=' |
        grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' |
        xargs -n1 dirname | LC_ALL=C sort -u | sed 's|^|k8s.io/kubernetes/|' >"$cache/tools/openapi-dirs"
    [ -s "$cache/tools/openapi-dirs" ] || { say "no +k8s:openapi-gen packages found"; exit 1; }
    "$cache/tools/openapi-gen" --logtostderr \
        -i "$(paste -sd, "$cache/tools/openapi-dirs")" \
        -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
        -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt \
        -r "$cache/tools/openapi-violations.report"
    # Same check as upstream's Makefile: the API rule report must match the known list.
    diff -q "$cache/tools/openapi-violations.report" api/api-rules/violation_exceptions.list >&2 ||
        say "warning: openapi rule report differs from api/api-rules/violation_exceptions.list"
    touch "$cache/src/.openapi"
fi

for cmd in kube-apiserver kube-controller-manager; do
    if [ ! -x "$cache/bin/$cmd" ]; then
        say "building $cmd $version with Go 1.19 (first time only; 10-20 minutes on 2 cores)"
        go build -trimpath -ldflags "-s -w$ldflags" -o "$cache/bin/$cmd.tmp" "./cmd/$cmd"
        mv "$cache/bin/$cmd.tmp" "$cache/bin/$cmd"
    fi
done
"$cache/bin/kube-apiserver" --version >&2
echo "$patch_level" >"$cache/bin/.complete"
say "done: $cache/bin"
