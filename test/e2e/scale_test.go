//go:build e2e

package e2e

import (
	"bufio"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/memtrim"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
	"github.com/rolekeeper/rolekeeper/test/cluster"
)

// Scale settings: flags a platform with thousands of AssumedRoles would set, and the same
// concurrency for the floor.
const (
	scaleWorkers = 8
	noiseSecrets = 10000
	noiseSize    = 10 << 10
	// defaultTimedRuns is how often the operator and the floor each run for the clock
	// (ROLEKEEPER_SCALE_RUNS); their medians are compared.
	defaultTimedRuns = 5
	// settleMemory is how long the operator is left idle before its memory is read: long
	// enough for its trimmer (pkg/memtrim) to see a quiet interval after the burst and hand the
	// burst's heap back.
	settleMemory = 2*memtrim.DefaultInterval + 5*time.Second
	// guardMemoryPerAssumedRole is the bench guard's bound, in KiB, on the idle operator's
	// private memory growth per AssumedRole at its N (500), and guardMemoryNoise the spread of
	// that figure between runs of the same commit (docs/benchmarks.md, "Memory guard"). At
	// N = 500 the fixed cost of the first burst still dominates the figure, so the bound is not
	// the per-AssumedRole cost at 10,000; what it catches is a change that makes every cached
	// AssumedRole or Secret cost more.
	guardMemoryPerAssumedRole = 16.0
	guardMemoryNoise          = 4.0
)

var scaleFlags = []string{"--zap-time-encoding=rfc3339nano", "--max-concurrent-reconciles=8", "--sts-qps=500", "--sts-burst=500"}

// scaleOperator runs the operator as replicaA with the Go runtime the chart and config/manager
// give it: GOMAXPROCS from the container's CPU request rounded up, 1 for the default 50m. (No
// memory limit: the peak is measured as the heap grows without one.)
func scaleOperator(t *testing.T, url string, args ...string) *cluster.Process {
	t.Helper()
	return operatorWithEnv(t, operatorKubeconfig(t), append(keyEnv(replicaA), "GOMAXPROCS=1"), url, args...)
}

// scaleResult is one N's measurements.
type scaleResult struct {
	N                           int
	ReadyAfter, Floor           time.Duration
	STSCalls                    int
	Writes                      map[string]int
	RestartCalls, RestartWrites int
	RestartIdle                 time.Duration
	// Startup is from launching the operator to its workers starting (not in ReadyAfter).
	Startup time.Duration
	// Runs and Floors are the times of each timed run; ReadyAfter and Floor their medians,
	// BestRun and BestFloor the best of each.
	Runs, Floors       []time.Duration
	BestRun, BestFloor time.Duration
	// CPU is the CPU time of the first operator run, FloorCPU of the first floor; RunCPU and
	// FloorCPUs those of every timed run, in the order of Runs and Floors.
	CPU, FloorCPU     cpuUse
	RunCPU, FloorCPUs []cpuUse
	// RunProbes and FloorProbes are the machine's speed before each timed run (speedProbe),
	// RunPaces and FloorPaces during it (pace).
	RunProbes, FloorProbes []time.Duration
	RunPaces, FloorPaces   []pace
	// Baseline is the idle operator's memory before any AssumedRole exists, Idle after N.
	Baseline, Idle memoryUse
	// PeakRSS is the largest RSS of the first run, during the burst (VmHWM).
	PeakRSS                   float64
	SpreadPeak, SpreadSeconds int
}

