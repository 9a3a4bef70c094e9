// Package memtrim hands free heap memory back to the operating system after a burst of work.
//
// The Go runtime keeps the heap it grew during a burst (thousands of AssumedRoles issued at
// once) and returns it only slowly, down to about twice the live heap: the process stays at its
// peak size long after the work is done, and that is what a node's memory accounting sees.
// A Trimmer looks at the runtime's own metrics now and then and, when a large share of the heap
// is free, collects and returns it at once. Between bursts it does nothing: one full collection
// per burst is its whole cost.
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
	// DefaultMinFree is the least free heap worth a collection.
	DefaultMinFree = 16 << 20
)

const (
	freeMetric    = "/memory/classes/heap/free:bytes"
	objectsMetric = "/memory/classes/heap/objects:bytes"
)

// Trimmer returns free heap memory to the system when more than MinFree bytes, and more than
// the heap's objects take, are free. It is a manager Runnable.
type Trimmer struct {
	Interval time.Duration
	MinFree  uint64
	// read and free are the runtime's metrics and debug.FreeOSMemory; tests replace them.
	read func() (free, objects uint64)
	free func()
}

// New returns a Trimmer with the defaults.
func New() *Trimmer {
	return &Trimmer{Interval: DefaultInterval, MinFree: DefaultMinFree, read: readHeap, free: debug.FreeOSMemory}
}

// Start looks at the heap every Interval until ctx ends.
func (t *Trimmer) Start(ctx context.Context) error {
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

// Trim returns the free heap when there is enough of it, and reports whether it did.
func (t *Trimmer) Trim() bool {
	free, objects := t.read()
	if free < t.MinFree || free < objects {
		return false
	}
	t.free()
	return true
}

// NeedLeaderElection is false: every replica trims its own heap.
func (t *Trimmer) NeedLeaderElection() bool { return false }

func readHeap() (free, objects uint64) {
	s := []metrics.Sample{{Name: freeMetric}, {Name: objectsMetric}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}
