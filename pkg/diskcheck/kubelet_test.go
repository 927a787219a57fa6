package diskcheck

import (
	"errors"
	"testing"
)

func TestParseSummary(t *testing.T) {
	got, err := ParseSummary([]byte(`{"node":{"nodeName":"n1","runtime":{"imageFs":{"time":"2026-11-30T14:00:00Z","availableBytes":1000,"capacityBytes":4000,"usedBytes":300,"inodesFree":5},"containerFs":{"availableBytes":1,"capacityBytes":2}}},"pods":[]}`))
	if err != nil || got != (FsStats{AvailableBytes: 1000, CapacityBytes: 4000, UsedBytes: 300}) {
		t.Fatalf("got %+v, %v", got, err)
	}
	for _, raw := range []string{`{"node":{"nodeName":"n1"}}`, `{"node":{"runtime":{}}}`, `{"node":{"runtime":{"imageFs":{"usedBytes":3}}}}`} {
		if _, err := ParseSummary([]byte(raw)); !errors.Is(err, ErrNoImageFs) {
			t.Errorf("%s: %v, want ErrNoImageFs", raw, err)
		}
	}
	if _, err := ParseSummary([]byte(`<html>`)); err == nil || errors.Is(err, ErrNoImageFs) {
		t.Errorf("garbage: %v", err)
	}
}

func TestParseConfigz(t *testing.T) {
	for raw, want := range map[string]int{
		`{"kubeletconfig":{"imageGCHighThresholdPercent":70,"imageGCLowThresholdPercent":60}}`: 70,
		`{"kubeletconfig":{"imageGCHighThresholdPercent":100}}`:                                100,
		`{"kubeletconfig":{"cgroupDriver":"systemd"}}`:                                         DefaultImageGCHighThresholdPercent,
	} {
		got, err := ParseConfigz([]byte(raw))
		if err != nil || got != want {
			t.Errorf("%s: %d, %v; want %d", raw, got, err, want)
		}
	}
	if got, err := ParseConfigz([]byte(`{}`)); err == nil || got != DefaultImageGCHighThresholdPercent {
		t.Errorf("no kubeletconfig: %d, %v", got, err)
	}
}