// TestScale measures issuing N AssumedRoles against the floor, a restart with N valid Secrets,
// memory with unrelated Secrets present, and the spread of renewals. It runs only when
// ROLEKEEPER_SCALE lists the N to measure (make bench, make bench-guard); with
// ROLEKEEPER_SCALE_GUARD=1 it fails on wrong counts: STS calls ≠ N, more than two writes per
// issuance, more than 2% of N renewals in one second, any call or write on restart.
func TestScale(t *testing.T) {
	spec := os.Getenv("ROLEKEEPER_SCALE")
	if spec == "" {
		t.Skip("set ROLEKEEPER_SCALE=100,1000 (make bench) to run")
	}
	guard := os.Getenv("ROLEKEEPER_SCALE_GUARD") == "1"
	var ns []int
	for _, s := range strings.Split(spec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			t.Fatalf("ROLEKEEPER_SCALE: %v", err)
		}
		ns = append(ns, n)
	}
	// A dedicated emulator with real time: renewal jitter is measured in real seconds.
	emuArgs := []string{"-addr", "127.0.0.1:0", "-time-scale", "1",
		"-access-key", replicaA.AccessKeyID, "-secret-key", replicaA.SecretAccessKey, "-arn", replicaA.Arn, "-url-file", filepath.Join(work, "scale.url")}
	if os.Getenv("ROLEKEEPER_SCALE_PROFILE") != "" {
		emuArgs = append(emuArgs, fmt.Sprintf("-pprof-addr=127.0.0.1:%d", freePort()))
	}
	// The emulator stands in for AWS STS, which in a cluster runs on none of its cores; here it
	// shares two with everything measured. One P keeps its Go runtime from waking a second
	// thread to look for work on each request (with two, its CPU per call was about a sixth more).
	emu1, err := startProcess("ststest-scale", bins["ststest"], []string{"GOMAXPROCS=1"}, emuArgs...)
	if err != nil {
		t.Fatal(err)
	}
	defer emu1.Stop()
	scaleEmulator = emu1
	var url string
	eventually(t, 10*time.Second, "the scale emulator", func() bool { b, _ := os.ReadFile(filepath.Join(work, "scale.url")); url = string(b); return url != "" })

	noise := namespace(t, "bench-noise")
	start := time.Now()
	parallel(t, noiseSecrets, func(i int) error {
		return admin.Create(context.Background(), &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("unrelated-%05d", i), Namespace: noise},
			Data:       map[string][]byte{"blob": []byte(strings.Repeat("x", noiseSize))},
		})
	})
	t.Logf("%d unrelated Secrets of %d KiB created in %v", noiseSecrets, noiseSize>>10, time.Since(start).Round(time.Second))

	var results []scaleResult
	for _, n := range ns {
		r := measure(t, url, noise, n, guard)
		results = append(results, r)
		t.Logf("N=%d: ready in %v median (floor %v, ratio %.2f; best %v / %v, %.2f), %d STS calls, writes %v, restart %d calls %d writes idle in %v, RSS %.0f→%.0f MiB (private %.0f→%.0f, %.1f KiB per AssumedRole, peak %.0f), heap %.0f→%.0f MiB, renewal peak %d/s over %d s",
			r.N, r.ReadyAfter, r.Floor, ratio(r), r.BestRun, r.BestFloor, bestRatio(r), r.STSCalls, r.Writes, r.RestartCalls, r.RestartWrites, r.RestartIdle,
			r.Baseline.RSS, r.Idle.RSS, r.Baseline.Private, r.Idle.Private, privatePerAssumedRole(r), r.PeakRSS, r.Baseline.Heap, r.Idle.Heap, r.SpreadPeak, r.SpreadSeconds)
		if guard {
			if r.STSCalls != r.N {
				t.Errorf("N=%d: %d STS calls, want exactly N", r.N, r.STSCalls)
			}
			if w := float64(objectWrites(r)) / float64(r.N); w > 2 {
				t.Errorf("N=%d: %.2f API writes (Secret and status) per issuance, want at most 2 (%v)", r.N, w, r.Writes)
			}
			if e := float64(r.Writes["events"]) / float64(r.N); e > 1 {
				t.Errorf("N=%d: %.2f events per issuance, want at most 1", r.N, e)
			}
			if 50*r.SpreadPeak > r.N {
				t.Errorf("N=%d: %d renewals fall in one second, want at most 2%% of N", r.N, r.SpreadPeak)
			}
			if r.RestartCalls != 0 || r.RestartWrites != 0 {
				t.Errorf("N=%d: a restart with valid Secrets made %d STS calls and %d writes, want 0 and 0", r.N, r.RestartCalls, r.RestartWrites)
			}
			if p := privatePerAssumedRole(r); p > guardMemoryPerAssumedRole+guardMemoryNoise {
				t.Errorf("N=%d: the idle operator's private memory grew by %.1f KiB per AssumedRole (%.0f → %.0f MiB), want at most %.0f + %.0f KiB of run-to-run noise",
					r.N, p, r.Baseline.Private, r.Idle.Private, guardMemoryPerAssumedRole, guardMemoryNoise)
			}
		}
	}
	if path := os.Getenv("ROLEKEEPER_SCALE_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(report(results)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// workersStarted returns when the operator's AssumedRole controller started its workers (its
// caches synced, the N AssumedRoles queued), from the timestamp of its log line.
func workersStarted(t *testing.T, op *cluster.Process) time.Time {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(op.Output(), "\n") {
			if !strings.Contains(line, "Starting workers") || !strings.Contains(line, `"controller":"assumedrole"`) {
				continue
			}
			var entry struct {
				TS string `json:"ts"`
			}
			if err := json.Unmarshal([]byte(line), &entry); err != nil {
				t.Fatalf("operator log line %q: %v", line, err)
			}
			at, err := time.Parse(time.RFC3339Nano, entry.TS)
			if err != nil {
				t.Fatalf("operator log line %q: the time is not RFC 3339: %v", line, err)
			}
			return at
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("the operator's workers did not start:\n%s", tail(op.Output(), 30))
	return time.Time{}
}

func ratio(r scaleResult) float64 { return r.ReadyAfter.Seconds() / r.Floor.Seconds() }

func bestRatio(r scaleResult) float64 { return r.BestRun.Seconds() / r.BestFloor.Seconds() }

// privatePerAssumedRole is the growth of the idle operator's private resident memory per
// AssumedRole, in KiB. Private (RssAnon) is what grows with AssumedRoles and what a memory limit
// must hold; the rest of RSS is the executable's clean pages, which the trimmer lets go once idle
// and the kernel can drop at any time, so its share moves with what ran last.
func privatePerAssumedRole(r scaleResult) float64 {
	return (r.Idle.Private - r.Baseline.Private) * 1024 / float64(r.N)
}

// median is the middle value (the lower middle one for an even count); zero for none.
func median[T cmp.Ordered](xs []T) T {
	var zero T
	if len(xs) == 0 {
		return zero
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// joined formats each value and joins them with sep, for the report's lists of runs.
func joined[T any](xs []T, sep string, format func(T) string) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = format(x)
	}
	return strings.Join(parts, sep)
}

// timedRuns is how often the operator and the floor each run for the clock: one for the guard,
// which checks counts, not times.
func timedRuns(guard bool) int {
	if guard {
		return 1
	}
	if n, err := strconv.Atoi(os.Getenv("ROLEKEEPER_SCALE_RUNS")); err == nil && n > 0 {
		return n
	}
	return defaultTimedRuns
}

// objectWrites are the writes the floor also does: the Secret and the AssumedRole's status.
func objectWrites(r scaleResult) int { return r.Writes["secrets"] + r.Writes["assumedroles/status"] }

func parallel(t *testing.T, n int, f func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	next := make(chan int)
	var mu sync.Mutex
	var firstErr error
	for range scaleWorkers {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
}

func measure(t *testing.T, url, noise string, n int, guard bool) scaleResult {
	r := scaleResult{N: n}
	port := freePort()
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	pprofPort := freePort()
	flags := func(ns string) []string {
		return append([]string{"--watch-namespaces=" + ns + "," + noise, fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", port),
			fmt.Sprintf("--pprof-bind-address=127.0.0.1:%d", pprofPort)}, scaleFlags...)
	}
	ns := namespace(t, fmt.Sprintf("bench-%d", n))
	op := scaleOperator(t, url, flags(ns)...)
	eventually(t, 30*time.Second, "the operator's metrics", func() bool { _, err := scrape(metricsURL); return err == nil })
	time.Sleep(settleMemory)
	r.Baseline = memory(t, op, metricsURL)
	op.Stop()

	// The first run is also measured for calls, writes, memory, spread and a restart.
	first := issueRun(t, url, ns, n, flags(ns))
	op, list := first.op, first.list
	r.Runs, r.Startup, r.CPU, r.RunCPU, r.RunProbes = []time.Duration{first.readyAfter}, first.startup, first.cpu, []cpuUse{first.cpu}, []time.Duration{first.probe}
	r.RunPaces = []pace{first.pace}
	waitIdle(t, metricsURL, 0)
	time.Sleep(settleMemory)
	r.Idle = memory(t, op, metricsURL)
	r.PeakRSS = r.Idle.Peak
	heapProfile(t, ns, op)
	r.STSCalls = stsCallsIn(t, url, ns)
	r.Writes = operatorWrites(t, ns)
	issued := floorWrites(t, ns, &list)

	// Renewal spread: renewal times of all N, in one-second buckets.
	buckets := map[int64]int{}
	for i := range list.Items {
		if rt := list.Items[i].Status.RenewalTime; rt != nil {
			buckets[rt.Unix()]++
		}
	}
	for _, c := range buckets {
		r.SpreadPeak = max(r.SpreadPeak, c)
	}
	r.SpreadSeconds = len(buckets)

	// Restart with N valid Secrets.
	op.Stop()
	calls, writes := r.STSCalls, r.Writes["total"]
	restart := time.Now()
	op = scaleOperator(t, url, flags(ns)...)
	eventually(t, 60*time.Second, "the restarted operator's metrics", func() bool { _, err := scrape(metricsURL); return err == nil })
	waitIdle(t, metricsURL, n)
	r.RestartIdle = time.Since(restart)
	time.Sleep(2 * time.Second)
	r.RestartCalls = stsCallsIn(t, url, ns) - calls
	r.RestartWrites = operatorWrites(t, ns)["total"] - writes
	op.Stop()
	deleteRunObjects(t, ns)

	// Both times vary from run to run on a shared machine: the operator and the floor each run
	// several times, alternating, and the medians are compared (the best of each beside).
	runs := timedRuns(guard)
	for rep := 1; rep <= runs; rep++ {
		f := floor(t, issued, rep)
		r.Floors, r.FloorCPUs, r.FloorProbes, r.FloorPaces = append(r.Floors, f.took), append(r.FloorCPUs, f.cpu), append(r.FloorProbes, f.probe), append(r.FloorPaces, f.pace)
		if rep == 1 {
			r.FloorCPU = f.cpu
		}
		if rep < runs {
			again := namespace(t, fmt.Sprintf("bench-%d-%d", n, rep+1))
			run := issueRun(t, url, again, n, flags(again))
			run.op.Stop()
			deleteRunObjects(t, again)
			r.Runs, r.RunCPU, r.RunProbes, r.RunPaces = append(r.Runs, run.readyAfter), append(r.RunCPU, run.cpu), append(r.RunProbes, run.probe), append(r.RunPaces, run.pace)
		}
	}
	r.ReadyAfter, r.Floor = median(r.Runs), median(r.Floors)
	r.BestRun, r.BestFloor = slices.Min(r.Runs), slices.Min(r.Floors)
	return r
}

// run is one timed issuance of N AssumedRoles by a freshly started operator.
type run struct {
	op                  *cluster.Process // still running
	readyAfter, startup time.Duration
	list                rkv1.AssumedRoleList
	cpu                 cpuUse
	probe               time.Duration // the machine's speed just before the run (speedProbe)
	pace                pace          // and while it went on
}

// issueRun creates N AssumedRoles in ns while no operator runs, as the floor's exist before its
// clock starts, then starts the operator and times it from its workers starting (its caches
// synced, the N queued) to the API server completing the last status write. Nothing watches the
// AssumedRoles meanwhile: a watcher would add load to the API server that the floor does not
// have. The times come from the operator's log line (RFC 3339 with nanoseconds) and the audit
// log; readiness of all N is then checked.
func issueRun(t *testing.T, url, ns string, n int, args []string) run {
	allowAll(t, ns)
	parallel(t, n, func(i int) error {
		return admin.Create(context.Background(), &rkv1.AssumedRole{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ar-%05d", i), Namespace: ns},
			Spec:       rkv1.AssumedRoleSpec{AssumeRole: &rkv1.AssumeRoleSpec{RoleArn: fmt.Sprintf("arn:aws:iam::111122223333:role/bench-%05d", i)}},
		})
	})
	settle(t)
	probe := speedProbe()
	audit := followAudit(t, ns)
	sampling := startPace(t) // before the operator starts: its first read of the API server's metrics is not in the run
	launched := time.Now()
	op := scaleOperator(t, url, args...)
	start := workersStarted(t, op)
	before := cpuNow(op)
	done := profile(t, ns, n, op)
	var res run
	deadline := time.Now().Add(30 * time.Minute)
	// The audit log is read only once it has stopped growing for a moment: reading and parsing
	// its records while the operator works would take CPU from the cores the run is timed on,
	// which the floor's run (reading the log after its last write) does not. The clock stops at
	// the last status write's record whenever it is read. The AssumedRoles are listed only once
	// the log shows N status writes (listing N objects is work for the API server), and again
	// each second should some not be Ready yet. CPU is read before the first list, which is the
	// harness's work, not the operator's.
	var after *cpuUse
	for {
		if (audit.statusWrites >= n || audit.quiet(t, 500*time.Millisecond)) && audit.poll(t) >= n {
			if after == nil {
				u := cpuNow(op)
				after, res.pace = &u, sampling.finish(t)
			}
			if allReady(t, ns, n, &res.list) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d AssumedRoles not Ready after 30 minutes (%d status writes)", n, audit.statusWrites)
		}
		if audit.statusWrites < n {
			time.Sleep(100 * time.Millisecond)
		} else {
			time.Sleep(time.Second)
		}
	}
	res.op, res.readyAfter, res.startup, res.cpu, res.probe = op, audit.last.Sub(start), start.Sub(launched), after.since(before), probe
	done()
	t.Logf("N=%d in %s: Ready after %v; CPU seconds %s; %s", n, ns, res.readyAfter, res.cpu, res.pace)
	return res
}

// issuance is what the operator wrote for one AssumedRole: its Secret and its status.
type issuance struct {
	secret *corev1.Secret
	status []byte // the status merge patch of a first issuance: the whole status
}

// floorWrites takes the Secrets and statuses the operator wrote in ns, for the floor to write
// the same bytes.
func floorWrites(t *testing.T, ns string, list *rkv1.AssumedRoleList) []issuance {
	t.Helper()
	var secrets corev1.SecretList
	if err := admin.List(context.Background(), &secrets, client.InNamespace(ns), client.HasLabels{rkv1.LabelAssumedRole}); err != nil {
		t.Fatal(err)
	}
	byName := map[string]*corev1.Secret{}
	for i := range secrets.Items {
		byName[secrets.Items[i].Name] = &secrets.Items[i]
	}
	out := make([]issuance, 0, len(list.Items))
	for i := range list.Items {
		ar := &list.Items[i]
		sec := byName[ar.Status.SecretName]
		if sec == nil {
			t.Fatalf("AssumedRole %s: no Secret %q", ar.Name, ar.Status.SecretName)
		}
		status, err := json.Marshal(map[string]any{"status": ar.Status})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, issuance{
			secret: &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: sec.Name, Labels: sec.Labels, Annotations: sec.Annotations, OwnerReferences: sec.OwnerReferences},
				Type: sec.Type, Data: sec.Data},
			status: status,
		})
	}
	return out
}

