// Package memtrim hands heap memory back to the operating system once a burst of work is over.
//
// The Go runtime keeps the heap a burst grew (thousands of AssumedRoles issued at once): what
// the burst left as garbage is collected only when the heap next doubles, and free pages go back
// to the system slowly. The process stays near its peak long after the work is done, and that
// is what a node's memory accounting sees. A Trimmer looks at the runtime's own metrics now and
// then and, when the process has gone quiet and holds much more heap than it uses, collects and
// returns it at once. While work goes on it does nothing; its cost is one full collection after
// each burst, and now and then one in a steady trickle of work.
package memtrim

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Defaults of a Trimmer.
const (
	// DefaultInterval is how often the heap is looked at.
	DefaultInterval = 15 * time.Second
	// DefaultSurplus is the least heap held beyond the live heap worth a collection.
	DefaultSurplus = 16 << 20
	// DefaultQuiet is the most a process may allocate in one interval and still be quiet.
	DefaultQuiet = 8 << 20
)

// Heap is what the runtime says about the heap.
type Heap struct {
	// Held is the heap memory the process keeps from the system: objects (live, and garbage
	// not yet collected), fragmentation and free pages not yet returned.
	Held uint64
	// Live is the heap that survived the last collection.
	Live uint64
	// Allocated is everything allocated so far, cumulative.
	Allocated uint64
}

// Trimmer acts when, over one Interval, the process allocated less than Quiet. On the first such
// Interval after work (start-up included) it collects, returns the free heap to the system and
// drops the executable's pages from the process (ReleaseCodePages), so that what stays resident
// is what is live and the code the process goes on running. While the process stays quiet it
// collects again only once it holds more than Surplus beyond its live heap (a trickle of work
// adds up). It is a manager Runnable.
type Trimmer struct {
	Interval time.Duration
	Surplus  uint64
	Quiet    uint64
	// read, free and release are the runtime's metrics, debug.FreeOSMemory and
	// ReleaseCodePages; tests replace them.
	read    func() Heap
	free    func()
	release func()
	last    uint64 // Allocated at the previous look
	worked  bool   // an Interval was not quiet since the code pages were last released
}

// New returns a Trimmer with the defaults.
func New() *Trimmer {
	return &Trimmer{Interval: DefaultInterval, Surplus: DefaultSurplus, Quiet: DefaultQuiet,
		read: ReadHeap, free: debug.FreeOSMemory, release: ReleaseCodePages, worked: true}
}

// Start looks at the heap every Interval until ctx ends.
func (t *Trimmer) Start(ctx context.Context) error {
	t.last = t.read().Allocated
	tick := time.NewTicker(t.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			t.Trim()
		}
	}
}

// Trim collects and returns the heap when the process has been quiet since the last look and
// either worked before it or holds enough beyond its live heap, and reports whether it did. On
// the first quiet look after work it also releases the code pages.
func (t *Trimmer) Trim() bool {
	h := t.read()
	allocated := h.Allocated - t.last
	t.last = h.Allocated
	if allocated > t.Quiet {
		t.worked = true
		return false
	}
	if !t.worked && h.Held < h.Live+t.Surplus {
		return false
	}
	t.free()
	t.last = t.read().Allocated
	if t.worked && t.release != nil {
		t.release()
	}
	t.worked = false
	return true
}

// NeedLeaderElection is false: every replica trims its own heap.
func (t *Trimmer) NeedLeaderElection() bool { return false }

// ReadHeap reads the heap's figures from runtime/metrics (no stop of the world).
func ReadHeap() Heap {
	s := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/gc/heap/allocs:bytes"},
	}
	metrics.Read(s)
	v := func(i int) uint64 {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return s[i].Value.Uint64()
	}
	return Heap{Held: v(0) + v(1) + v(2), Live: v(3), Allocated: v(4)}
}
