// Package config embeds the manifests `kubectl coral install` applies: the
// CRDs generated from pkg/apis (make manifests) and the controller's RBAC.
package config

import "embed"

// Files holds crd/*.yaml and rbac/*.yaml.
//
//go:embed crd/*.yaml rbac/*.yaml
var Files embed.FS