// floor does the API writes the operator must do for N issuances with a plain client at the same
// concurrency, byte for byte the ones the operator made in its first run: create the Secret (same
// data, labels, annotations and controller reference, to an AssumedRole of the floor's), and
// merge-patch the AssumedRole's status. It writes as the operator's service account, so the API
// server authorizes, prioritizes (API priority and fairness puts the admin in the exempt level)
// and audits its requests exactly as it does the operator's.
func floor(t *testing.T, writes []issuance, rep int) floorRun {
	n := len(writes)
	writer, err := client.New(cp.Config(cluster.OperatorToken), client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ns := namespace(t, fmt.Sprintf("floor-%d-%d", n, rep))
	uids := make([]types.UID, n)
	parallel(t, n, func(i int) error {
		ar := &rkv1.AssumedRole{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ar-%05d", i), Namespace: ns},
			Spec:       rkv1.AssumedRoleSpec{AssumeRole: &rkv1.AssumeRoleSpec{RoleArn: fmt.Sprintf("arn:aws:iam::111122223333:role/bench-%05d", i)}},
		}
		err := admin.Create(context.Background(), ar)
		uids[i] = ar.UID
		return err
	})
	settle(t)
	probe := speedProbe()
	audit := followAudit(t, ns)
	sampling := startPace(t)
	start := time.Now()
	before := cpuNow(nil)
	done := profile(t, ns, n, nil)
	parallel(t, n, func(i int) error {
		name := fmt.Sprintf("ar-%05d", i)
		secret := writes[i].secret.DeepCopy()
		secret.Namespace = ns
		for j := range secret.OwnerReferences {
			secret.OwnerReferences[j].Name, secret.OwnerReferences[j].UID = name, uids[i]
		}
		if err := writer.Create(context.Background(), secret); err != nil {
			return err
		}
		ar := &rkv1.AssumedRole{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
		return writer.Status().Patch(context.Background(), ar, client.RawPatch(types.MergePatchType, writes[i].status))
	})
	if got := audit.poll(t); got != n {
		t.Fatalf("floor: the audit log shows %d status writes, want %d", got, n)
	}
	res := floorRun{took: audit.last.Sub(start), cpu: cpuNow(nil).since(before), probe: probe, pace: sampling.finish(t)}
	done()
	deleteRunObjects(t, ns)
	t.Logf("N=%d floor in %s: %v; CPU seconds %s; %s", n, ns, res.took, res.cpu, res.pace)
	return res
}

type floorRun struct {
	took  time.Duration
	cpu   cpuUse
	probe time.Duration
	pace  pace
}

// deleteRunObjects deletes a finished run's AssumedRoles and Secrets, so that every timed run
// starts with the same objects in the cluster (they would otherwise pile up, and each run would
// find the API server and etcd heavier than the one before).
// Past about 20,000 objects one delete-collection outlasts the API server's request timeout; it
// goes on deleting but answers with a timeout, or resets the HTTP/2 stream (a transport error,
// no API status), so either is followed by another call until the namespace holds none. Any
// other answer (forbidden, not found) fails the run.
func deleteRunObjects(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	for _, kind := range []struct {
		obj  client.Object
		list client.ObjectList
	}{{&rkv1.AssumedRole{}, &rkv1.AssumedRoleList{}}, {&corev1.Secret{}, &corev1.SecretList{}}} {
		eventually(t, 10*time.Minute, fmt.Sprintf("no %T left in %s", kind.obj, ns), func() bool {
			if err := admin.DeleteAllOf(ctx, kind.obj, client.InNamespace(ns)); err != nil {
				if !deleteGoesOn(err) {
					t.Fatal(err)
				}
				t.Logf("deleting the %T in %s: %v; again", kind.obj, ns, err)
			}
			if err := admin.List(ctx, kind.list, client.InNamespace(ns), client.Limit(1)); err != nil {
				if !deleteGoesOn(err) {
					t.Fatal(err)
				}
				return false
			}
			return meta.LenList(kind.list) == 0
		})
	}
}

// deleteGoesOn tells the answers of a busy API server that leave a deletion going on: a timeout,
// or a transport error without an API status (the server reset the stream at its timeout).
func deleteGoesOn(err error) bool {
	var status apierrors.APIStatus
	return apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) || !errors.As(err, &status)
}

// allReady lists the namespace's AssumedRoles into list and reports whether all n are Ready.
func allReady(t *testing.T, ns string, n int, list *rkv1.AssumedRoleList) bool {
	t.Helper()
	if err := admin.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	ready := 0
	for i := range list.Items {
		if meta.IsStatusConditionTrue(list.Items[i].Status.Conditions, rkv1.ConditionReady) {
			ready++
		}
	}
	return ready == n
}

// auditFollower reads the audit log from where it ended when following began: the successful
// status writes to one namespace, and when the API server completed the last of them.
type auditFollower struct {
	f            *os.File
	r            *bufio.Reader
	partial      string
	ns           string
	statusWrites int
	last         time.Time
	// size is the log's size when it last grew, at grew.
	size int64
	grew time.Time
}

// quiet reports whether the audit log has not grown for d: the API server is writing no more
// records, so a burst of issuances is over or paused. Asking costs a stat, where reading and
// parsing the records costs CPU on the cores the run is measured on.
func (a *auditFollower) quiet(t *testing.T, d time.Duration) bool {
	t.Helper()
	st, err := a.f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if st.Size() != a.size || a.grew.IsZero() {
		a.size, a.grew = st.Size(), now
	}
	return now.Sub(a.grew) >= d
}

func followAudit(t *testing.T, ns string) *auditFollower {
	t.Helper()
	f, err := os.Open(filepath.Join(cp.Dir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return &auditFollower{f: f, r: bufio.NewReaderSize(f, 1<<20), ns: ns}
}

// poll reads what the API server has appended since and returns the status writes seen so far.
func (a *auditFollower) poll(t *testing.T) int {
	t.Helper()
	nsField := fmt.Sprintf(`"namespace":%q`, a.ns)
	for {
		chunk, err := a.r.ReadString('\n')
		a.partial += chunk
		if err != nil {
			return a.statusWrites // the rest of the line is not written yet
		}
		line := a.partial
		a.partial = ""
		if !strings.Contains(line, nsField) || !strings.Contains(line, `"subresource":"status"`) {
			continue
		}
		var ev struct {
			Stage          string
			StageTimestamp time.Time
			ResponseStatus struct{ Code int }
			ObjectRef      struct{ Namespace, Resource, Subresource string }
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("audit log: %v", err)
		}
		if ev.Stage != "ResponseComplete" || ev.ObjectRef.Namespace != a.ns || ev.ObjectRef.Resource != "assumedroles" || ev.ResponseStatus.Code >= 300 {
			continue
		}
		a.statusWrites++
		if ev.StageTimestamp.After(a.last) {
			a.last = ev.StageTimestamp
		}
	}
}

func stsCallsIn(t *testing.T, url, ns string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url+"/_ststest/calls", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var all []ststest.Call
	if err := jsonDecode(resp, &all); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range all {
		if strings.HasPrefix(c.SessionName, ns+".") {
			n++
		}
	}
	return n
}

// scrape reads a Prometheus text endpoint into name{labels} → value.
func scrape(url string) (map[string]float64, error) { return scrapeWith(http.DefaultClient, url) }

// scrapeWith scrapes with the given client (the API server's endpoint needs its credentials).
func scrapeWith(c *http.Client, url string) (map[string]float64, error) {
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// waitIdle waits until the controller has finished at least n reconciles and its queue stays
// empty for two seconds.
func waitIdle(t *testing.T, url string, n int) {
	t.Helper()
	quietSince := time.Time{}
	last := -1.0
	eventually(t, 10*time.Minute, "the operator idle", func() bool {
		m, err := scrape(url)
		if err != nil {
			return false
		}
		done := m[`controller_runtime_reconcile_total{controller="assumedrole",result="success"}`] + m[`controller_runtime_reconcile_total{controller="assumedrole",result="requeue_after"}`]
		depth := m[`workqueue_depth{controller="assumedrole",name="assumedrole"}`]
		if done < float64(n) || depth > 0 || done != last {
			last, quietSince = done, time.Now()
			return false
		}
		return time.Since(quietSince) >= 2*time.Second
	})
}

// memoryUse is a process's memory in MiB: resident (VmRSS), of which private (RssAnon), its
// peak resident (VmHWM), and its Go heap in use.
type memoryUse struct{ RSS, Private, Peak, Heap float64 }

// memory reads the operator's memory now.
func memory(t *testing.T, op *cluster.Process, url string) (u memoryUse) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", op.Cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			u.RSS = kb / 1024
		case "RssAnon:":
			u.Private = kb / 1024
		case "VmHWM:":
			u.Peak = kb / 1024
		}
	}
	m, err := scrape(url)
	if err != nil {
		t.Fatal(err)
	}
	mib := func(name string) float64 { return m[name] / (1 << 20) }
	u.Heap = mib("go_memstats_heap_inuse_bytes")
	t.Logf("memory: RSS %.0f MiB, private %.0f (peak %.0f); Go: sys %.0f, heap in use %.0f, idle %.0f, released %.0f, stacks %.0f MiB",
		u.RSS, u.Private, u.Peak, mib("go_memstats_sys_bytes"), u.Heap, mib("go_memstats_heap_idle_bytes"), mib("go_memstats_heap_released_bytes"), mib("go_memstats_stack_inuse_bytes"))
	return u
}

func report(rs []scaleResult) string {
	var b strings.Builder
	seconds := func(ds []time.Duration) string {
		return joined(ds, " / ", func(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) })
	}
	millis := func(ds []time.Duration) string {
		return joined(ds, " ", func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) })
	}
	cpuRuns := func(us []cpuUse) string {
		return joined(us, " / ", func(u cpuUse) string { return fmt.Sprintf("%.1f (%.1f)", u.total(), u.APIServer) })
	}
	b.WriteString("### Issuing N AssumedRoles against the floor\n\n")
	b.WriteString("| N | all Ready after (median) | AssumedRoles/s | floor (median) | operator/floor, medians | best run / best floor | operator runs (s) | floor runs (s) | CPU s, first operator run: API server / etcd / operator / STS emulator | CPU s, first floor run: API server / etcd / client |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %d | %.2f s | %.0f | %.2f s | %.2f× | %.2f× | %s | %s | %.1f / %.1f / %.1f / %.1f | %.1f / %.1f / %.1f |\n",
			r.N, r.ReadyAfter.Seconds(), float64(r.N)/r.ReadyAfter.Seconds(), r.Floor.Seconds(), ratio(r), bestRatio(r), seconds(r.Runs), seconds(r.Floors),
			r.CPU.APIServer, r.CPU.Etcd, r.CPU.Operator, r.CPU.Emulator, r.FloorCPU.APIServer, r.FloorCPU.Etcd, r.FloorCPU.Client)
	}
	b.WriteString("\n### CPU of every timed run\n\n")
	b.WriteString("| N | operator runs: CPU s of all processes (API server) | floor runs: CPU s of all processes (API server) | CPU, operator/floor medians | cores busy, median of runs (operator / floor) | speed probe before each operator run / floor run (ms) | each operator run / the floor run after it, median |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %d | %s | %s | %.2f× | %.2f / %.2f | %s / %s | %.2f× |\n", r.N, cpuRuns(r.RunCPU), cpuRuns(r.FloorCPUs),
			median(totals(r.RunCPU))/median(totals(r.FloorCPUs)), median(busy(r.RunCPU, r.Runs)), median(busy(r.FloorCPUs, r.Floors)),
			millis(r.RunProbes), millis(r.FloorProbes), median(paired(r)))
	}
	b.WriteString("\n### What moved from run to run\n\n")
	b.WriteString("| N | API server, MiB allocated: each operator run / floor run | API server, garbage collection CPU s (collections) | probe work, median of its samples (ms of its own CPU) | steal (s) |\n")
	b.WriteString("|---|---|---|---|---|\n")
	for _, r := range rs {
		runs := func(format func(pace) string) string {
			return joined(r.RunPaces, " ", format) + " / " + joined(r.FloorPaces, " ", format)
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s |\n", r.N,
			runs(func(p pace) string { return fmt.Sprintf("%.0f", p.APIServerAlloc) }),
			runs(func(p pace) string { return fmt.Sprintf("%.2f (%.0f)", p.APIServerGC, p.APIServerCycles) }),
			runs(func(p pace) string { return fmt.Sprintf("%.2f", float64(p.Work.Microseconds())/1000) }),
			runs(func(p pace) string { return fmt.Sprintf("%.1f", p.Machine.Steal) }))
	}
	b.WriteString("\n### Counts, restart, memory and renewal spread (first run)\n\n")
	b.WriteString("| N | STS calls per AssumedRole | API writes per issuance (Secret + status) | events per issuance | restart: STS calls | restart: writes | start-up (not counted) | restart: idle after | RSS idle (no ARs → N) | of which private | private memory per AssumedRole | peak RSS (during the burst) | Go heap in use (no ARs → N) | renewal spread: busiest second |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		keys := make([]string, 0, len(r.Writes))
		for k := range r.Writes {
			if k != "total" {
				keys = append(keys, fmt.Sprintf("%s %d", k, r.Writes[k]))
			}
		}
		sort.Strings(keys)
		fmt.Fprintf(&b, "| %d | %.2f | %.2f (%s) | %.2f | %d | %d | %.1f s | %.1f s | %.0f → %.0f MiB | %.0f → %.0f MiB | %.1f KiB | %.0f MiB | %.0f → %.0f MiB | %d (%.1f%% of N, over %d s) |\n",
			r.N, float64(r.STSCalls)/float64(r.N), float64(objectWrites(r))/float64(r.N), strings.Join(keys, ", "), float64(r.Writes["events"])/float64(r.N),
			r.RestartCalls, r.RestartWrites, r.Startup.Seconds(), r.RestartIdle.Seconds(), r.Baseline.RSS, r.Idle.RSS, r.Baseline.Private, r.Idle.Private, privatePerAssumedRole(r), r.PeakRSS, r.Baseline.Heap, r.Idle.Heap,
			r.SpreadPeak, 100*float64(r.SpreadPeak)/float64(r.N), r.SpreadSeconds)
	}
	return b.String()
}

