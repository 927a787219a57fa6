package diskcheck

import (
	"strings"
	"testing"
)

const gib = int64(1) << 30

func TestJudge(t *testing.T) {
	for _, tc := range []struct {
		name      string
		need      int64
		fs        FsStats
		threshold int
		want      Status
		after     int
		says      []string
	}{
		{name: "fits well under the threshold", need: 1 * gib, fs: FsStats{AvailableBytes: 60 * gib, CapacityBytes: 100 * gib}, threshold: 85,
			want: Fits, after: 41, says: []string{"1.0 GiB", "60.0 GiB free of 100.0 GiB", "40% → 41%", "image GC at 85%"}},
		{name: "nothing to pull", need: 0, fs: FsStats{AvailableBytes: 10 * gib, CapacityBytes: 100 * gib}, threshold: 85,
			want: Fits, after: 90, says: []string{"holds every image already"}},
		{name: "already over the threshold but nothing to pull is not a warning", need: 0, fs: FsStats{AvailableBytes: 5 * gib, CapacityBytes: 100 * gib}, threshold: 85,
			want: Fits, after: 95},
		{name: "crosses the GC threshold", need: 10 * gib, fs: FsStats{AvailableBytes: 20 * gib, CapacityBytes: 100 * gib}, threshold: 85,
			want: OverGCThreshold, after: 90, says: []string{"80% to 90% used", "starts at 85%", "10.0 GiB"}},
		{name: "landing exactly on the threshold triggers GC (kubelet compares >=)", need: 5 * gib, fs: FsStats{AvailableBytes: 20 * gib, CapacityBytes: 100 * gib}, threshold: 85,
			want: OverGCThreshold, after: 85},
		{name: "kubelet truncates: 15.001% free is 85% used", need: 5*gib - 1<<20, fs: FsStats{AvailableBytes: 20 * gib, CapacityBytes: 100 * gib}, threshold: 85,
			want: OverGCThreshold, after: 85},
		{name: "16% free stays under 85%", need: 4 * gib, fs: FsStats{AvailableBytes: 20 * gib, CapacityBytes: 100 * gib}, threshold: 85,
			want: Fits, after: 84},
		{name: "already over the threshold", need: 1 * gib, fs: FsStats{AvailableBytes: 10 * gib, CapacityBytes: 100 * gib}, threshold: 85,
			want: OverGCThreshold, after: 91, says: []string{"already 90% used", "91% after", "starts at 85%"}},
		{name: "threshold 100 disables GC by usage", need: 19 * gib, fs: FsStats{AvailableBytes: 20 * gib, CapacityBytes: 100 * gib}, threshold: 100,
			want: Fits, after: 99, says: []string{"image GC by disk usage off"}},
		{name: "does not fit", need: 21 * gib, fs: FsStats{AvailableBytes: 20 * gib, CapacityBytes: 100 * gib}, threshold: 85,
			want: DoesNotFit, after: 100, says: []string{"needs at least 21.0 GiB, 20.0 GiB free of 100.0 GiB"}},
		{name: "does not fit even with GC off", need: 21 * gib, fs: FsStats{AvailableBytes: 20 * gib, CapacityBytes: 100 * gib}, threshold: 100,
			want: DoesNotFit, after: 100},
		{name: "exactly the free space fits (and crosses the threshold)", need: 20 * gib, fs: FsStats{AvailableBytes: 20 * gib, CapacityBytes: 100 * gib}, threshold: 85,
			want: OverGCThreshold, after: 100},
		{name: "available above capacity is clamped", need: 1 * gib, fs: FsStats{AvailableBytes: 200 * gib, CapacityBytes: 100 * gib}, threshold: 85,
			want: Fits, after: 1},
		{name: "no capacity reported", need: 1, fs: FsStats{}, threshold: 85, want: Unknown, says: []string{"no capacity"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Judge("node-a", tc.need, tc.fs, tc.threshold)
			if v.Status != tc.want {
				t.Fatalf("status %s, want %s (%+v)", v.Status, tc.want, v)
			}
			if tc.want != Unknown && v.UsedPercentAfter != tc.after {
				t.Errorf("used after %d%%, want %d%%", v.UsedPercentAfter, tc.after)
			}
			if v.Node != "node-a" || v.NeedBytes != tc.need || v.HighThresholdPercent != tc.threshold {
				t.Errorf("numbers not carried: %+v", v)
			}
			for _, s := range tc.says {
				if !strings.Contains(v.Message, s) {
					t.Errorf("message %q lacks %q", v.Message, s)
				}
			}
		})
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536 << 20: "1.5 GiB", 3 << 40: "3.0 TiB"} {
		if got := HumanBytes(n); got != want {
			t.Errorf("HumanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
