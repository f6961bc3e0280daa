// Command etcd wraps go.etcd.io/etcd/server/v3/etcdmain, exactly like the
// upstream server/main.go, so the cotlab cluster tests can build etcd in the
// same module as kube-apiserver. k8s.io/kubernetes v1.37.2 already requires
// go.etcd.io/etcd/server/v3 v3.7.0 (indirectly), so minimal version selection
// pins etcd to the release Kubernetes 1.37 is tested against.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