// paired is each operator run's time over the floor run that follows it, the two closest in
// time: what the machine's drift from one run to the next does not move much.
func paired(r scaleResult) []float64 {
	out := make([]float64, 0, len(r.Floors))
	for i := range min(len(r.Runs), len(r.Floors)) {
		out = append(out, r.Runs[i].Seconds()/r.Floors[i].Seconds())
	}
	return out
}

// speedProbe times a fixed piece of work on one core while the cluster is idle (the median of
// three): on a shared machine the same work takes longer at some times than at others, and this
// shows how the machine's speed moved between runs.
func speedProbe() time.Duration {
	buf := probeInput()
	times := make([]time.Duration, 3)
	for i := range times {
		start := time.Now()
		_ = sha256.Sum256(buf)
		times[i] = time.Since(start)
	}
	return median(times)
}

// probeInput is the probe's input, made and faulted in once.
var probeInput = sync.OnceValue(func() []byte {
	buf := make([]byte, 32<<20)
	_ = sha256.Sum256(buf)
	return buf
})

func totals(us []cpuUse) []float64 {
	out := make([]float64, len(us))
	for i, u := range us {
		out[i] = u.total()
	}
	return out
}

// busy is how many cores each run kept busy on average: its CPU time over its time.
func busy(us []cpuUse, took []time.Duration) []float64 {
	out := make([]float64, len(us))
	for i, u := range us {
		out[i] = u.total() / took[i].Seconds()
	}
	return out
}

