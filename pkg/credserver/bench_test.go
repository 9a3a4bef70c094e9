package credserver_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rolekeeper/rolekeeper/pkg/credserver"
	"github.com/rolekeeper/rolekeeper/pkg/secretdata"
	"github.com/rolekeeper/rolekeeper/test/atomicdir"
	"github.com/rolekeeper/rolekeeper/test/cluster"
)

// procStat returns the CPU time (user + system) a process has used, from /proc.
func procStat(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which is in parentheses: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	return time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// procStatus returns fields of /proc/<pid>/status in KiB.
func procStatus(b *testing.B, pid int) map[string]float64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	out := map[string]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if fields := strings.Fields(v); ok && len(fields) == 2 && fields[1] == "kB" {
			n, _ := strconv.ParseFloat(fields[0], 64)
			out[k] = n
		}
	}
	return out
}

// BenchmarkSidecar runs `rolekeeper serve-credentials` as a process limited to one core
// (GOMAXPROCS=1, and pinned to one CPU with taskset when there is one) and reports what a pod
// pays for it: requests served per second of wall time and per second of the sidecar's CPU
// (the clients run on the other core, with keep-alive as SDKs do); its resident memory right
// after that load and after resting past TrimAfter (VmRSS, of which RssAnon is private: the rest
// is the executable's clean pages, shared through the page cache; VmHWM is the peak, at
// start-up); and its CPU use while idle: over a window holding the trim, and over the next one.
func BenchmarkSidecar(b *testing.B) {
	rolekeeper, _ := built(&testing.T{})
	if rolekeeper == "" {
		b.Fatal("could not build rolekeeper")
	}
	dir := b.TempDir()
	if err := atomicdir.Write(filepath.Join(dir, "secret"), secretdata.Render(secretdata.Input{
		AccessKeyID: "ASIABENCHMARK0000001", SecretAccessKey: strings.Repeat("s", 40), SessionToken: strings.Repeat("t", 800),
		Expiration: time.Now().Add(time.Hour), Region: "us-east-1",
	})); err != nil {
		b.Fatal(err)
	}
	port := strconv.Itoa(cluster.FreePort())
	flags := []string{"--port=" + port, "--secret-dir=" + filepath.Join(dir, "secret"), "--token-file=" + filepath.Join(dir, "token")}
	args := append([]string{rolekeeper, "serve-credentials"}, flags...)
	if taskset, err := exec.LookPath("taskset"); err == nil {
		args = append([]string{taskset, "-c", "0"}, args...)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); exec.Command(rolekeeper, append([]string{"serve-credentials", "--probe"}, flags...)...).Run() != nil; {
		if time.Now().After(deadline) {
			b.Fatal("the sidecar did not become ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	pid := cmd.Process.Pid
	token, err := os.ReadFile(filepath.Join(dir, "token"))
	if err != nil {
		b.Fatal(err)
	}
	url := "http://127.0.0.1:" + port + credserver.CredentialsPath
	fetch := func(c *http.Client) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", string(token))
		resp, err := c.Do(req)
		if err != nil {
			b.Error(err)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Errorf("status %d", resp.StatusCode)
		}
	}
	fetch(http.DefaultClient)

	const clients = 4
	b.ResetTimer()
	cpu0, start := procStat(b, pid), time.Now()
	var wg sync.WaitGroup
	per := (b.N + clients - 1) / clients
	for range clients {
		wg.Go(func() {
			c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			for range per {
				fetch(c)
			}
		})
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), procStat(b, pid)-cpu0
	b.StopTimer()
	loaded := procStatus(b, pid)

	// Idle: the window holds the trim TrimAfter after the last request.
	idle := credserver.TrimAfter + 5*time.Second
	before := procStat(b, pid)
	time.Sleep(idle) // a measurement over a fixed window, not a wait for something to happen
	idleCPU := procStat(b, pid) - before
	rested := procStatus(b, pid)
	before = procStat(b, pid)
	time.Sleep(idle)
	quietCPU := procStat(b, pid) - before

	n := float64(per * clients)
	b.ReportMetric(n/elapsed.Seconds(), "req/s")
	if cpu > 0 {
		b.ReportMetric(n/cpu.Seconds(), "req/cpu-s")
	}
	b.ReportMetric(float64(idleCPU.Milliseconds())/idle.Seconds(), "trim-cpu-ms/s")
	b.ReportMetric(float64(quietCPU.Milliseconds())/idle.Seconds(), "idle-cpu-ms/s")
	b.ReportMetric(loaded["VmRSS"]/1024, "rss-load-MiB")
	b.ReportMetric(loaded["RssAnon"]/1024, "anon-load-MiB")
	b.ReportMetric(rested["VmRSS"]/1024, "rss-idle-MiB")
	b.ReportMetric(rested["RssAnon"]/1024, "anon-idle-MiB")
	b.ReportMetric(rested["VmHWM"]/1024, "peak-rss-MiB")
	b.ReportMetric(0, "ns/op")
}
