package plan

import (
	"fmt"
	"slices"
	"testing"
)

func TestSpread(t *testing.T) {
	mk := func() []Task {
		var ts []Task
		for i := range 100 {
			ts = append(ts, Task{Node: fmt.Sprintf("node-%03d", i)})
		}
		return ts
	}
	names := func(ts []Task) []string {
		var out []string
		for _, t := range ts {
			out = append(out, t.Node)
		}
		return out
	}
	node := func(t Task) string { return t.Node }
	a, again, b := mk(), mk(), mk()
	Spread(a, "uid-a", node)
	Spread(again, "uid-a", node)
	Spread(b, "uid-b", node)
	if !slices.Equal(names(a), names(again)) {
		t.Error("one seed gave two orders")
	}
	if slices.Equal(names(a), names(b)) {
		t.Error("two seeds gave one order")
	}
	sorted := slices.Sorted(slices.Values(names(a)))
	if !slices.Equal(sorted, names(mk())) {
		t.Errorf("not a permutation: %v", sorted)
	}
	for _, ts := range [][]Task{a, b} {
		first := 0
		for _, n := range names(ts)[:20] {
			if n < "node-025" {
				first++
			}
		}
		if first > 12 {
			t.Errorf("%d of the first 20 started are among the first 25 by name", first)
		}
	}
	// Name-neighbours do not start one after the other more often than
	// chance would have them (about 2 of 999 places in 1000 nodes).
	var big []string
	for i := range 1000 {
		big = append(big, fmt.Sprintf("node-%04d", i))
	}
	for _, seed := range []string{"uid-a", "uid-b", "r-1"} {
		order := slices.Clone(big)
		Spread(order, seed, func(n string) string { return n })
		adjacent := 0
		for i := 1; i < len(order); i++ {
			var a, b int
			fmt.Sscanf(order[i-1], "node-%d", &a)
			fmt.Sscanf(order[i], "node-%d", &b)
			if a-b == 1 || b-a == 1 {
				adjacent++
			}
		}
		if adjacent > 10 {
			t.Errorf("seed %s: %d of 999 successive starts are name-neighbours (chance: ~2)", seed, adjacent)
		}
	}
	// The elements move whole: a task keeps its items.
	c := mk()
	for i := range c {
		c[i].Items = []Item{{Ref: c[i].Node}}
	}
	Spread(c, "x", node)
	for _, tk := range c {
		if len(tk.Items) != 1 || tk.Items[0].Ref != tk.Node {
			t.Fatalf("%s carries %v", tk.Node, tk.Items)
		}
	}
}
