// registry for AeroGrid's test bed: distribution's `registry` command with only the filesystem
// storage driver, the node's local plain-HTTP image registry (no public registry is reachable
// here): containerd pulls from it, the build Job pushes to it (tests/support/k8s_node.py).
package main

import (
	"os"

	"github.com/distribution/distribution/v3/registry"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

func main() {
	if err := registry.RootCmd.Execute(); err != nil {
		os.Exit(1)
	}
}
