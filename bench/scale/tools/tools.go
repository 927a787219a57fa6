//go:build tools

// Package tools pins the programs the scale harness builds from the Go
// module proxy (kwok), apart from Coral's own go.mod.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
