package plan

import (
	"cmp"
	"hash/fnv"
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
func Spread[T any](s []T, seed string, node func(T) string) {
	type keyed struct {
		h    uint64
		name string
		v    T
	}
	k := make([]keyed, len(s))
	for i, v := range s {
		name := node(v)
		h := fnv.New64a()
		h.Write([]byte(seed))
		h.Write([]byte{0})
		h.Write([]byte(name))
		k[i] = keyed{mix(h.Sum64()), name, v}
	}
	slices.SortFunc(k, func(a, b keyed) int { return cmp.Or(cmp.Compare(a.h, b.h), strings.Compare(a.name, b.name)) })
	for i := range k {
		s[i] = k[i].v
	}
}

// mix is splitmix64's finalizer. FNV-1a alone mixes its last byte poorly:
// names that differ only there ("node-10", "node-11") hash a small multiple
// of its prime apart, next to each other in a 64-bit sort, so a rack's
// nodes would still start together. After mix every bit of the input
// moves about half the bits of the output.
func mix(z uint64) uint64 {
	z ^= z >> 30
	z *= 0xbf58476d1ce4e5b9
	z ^= z >> 27
	z *= 0x94d049bb133111eb
	return z ^ z>>31
}
