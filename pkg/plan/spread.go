package plan

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"strings"
)

// Spread puts s, one element per node, in the order its workers are started
// in: by a hash of seed and each node's name, not by name. Node names follow
// racks, zones and pools, which is where failures cluster; nodes that hang
// their worker (until the node timeout) and sort together would fill the
// cap on workers in flight at once and start nothing else until then (the
// controller's first 5000-node run: its first result after 93 s, its 25
// hanging nodes being the first 25 by name, docs/scale.md). The same seed
// gives the same order (a controller's object keeps its order across
// replans; the CLI seeds with its run id), another seed another order.
//
// The hash is SHA-256, whose every output bit depends on every input bit:
// FNV-1a, used before, hashed names that differ in their last character a
// small multiple of its prime apart, next to each other in a 64-bit sort, so
// a rack's nodes still started together.
func Spread[T any](s []T, seed string, node func(T) string) {
	type keyed struct {
		h    uint64
		name string
		v    T
	}
	k := make([]keyed, len(s))
	for i, v := range s {
		name := node(v)
		sum := sha256.Sum256([]byte(seed + "\x00" + name))
		k[i] = keyed{binary.BigEndian.Uint64(sum[:8]), name, v}
	}
	slices.SortFunc(k, func(a, b keyed) int { return cmp.Or(cmp.Compare(a.h, b.h), strings.Compare(a.name, b.name)) })
	for i := range k {
		s[i] = k[i].v
	}
}
