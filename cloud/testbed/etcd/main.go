// etcd for AeroGrid's test bed: the etcd server from go.etcd.io/etcd/server/v3, because Debian's
// etcd 3.4 is too old for current kube-apiservers (they need RequestWatchProgress).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
