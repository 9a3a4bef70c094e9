//go:build e2e

package e2e

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pace is what the machine and the API server did while one timed run went on.
//
// The runs' CPU seconds move by up to half from one run to the next for the same work, in every
// process at once (docs/benchmarks.md); pace tells where from. Work is a fixed piece of work's
// own CPU time (median of its samples), so waiting for a core is not in it: it grows only when a
// core does less per second (caches and memory shared with other guests, clock speed). Machine
// is where the cores' time went, steal (the hypervisor giving them to another guest) included.
// The API server's own runtime tells what it allocated (the same work allocates the same) and
// what its garbage collection cost; those figures run from just before the operator starts
// (its first lists are in them), so that reading them is not in the run's CPU.
type pace struct {
	Work time.Duration
	// Machine is where the machine's two cores spent the run (seconds, from /proc/stat).
	Machine machineTime
	// APIServerGC is the API server's garbage collection CPU seconds, APIServerGCIdle the part
	// of it its runtime ran on processors it had nothing else for, APIServerAlloc the MiB it
	// allocated, APIServerCycles its collections.
	APIServerGC, APIServerGCIdle, APIServerAlloc, APIServerCycles float64
}

// paceEvery is how often the probe samples: at about 2 ms of work a sample, 0.4% of one core,
// in the test process's CPU of the operator's runs and the floor's alike.
const paceEvery = 500 * time.Millisecond

// paceProbe samples pace until finish is called.
type paceProbe struct {
	stop     chan struct{}
	done     chan []time.Duration
	machine0 machineTime
	api0     pace
}

// startPace starts sampling: every paceEvery, on a thread of its own, it walks a fixed random
// chain through 16 MiB (memory, the part of the machine other guests share) and hashes 256 KiB
// (one core's own speed), and keeps the thread's CPU time for that.
func startPace(t *testing.T) *paceProbe {
	t.Helper()
	p := &paceProbe{stop: make(chan struct{}), done: make(chan []time.Duration, 1), machine0: machineNow(t), api0: apiServerRuntime(t)}
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var samples []time.Duration
		tick := time.NewTicker(paceEvery)
		defer tick.Stop()
		for {
			samples = append(samples, paceSample())
			select {
			case <-p.stop:
				p.done <- samples
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

// finish stops sampling and returns the run's pace.
func (p *paceProbe) finish(t *testing.T) pace {
	t.Helper()
	close(p.stop)
	api := apiServerRuntime(t)
	return pace{Work: median(<-p.done), Machine: machineNow(t).since(p.machine0),
		APIServerGC: api.APIServerGC - p.api0.APIServerGC, APIServerGCIdle: api.APIServerGCIdle - p.api0.APIServerGCIdle, APIServerAlloc: api.APIServerAlloc - p.api0.APIServerAlloc, APIServerCycles: api.APIServerCycles - p.api0.APIServerCycles}
}

// apiServerRuntime reads the API server's allocation and garbage collection so far from its
// metrics (the Go runtime's own counters).
func apiServerRuntime(t *testing.T) pace {
	t.Helper()
	c, err := adminHTTP()
	if err != nil {
		t.Fatal(err)
	}
	m, err := scrapeWith(c, cp.URL+"/metrics")
	if err != nil {
		t.Fatalf("API server metrics: %v", err)
	}
	metric := func(name string) float64 {
		v, ok := m[name]
		if !ok {
			t.Fatalf("the API server's metrics have no %s", name)
		}
		return v
	}
	return pace{APIServerGC: metric("go_cpu_classes_gc_total_cpu_seconds_total"), APIServerGCIdle: metric("go_cpu_classes_gc_mark_idle_cpu_seconds_total"),
		APIServerAlloc: metric("go_gc_heap_allocs_bytes_total") / (1 << 20), APIServerCycles: metric("go_gc_cycles_total_gc_cycles_total")}
}

// paceChain is the probe's chain: one cycle through all its slots in a random order, so each
// step is a load the core cannot predict.
var paceChain = sync.OnceValue(func() []uint32 {
	const slots = 4 << 20 // 16 MiB
	order := rand.New(rand.NewPCG(1, 2)).Perm(slots)
	chain := make([]uint32, slots)
	for i := range order {
		chain[order[i]] = uint32(order[(i+1)%slots])
	}
	return chain
})

var paceHashed = make([]byte, 256<<10)

// paceSample is one sample: the probe's work, timed in the CPU time of the calling thread.
func paceSample() time.Duration {
	chain := paceChain()
	begin := threadCPU()
	at := uint32(0)
	for range 10000 {
		at = chain[at]
	}
	sum := sha256.Sum256(paceHashed)
	took := threadCPU() - begin
	paceSink = at + uint32(sum[0])
	return took
}

// paceSink keeps the walk from being optimised away.
var paceSink uint32

func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		panic(err)
	}
	return time.Duration(ts.Nano())
}

// machineTime is the time both cores spent in each state, in seconds: in processes (user, system),
// in the kernel's deferred network work (softirq), idle, or given by the hypervisor to another
// guest (steal).
type machineTime struct{ User, System, Softirq, Idle, Steal float64 }

func (m machineTime) since(before machineTime) machineTime {
	return machineTime{m.User - before.User, m.System - before.System, m.Softirq - before.Softirq, m.Idle - before.Idle, m.Steal - before.Steal}
}

// machineNow reads /proc/stat's cpu line (user nice system idle iowait irq softirq steal, in
// 1/100 s).
func machineNow(t *testing.T) machineTime {
	t.Helper()
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		t.Fatalf("/proc/stat begins %q, not with the cpu line", line)
	}
	v := make([]float64, 9)
	for i := 1; i < 9; i++ {
		if v[i], err = strconv.ParseFloat(f[i], 64); err != nil {
			t.Fatalf("/proc/stat: %v", err)
		}
		v[i] /= 100 // USER_HZ
	}
	return machineTime{User: v[1] + v[2], System: v[3] + v[6], Softirq: v[7], Idle: v[4] + v[5], Steal: v[8]}
}

func (p pace) String() string {
	m := p.Machine
	return fmt.Sprintf("probe work %v; machine: user %.1f, system %.1f, softirq %.1f, idle %.1f, steal %.1f s; API server: GC %.2f CPU s (idle workers %.2f) in %.0f cycles, %.0f MiB allocated",
		p.Work.Round(time.Microsecond), m.User, m.System, m.Softirq, m.Idle, m.Steal, p.APIServerGC, p.APIServerGCIdle, p.APIServerCycles, p.APIServerAlloc)
}
