package memtrim

import (
	"runtime"
	"runtime/debug"
	"testing"
)

// While the process stays quiet, Trim collects only once it holds much more heap than it uses.
func TestTrimOnlyWhenQuietAndHoldingMuch(t *testing.T) {
	const mib = 1 << 20
	cases := map[string]struct {
		heap  Heap
		trims bool
	}{
		"a burst is over and left most of the heap garbage": {Heap{Held: 200 * mib, Live: 60 * mib, Allocated: 1000*mib + 2*mib}, true},
		"the burst goes on":                          {Heap{Held: 200 * mib, Live: 60 * mib, Allocated: 1000*mib + 90*mib}, false},
		"quiet, and the heap is about its live size": {Heap{Held: 70 * mib, Live: 60 * mib, Allocated: 1000*mib + mib}, false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			freed := 0
			tr := &Trimmer{Surplus: DefaultSurplus, Quiet: DefaultQuiet, last: 1000 * mib,
				read: func() Heap { return c.heap }, free: func() { freed++ }}
			if got := tr.Trim(); got != c.trims || (freed == 1) != c.trims {
				t.Errorf("Trim() = %v with %d collections, want %v", got, freed, c.trims)
			}
		})
	}
}

// The first quiet look after work collects and releases the code pages, however little the heap
// holds beyond what is live; later quiet looks do neither, until the next burst is over.
func TestFirstQuietLookAfterWorkTrims(t *testing.T) {
	const mib = 1 << 20
	heap := Heap{Held: 70 * mib, Live: 60 * mib} // never worth a collection by itself
	collected, released := 0, 0
	tr := &Trimmer{Surplus: DefaultSurplus, Quiet: DefaultQuiet, worked: true,
		read: func() Heap { return heap }, free: func() { collected++ }, release: func() { released++ }}
	look := func(allocated uint64, want int) {
		t.Helper()
		heap.Allocated += allocated
		tr.Trim()
		if collected != want || released != want {
			t.Fatalf("after allocating %d MiB: %d collections and %d releases, want %d of each", allocated/mib, collected, released, want)
		}
	}
	look(90*mib, 0) // start-up goes on
	look(mib, 1)    // quiet: trimmed
	look(mib, 1)    // still quiet: nothing more
	look(0, 1)
	look(50*mib, 1) // a burst
	look(2*mib, 2)  // quiet again: trimmed
}

// On the real runtime the garbage of a burst is handed back: after a trim the heap holds little
// beyond what is live.
func TestTrimReturnsABurstsGarbage(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // no collection but the trimmer's
	tr := New()
	tr.last = ReadHeap().Allocated
	keep := make([][]byte, 0, 64)
	for i := range 64 << 10 { // 64 MiB, one KiB in a thousand kept
		b := make([]byte, 1<<10)
		if i%1024 == 0 {
			keep = append(keep, b)
		}
	}
	if h := ReadHeap(); h.Held < h.Live+tr.Surplus {
		t.Fatalf("the burst left %d bytes held and %d live: nothing to show", h.Held, h.Live)
	}
	tr.last = ReadHeap().Allocated // the burst is over: a quiet interval follows
	if !tr.Trim() {
		t.Fatal("did not trim after the burst")
	}
	if h := ReadHeap(); h.Held >= h.Live+tr.Surplus {
		t.Errorf("%d bytes held, %d live after the trim", h.Held, h.Live)
	}
	runtime.KeepAlive(keep)
}
