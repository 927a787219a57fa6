package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// point is one instant of a node's path through a plugin run.
type point struct {
	key   string // short name, for the timeline
	label string // the phase that ends at this point
	at    func(pr *pluginRun, t nodeTimeline) time.Time
}

func nodeAt(f func(t nodeTimeline) time.Time) func(*pluginRun, nodeTimeline) time.Time {
	return func(_ *pluginRun, t nodeTimeline) time.Time { return f(t) }
}

// path is a node's way through a plugin run, from the plugin's start to its
// exit; for the node reported last (the critical path) the phases add up to
// the plugin's wall time. Points come from the plugin's stderr (plugin), the
// bench's own watch (watch), the node's CRI (cri), the worker's log (worker),
// and kubelet's and containerd's logs (kubelet, containerd).
var path = []point{
	{"start", "", func(pr *pluginRun, _ nodeTimeline) time.Time { return pr.Start }},
	{"run line", "plugin start → 'run' line (plugin): kubeconfig, list nodes, resolve digests, preflight dry-runs",
		func(pr *pluginRun, _ nodeTimeline) time.Time { return pr.RunLine }},
	{"Job created", "→ Job created (plugin): start the pod watch, create Jobs one by one", nodeAt(func(t nodeTimeline) time.Time {
		if t.JobCreated.IsZero() {
			return t.JobSeen
		}
		return t.JobCreated
	})},
	{"pod created", "→ pod created (watch): Job controller", nodeAt(func(t nodeTimeline) time.Time { return t.PodSeen })},
	{"kubelet ADD", "→ pod reaches kubelet (kubelet: SyncLoop ADD)", nodeAt(func(t nodeTimeline) time.Time { return t.KubeletAdd })},
	{"RunPodSandbox", "→ RunPodSandbox called (containerd): admit, wait for the socket volume's mount", nodeAt(func(t nodeTimeline) time.Time {
		if t.SandboxRequested.IsZero() {
			return t.Runtime.SandboxCreated
		}
		return t.SandboxRequested
	})},
	{"sandbox ready", "→ RunPodSandbox returns (containerd): pause container, CNI ADD", nodeAt(func(t nodeTimeline) time.Time { return t.SandboxReturned })},
	{"ctr created", "→ worker container created (cri)", nodeAt(func(t nodeTimeline) time.Time { return t.Runtime.ContainerCreated })},
	{"ctr started", "→ worker container started (cri): runc", nodeAt(func(t nodeTimeline) time.Time { return t.Runtime.ContainerStarted })},
	{"worker ready", "→ worker ready (worker: first log line): dialled the CRI socket", nodeAt(func(t nodeTimeline) time.Time { return t.WorkerFirst })},
	{"pulled", "→ last image pulled (worker log): THE PULLS", nodeAt(func(t nodeTimeline) time.Time { return t.WorkerLast })},
	{"ctr exited", "→ worker exited (cri): report written", nodeAt(func(t nodeTimeline) time.Time { return t.Runtime.ContainerExited })},
	{"PLEG died", "→ kubelet notices the exit (kubelet: generic PLEG relists every 1 s)", nodeAt(func(t nodeTimeline) time.Time { return t.PLEGDied })},
	{"terminated", "→ worker Terminated + report in pod status (watch; phase still Running)", nodeAt(func(t nodeTimeline) time.Time { return t.TerminatedSeen })},
	{"StopPodSandbox", "→ StopPodSandbox called (containerd): pod worker waits for the next PLEG relist", nodeAt(func(t nodeTimeline) time.Time { return t.StopStart })},
	{"sandbox stopped", "→ StopPodSandbox returns (containerd): kill pause, shim exit, CNI DEL", nodeAt(func(t nodeTimeline) time.Time { return t.StopDone })},
	{"Succeeded", "→ phase Succeeded (watch): kubelet sets it only after the teardown", nodeAt(func(t nodeTimeline) time.Time { return t.DoneSeen })},
	{"node done", "→ plugin has the node's result ('[i/n] node: done')", nodeAt(func(t nodeTimeline) time.Time { return t.PluginDone })},
	{"finished", "→ 'finished' line (plugin): Jobs deleted (cleanup)", func(pr *pluginRun, _ nodeTimeline) time.Time { return pr.Finished }},
	{"exit", "→ plugin exit: JSON report printed", func(pr *pluginRun, _ nodeTimeline) time.Time { return pr.Exit }},
}

