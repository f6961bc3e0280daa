# Sourced by build-controlplane.sh and build-node.sh: the Kubernetes version both build, and the ldflags that
# stamp it into the binaries (what /version, --version and the User-Agent report), as k8s.io/kubernetes's own
# build does.
K8S_VERSION=v1.37.2
# The date of the v1.37.2 tag as the module proxy reports it; used as the build date so the binaries are
# reproducible.
K8S_BUILD_DATE=2026-10-27T12:01:04Z

k8s_ldflags() {
    local major minor ldflags pkg
    major="${K8S_VERSION#v}"; major="${major%%.*}"
    minor="${K8S_VERSION#v*.}"; minor="${minor%%.*}"
    ldflags="-s -w"
    # Both version packages: component-base is what the servers report (/version, --version); client-go's is
    # what their clients send in User-Agent.
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $pkg.gitVersion=$K8S_VERSION"
        ldflags+=" -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
        ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$K8S_BUILD_DATE"
    done
    echo "$ldflags"
}