// cpuSeconds is the CPU time a process has used (user and system).
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b)[strings.LastIndex(string(b), ")")+2:])
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / 100
}

// settle waits until the API server and etcd are idle (under 5% of a core for a second), so that
// a timed phase does not pay for the work of the one before it (the API server and etcd keep
// working for a while after a burst: garbage collection, compaction).
func settle(t *testing.T) {
	t.Helper()
	busy := func() float64 { return cpuNow(nil).controlPlane() }
	start := time.Now()
	for prev := busy(); time.Since(start) < time.Minute; {
		time.Sleep(time.Second)
		now := busy()
		if now-prev < 0.05 {
			return
		}
		prev = now
	}
	t.Logf("the control plane was still busy after a minute; measuring anyway")
}

// cpuUse is CPU time in seconds, by process: the API server and etcd, the operator, the STS
// emulator, and this test process (the floor's client).
type cpuUse struct{ APIServer, Etcd, Operator, Emulator, Client float64 }

func (u cpuUse) controlPlane() float64 { return u.APIServer + u.Etcd }

// total is the CPU time of every process of the run: on a machine whose cores are all busy
// through a run, what the run's time follows.
func (u cpuUse) total() float64 { return u.APIServer + u.Etcd + u.Operator + u.Emulator + u.Client }

