//go:build tools

// Package tools pins the versions of the code generators Coral runs
// (make manifests), apart from the main module's dependencies.
package tools

import (
	_ "sigs.k8s.io/controller-tools/cmd/controller-gen"
)
