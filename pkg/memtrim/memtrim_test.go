package memtrim

import (
	"runtime"
	"runtime/debug"
	"testing"
)

// Trim collects only when enough of the heap is free: more than MinFree and more than the live
// objects take.
func TestTrimOnlyWhenMuchIsFree(t *testing.T) {
	cases := map[string]struct {
		free, objects uint64
		trims         bool
	}{
		"a burst left most of the heap free":      {free: 200 << 20, objects: 60 << 20, trims: true},
		"little free, however large the heap":     {free: 8 << 20, objects: 4 << 20, trims: false},
		"more live than free: the heap is in use": {free: 40 << 20, objects: 60 << 20, trims: false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			freed := 0
			tr := &Trimmer{MinFree: DefaultMinFree, read: func() (uint64, uint64) { return c.free, c.objects }, free: func() { freed++ }}
			if got := tr.Trim(); got != c.trims || (freed == 1) != c.trims {
				t.Errorf("Trim() = %v with %d collections, want %v", got, freed, c.trims)
			}
		})
	}
}

// On the real runtime, garbage left by a burst is handed back: the heap's free memory falls
// below MinFree after a trim.
func TestTrimReturnsABurstsGarbage(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // no collection but ours
	keep := make([][]byte, 0, 64)
	for i := range 64 << 10 {
		b := make([]byte, 1<<10)
		if i%1024 == 0 {
			keep = append(keep, b)
		}
	}
	runtime.GC() // the burst's garbage is now free heap, not yet returned
	tr := New()
	if free, _ := readHeap(); free < tr.MinFree {
		t.Skipf("only %d bytes free after the burst: nothing to show", free)
	}
	if !tr.Trim() {
		t.Fatal("did not trim after a burst")
	}
	if free, _ := readHeap(); free >= tr.MinFree {
		t.Errorf("%d bytes still free after the trim", free)
	}
	runtime.KeepAlive(keep)
}