func cpuNow(op *cluster.Process) cpuUse {
	u := cpuUse{
		APIServer: cpuSeconds(cp.APIServer.Cmd.Process.Pid),
		Etcd:      cpuSeconds(cp.Etcd.Cmd.Process.Pid),
		Emulator:  cpuSeconds(scaleEmulator.Cmd.Process.Pid),
		Client:    cpuSeconds(os.Getpid()),
	}
	if op != nil {
		u.Operator = cpuSeconds(op.Cmd.Process.Pid)
	}
	return u
}

func (u cpuUse) since(before cpuUse) cpuUse {
	return cpuUse{u.APIServer - before.APIServer, u.Etcd - before.Etcd, u.Operator - before.Operator, u.Emulator - before.Emulator, u.Client - before.Client}
}

func (u cpuUse) String() string {
	return fmt.Sprintf("API server %.2f, etcd %.2f, operator %.2f, emulator %.2f, test process %.2f", u.APIServer, u.Etcd, u.Operator, u.Emulator, u.Client)
}

// scaleEmulator is the STS emulator TestScale runs, for its CPU time.
var scaleEmulator *cluster.Process

// heapProfile saves the operator's heap profile (live objects after a GC) into
// $ROLEKEEPER_SCALE_PROFILE, when it is set.
func heapProfile(t *testing.T, ns string, op *cluster.Process) {
	dir := os.Getenv("ROLEKEEPER_SCALE_PROFILE")
	if dir == "" {
		return
	}
	base, ok := pprofBase(op, "--pprof-bind-address=")
	if !ok {
		return
	}
	resp, err := http.Get(base + "/debug/pprof/heap?gc=1") //nolint:noctx // a test on loopback
	if err != nil {
		t.Fatalf("heap profile: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, ns+"-operator-heap.pprof"), body, 0o644)
	}
	if err != nil {
		t.Fatalf("heap profile: %v", err)
	}
}

// pprofBase is the base URL of the profiles a process serves, from its command-line flag
// (flag is the flag's name with "="), and whether it was started with one.
func pprofBase(p *cluster.Process, flag string) (string, bool) {
	for _, arg := range p.Cmd.Args {
		if addr, ok := strings.CutPrefix(arg, flag); ok {
			return "http://" + addr, true
		}
	}
	return "", false
}

// profile, when ROLEKEEPER_SCALE_PROFILE names a directory, records CPU profiles of the API
// server and, for an operator run, of the operator and the STS emulator over about the time N
// issuances take, as <dir>/<namespace>-{apiserver,operator,emulator}.pprof, to see where a run's
// time goes, and the requests the API server served meanwhile, by verb and resource
// (<dir>/<namespace>-requests.txt). It returns a function that waits for them. The operator
// serves its profile on its --pprof-bind-address, the emulator on its -pprof-addr.
func profile(t *testing.T, ns string, n int, op *cluster.Process) (wait func()) {
	dir := os.Getenv("ROLEKEEPER_SCALE_PROFILE")
	if dir == "" {
		return func() {}
	}
	seconds := max(1, n/200)
	httpClient, err := adminHTTP()
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]string{"apiserver": cp.URL}
	if op != nil {
		if base, ok := pprofBase(op, "--pprof-bind-address="); ok {
			targets["operator"] = base
		}
		if base, ok := pprofBase(scaleEmulator, "-pprof-addr="); ok {
			targets["emulator"] = base
		}
	}
	before := apiRequests(t, httpClient)
	var wg sync.WaitGroup
	for name, base := range targets {
		wg.Go(func() {
			resp, err := httpClient.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, seconds))
			if err != nil {
				t.Errorf("profiling %s: %v", name, err)
				return
			}
			defer func() { _ = resp.Body.Close() }()
			body, err := io.ReadAll(resp.Body)
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("%s: %s", resp.Status, body)
			}
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, ns+"-"+name+".pprof"), body, 0o644)
			}
			if err != nil {
				t.Errorf("profiling %s: %v", name, err)
			}
		})
	}
	return func() {
		wg.Wait()
		after := apiRequests(t, httpClient)
		var lines []string
		for k, v := range after {
			if d := v - before[k]; d > 0 {
				lines = append(lines, fmt.Sprintf("%8.0f %s", d, k))
			}
		}
		sort.Strings(lines)
		if err := os.WriteFile(filepath.Join(dir, ns+"-requests.txt"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Errorf("requests: %v", err)
		}
	}
}

// adminHTTP is one HTTP client with the cluster administrator's credentials, for the API
// server's metrics and profiles, so that each read does not set up a connection of its own.
var adminHTTP = sync.OnceValues(func() (*http.Client, error) { return rest.HTTPClientFor(cp.Config(cluster.AdminToken)) })

// apiRequests reads the API server's request counter, by verb, resource and subresource, to see
// which requests a run made besides the writes the audit log counts.
func apiRequests(t *testing.T, c *http.Client) map[string]float64 {
	m, err := scrapeWith(c, cp.URL+"/metrics")
	if err != nil {
		t.Errorf("API server metrics: %v", err)
		return nil
	}
	out := map[string]float64{}
	for series, v := range m {
		labels, ok := strings.CutPrefix(series, "apiserver_request_total{")
		if !ok {
			continue
		}
		l := map[string]string{}
		for _, kv := range strings.Split(strings.TrimSuffix(labels, "}"), ",") {
			k, v, _ := strings.Cut(kv, "=")
			l[k] = strings.Trim(v, `"`)
		}
		out[l["verb"]+" "+l["resource"]+"/"+l["subresource"]] += v
	}
	return out
}
