package worker

import (
	"crypto/sha256"
	"testing"
)

func TestAsyncHashMatchesSync(t *testing.T) {
	data := randomBytes(5<<20 + 17)
	a := newAsyncHash(sha256.New())
	defer a.Close()
	// uneven writes, larger and smaller than the buffers
	for off, step := 0, 1; off < len(data); step = step*3 + 1 {
		n := min(step%(3<<20), len(data)-off)
		a.Write(data[off : off+n])
		off += n
	}
	want := sha256.Sum256(data)
	if got := a.Sum(nil); string(got) != string(want[:]) {
		t.Fatal("async sha256 differs")
	}
	a.Reset()
	a.Write([]byte("abc"))
	want = sha256.Sum256([]byte("abc"))
	if got := a.Sum(nil); string(got) != string(want[:]) {
		t.Fatal("after Reset: differs")
	}
}