// pointIndex returns the index in path of the point with key.
func pointIndex(key string) int {
	for i, p := range path {
		if p.key == key {
			return i
		}
	}
	panic("no point " + key)
}

// critical returns the node that the plugin reported last.
func critical(pr *pluginRun) string {
	var best string
	var at time.Time
	for n, t := range pr.Nodes {
		if t.PluginDone.After(at) {
			best, at = n, t.PluginDone
		}
	}
	return best
}

// phases returns, for node, the time from each point to the next (phase i
// ends at path[i+1]). A point that could not be measured has ok false, and
// the next phase starts from the last point that was, so the phases still
// add up to the whole.
func phases(pr *pluginRun, node string) (d []float64, ok []bool) {
	t := pr.Nodes[node]
	last := path[0].at(pr, t)
	for i := 1; i < len(path); i++ {
		b := path[i].at(pr, t)
		if b.IsZero() || last.IsZero() {
			d, ok = append(d, 0), append(ok, false)
			continue
		}
		d, ok = append(d, b.Sub(last).Seconds()), append(ok, true)
		last = b
	}
	return d, ok
}

func (b *bench) printSummary() {
	var as, bs, ratios, diffs []float64
	for i := range b.floors {
		a, p := b.floors[i].Total.Seconds(), b.plugins[i].Exit.Sub(b.plugins[i].Start).Seconds()
		as, bs = append(as, a), append(bs, p)
		ratios, diffs = append(ratios, p/a), append(diffs, p-a)
	}
	ma, mb := median(as), median(bs)
	fmt.Printf("%-5s  %-5s  %7.2f s  %7.2f s  %6.2f  %+7.2f s  (ratio and overhead of the medians; median of per-round ratios %.2f, of differences %+.2f s)\n",
		"med", "", ma, mb, mb/ma, mb-ma, median(ratios), median(diffs))
	na, nb := slices.Min(as), slices.Min(bs)
	fmt.Printf("%-5s  %-5s  %7.2f s  %7.2f s  %6.2f  %+7.2f s  (best of each way: the least disturbed by other load)\n",
		"min", "", na, nb, nb/na, nb-na)
	verdict := func(met bool) string {
		if met {
			return "MET"
		}
		return "NOT MET"
	}
	// Two aims: the bench's first (ratio and overhead, issue 3) and the
	// scale issue's single-run overhead (issue 12), both on the medians.
	fmt.Printf("\nratio (b)/(a) = %.2f, fixed overhead (b)-(a) = %+.2f s; aim ≤ 1.15 and ≤ 2 s: %s; aim overhead ≤ 1.0 s: %s\n",
		mb/ma, mb-ma, verdict(mb/ma <= 1.15 && mb-ma <= 2), verdict(mb-ma <= 1.0))
	fmt.Printf("throughput: floor %.0f MB/s, coral %.0f MB/s (%.0f MB onto each of %d nodes)\n",
		b.totalMB*float64(len(b.nodes))/ma, b.totalMB*float64(len(b.nodes))/mb, b.totalMB, len(b.nodes))

	// Where the plugin's time goes: the critical node's path, per round.
	fmt.Printf("\nwhere coral's time goes: the path of the node reported last, medians over %d rounds (s)\n", len(b.plugins))
	w := 0
	for _, p := range path {
		w = max(w, utf8.RuneCountInString(p.label))
	}
	fmt.Printf("  %-*s  %6s  %13s  %s\n", w, "phase", "median", "min–max", "all nodes (median)")
	cols := make([][]float64, len(path)-1)
	allNodes := make([][]float64, len(path)-1)
	var missing []string
	for _, pr := range b.plugins {
		d, ok := phases(pr, critical(pr))
		for i := range d {
			if ok[i] {
				cols[i] = append(cols[i], d[i])
			}
		}
		for n := range pr.Nodes {
			if pr.Nodes[n].PluginDone.IsZero() {
				continue // not a node of the run
			}
			d, ok := phases(pr, n)
			for i := range d {
				if ok[i] && i+1 <= pointIndex("node done") { // per-node phases only
					allNodes[i] = append(allNodes[i], d[i])
				}
			}
			t := pr.Nodes[n]
			if t.RuntimeErr != nil {
				missing = append(missing, fmt.Sprintf("%s %s: runtime times: %v", pr.Report.RunID, n, t.RuntimeErr))
			}
			if t.LogErr != nil {
				missing = append(missing, fmt.Sprintf("%s %s: worker log: %v", pr.Report.RunID, n, t.LogErr))
			}
		}
	}
	var sum, outside float64
	for i := range cols {
		label := path[i+1].label
		if len(cols[i]) == 0 {
			fmt.Printf("  %-*s  %6s\n", w, label, "n/a")
			continue
		}
		m := median(cols[i])
		sum += m
		if i+1 != pointIndex("pulled") {
			outside += m
		}
		all := ""
		if len(allNodes[i]) > 0 {
			all = fmt.Sprintf("%6.2f", median(allNodes[i]))
		}
		fmt.Printf("  %-*s  %6.2f  %5.2f–%-6.2f  %s\n", w, label, m, slices.Min(cols[i]), slices.Max(cols[i]), all)
	}
	fmt.Printf("  %-*s  %6.2f  (the plugin's median: %.2f; medians need not add up)\n", w, "sum of the phase medians", sum, mb)
	pulls := median(cols[pointIndex("pulled")-1])
	fmt.Printf("\n  the pulls (worker's first log line → last image): %.2f s; everything else on the path: %.2f s\n", pulls, outside)
	fmt.Printf("  the floor (a), same pulls without Kubernetes: %.2f s → the pulls inside the workers take %+.2f s versus the floor\n", ma, pulls-ma)

	// The overhead by cause, critical node, medians over the rounds.
	type cause struct {
		from, to, what string
	}
	causes := []cause{
		{"start", "Job created", "plugin before its Jobs exist (client, list nodes, digests, preflight, watch)"},
		{"Job created", "worker ready", "Kubernetes starts the worker (Job controller, kubelet, sandbox, CNI, runc)"},
		{"pulled", "terminated", "the worker exits and kubelet notices (PLEG relist, ≤1 s)"},
		{"terminated", "Succeeded", "report already in the pod status, the plugin waits for phase Succeeded (pod teardown)"},
		{"Succeeded", "exit", "plugin after the last node (delete Jobs, print)"},
	}
	fmt.Printf("\n  overhead by cause (node reported last, median):\n")
	var causeSum float64
	for _, c := range causes {
		var xs []float64
		for _, pr := range b.plugins {
			t := pr.Nodes[critical(pr)]
			a, z := path[pointIndex(c.from)].at(pr, t), path[pointIndex(c.to)].at(pr, t)
			if !a.IsZero() && !z.IsZero() {
				xs = append(xs, z.Sub(a).Seconds())
			}
		}
		if len(xs) == 0 {
			fmt.Printf("    %6s s  %s\n", "n/a", c.what)
			continue
		}
		causeSum += median(xs)
		fmt.Printf("    %6.2f s  %s\n", median(xs), c.what)
	}
	fmt.Printf("    %+6.2f s  pulls inside the workers minus the floor (a)\n", pulls-ma)
	fmt.Printf("    %6.2f s  sum (the measured (b)-(a): %+.2f s; medians need not add up)\n", causeSum+pulls-ma, mb-ma)

	// Per node: is one node (runtime) slower, both ways?
	fmt.Printf("\n  per node, medians (s): floor = all images on the node by direct CRI; worker pulls = worker ready → last image;\n")
	fmt.Printf("  Job → worker = Job created → worker ready; exit → result = last image → plugin has the node's result\n")
	fmt.Printf("    %-14s  %8s  %12s  %12s  %13s\n", "node", "floor", "worker pulls", "Job → worker", "exit → result")
	for _, n := range b.nodes {
		var f, wp, st, ex []float64
		for _, fr := range b.floors {
			f = append(f, fr.PerNode[n.Name].Seconds())
		}
		span := func(pr *pluginRun, from, to string) (float64, bool) {
			t := pr.Nodes[n.Name]
			a, z := path[pointIndex(from)].at(pr, t), path[pointIndex(to)].at(pr, t)
			return z.Sub(a).Seconds(), !a.IsZero() && !z.IsZero()
		}
		for _, pr := range b.plugins {
			if v, ok := span(pr, "worker ready", "pulled"); ok {
				wp = append(wp, v)
			}
			if v, ok := span(pr, "Job created", "worker ready"); ok {
				st = append(st, v)
			}
			if v, ok := span(pr, "pulled", "node done"); ok {
				ex = append(ex, v)
			}
		}
		fmt.Printf("    %-14s  %8.2f  %12.2f  %12.2f  %13.2f\n", n.Name, median(f), median(wp), median(st), median(ex))
	}

	// Per-image pull times, both ways.
	var fi, wi []float64
	var fnode []float64
	for _, fr := range b.floors {
		for _, it := range fr.Items {
			fi = append(fi, it.Duration.Seconds())
		}
		for _, d := range fr.PerNode {
			fnode = append(fnode, d.Seconds())
		}
	}
	for _, pr := range b.plugins {
		for _, r := range pr.Report.Results {
			wi = append(wi, r.DurationSeconds)
		}
	}
	fmt.Printf("  one image (ImageStatus+PullImage+ImageStatus), median: floor %.2f s, in the worker %.2f s (JSON durationSeconds); floor per node, median: %.2f s\n",
		median(fi), median(wi), median(fnode))
	var stagger []float64
	for _, pr := range b.plugins {
		var first, last time.Time
		for _, t := range pr.Nodes {
			if t.WorkerFirst.IsZero() {
				continue
			}
			if first.IsZero() || t.WorkerFirst.Before(first) {
				first = t.WorkerFirst
			}
			if t.WorkerFirst.After(last) {
				last = t.WorkerFirst
			}
		}
		if !first.IsZero() {
			stagger = append(stagger, last.Sub(first).Seconds())
		}
	}
	if len(stagger) > 0 {
		fmt.Printf("  workers start pulling %.2f s apart (first → last node, median)\n", median(stagger))
	}
	if len(missing) > 0 {
		fmt.Printf("  not measured (shown as n/a or left out): %s\n", strings.Join(missing, "; "))
	}

	// One run in full: the round whose plugin time is the median.
	mi := 0
	for i, v := range bs {
		if abs(v-mb) < abs(bs[mi]-mb) {
			mi = i
		}
	}
	pr := b.plugins[mi]
	fmt.Printf("\ncoral's median run (round %d, run %s, %.2f s), seconds since the plugin started:\n", mi+1, pr.Report.RunID, pr.Exit.Sub(pr.Start).Seconds())
	var nodes []string
	for n, t := range pr.Nodes {
		if !t.PluginDone.IsZero() {
			nodes = append(nodes, n)
		}
	}
	slices.Sort(nodes)
	fmt.Printf("  %-16s", "")
	for _, n := range nodes {
		fmt.Printf("  %12s", n)
	}
	fmt.Println()
	for i := 2; i <= pointIndex("node done"); i++ {
		fmt.Printf("  %-16s", path[i].key)
		for _, n := range nodes {
			if at := path[i].at(pr, pr.Nodes[n]); at.IsZero() {
				fmt.Printf("  %12s", "n/a")
			} else {
				fmt.Printf("  %12.3f", at.Sub(pr.Start).Seconds())
			}
		}
		fmt.Println()
	}
	fmt.Printf("  'run' line %.2f, 'finished' line %.2f, exit %.2f\n", pr.RunLine.Sub(pr.Start).Seconds(), pr.Finished.Sub(pr.Start).Seconds(), pr.Exit.Sub(pr.Start).Seconds())
	fmt.Printf("  the plugin's stderr:\n%s", indent(pr.Stderr, "    "))
	fmt.Printf("\nload average at the end: %s\n", loadavg())
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
